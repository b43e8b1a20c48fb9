//! imgbuild store
