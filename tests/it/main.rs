//! End-to-end tests: every one drives the `imgbuild` binary as a user would and checks the
//! result with real peers (skopeo, umoci, tar).

mod cache;
mod common;
mod crash;
mod debian;
mod malformed;
mod oci_output;
mod registry;
mod registry_support;
mod reproducible;
mod stages;
mod untrusted_layers;
