//! imgbuild builder

pub mod debian;
