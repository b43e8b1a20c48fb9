//! Flags every command that talks to registries shares.

use super::Failure;
use clap::Args;
use imgbuild_registry::{Client, RegistryOptions};
use std::path::PathBuf;

#[derive(Debug, Default, Args)]
pub(crate) struct RegistryArgs {
    /// Speak plain HTTP to this registry (HOST[:PORT]); repeat for several. Everything else
    /// is HTTPS.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure: Vec<String>,
    /// Trust the CA certificates in this PEM file (instead of the built-in roots) for
    /// HTTPS registries.
    #[arg(
        long = "registry-ca",
        env = "IMGBUILD_REGISTRY_CA",
        value_name = "FILE"
    )]
    ca: Option<PathBuf>,
}

impl RegistryArgs {
    /// The client these flags describe. Credentials come from IMGBUILD_REGISTRY_USER and
    /// IMGBUILD_REGISTRY_PASSWORD, else the Docker config.
    pub(crate) fn client(&self) -> Result<Client, Failure> {
        Client::new(RegistryOptions {
            insecure: self.insecure.clone(),
            ca_file: self.ca.clone(),
            ..RegistryOptions::default()
        })
        .map_err(|e| Failure::user(e.to_string()))
    }
}

/// Parses a reference given on the command line.
pub(crate) fn reference(text: &str) -> Result<imgbuild_registry::Reference, Failure> {
    imgbuild_registry::Reference::parse(text).map_err(|e| Failure::user(e.to_string()))
}
