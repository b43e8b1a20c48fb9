//! End-to-end tests: every one drives the `imgbuild` binary as a user would and checks the
//! result with real peers (skopeo, umoci, tar).

mod apt_sources;
mod boot_fixture;
mod bootable;
mod cache;
mod check;
mod cli;
mod cloud_disks;
mod common;
mod crash;
mod debian;
mod debian_server;
mod disk_grow;
mod dry_run;
mod errors;
mod exact_trees;
mod explain;
mod includes;
mod lock_pins;
mod malformed;
mod network;
mod oci_output;
mod outputs;
mod recipes_boot;
mod registry;
mod registry_support;
mod remove;
mod reproducible;
mod running_vm;
mod stages;
mod store_integrity;
mod store_layout;
mod tar_compat;
mod untrusted_layers;
