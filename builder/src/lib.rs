//! imgbuild builder
pub mod sandbox;
