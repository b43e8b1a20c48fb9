//! imgbuild builder
