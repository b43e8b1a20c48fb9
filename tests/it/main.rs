//! End-to-end tests: every one drives the `imgbuild` binary as a user would and checks the
//! result with real peers (skopeo, umoci, tar).

mod boot_fixture;
mod bootable;
mod cache;
mod cli;
mod common;
mod crash;
mod debian;
mod dry_run;
mod exact_trees;
mod explain;
mod includes;
mod malformed;
mod oci_output;
mod outputs;
mod recipes_boot;
mod registry;
mod registry_support;
mod reproducible;
mod stages;
mod store_integrity;
mod store_layout;
mod tar_compat;
mod untrusted_layers;
