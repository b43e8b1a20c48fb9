//! imgbuild formats
