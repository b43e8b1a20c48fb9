//! The image config (the base's, the recipe's `[config]` laid over it, one history entry
//! per layer: a rootfs or Debian base's layer, then each step) and the manifest.

use std::collections::BTreeMap;

use imgbuild_store::oci::{
    rfc3339, History, Manifest, OciDescriptor, RootFs, MEDIA_TYPE_CONFIG, MEDIA_TYPE_MANIFEST,
};
use imgbuild_store::{Compression, Digest, LayerRecord, Store, StoreError};

use super::orchestrate::Built;
use super::BuildError;
use crate::plan::UnitPlan;
use crate::recipe::{Base, ConfigSpec, Recipe};
use crate::sources::registry::ResolvedBase;

/// Writes the config and manifest of the image `built` plus its `layers` (in their
/// compressed form) are; returns the manifest's digest and size and the config's digest.
pub(super) fn write_image(
    store: &Store,
    recipe: &Recipe,
    built: &Built,
    plan: &UnitPlan,
    layers: &[LayerRecord],
    resolved: Option<&ResolvedBase>,
    epoch: u64,
) -> Result<(Digest, u64, Digest), BuildError> {
    let created = rfc3339(epoch);
    let mut config = built.base.config.clone().unwrap_or_default();
    config.created = Some(created.clone());
    config
        .architecture
        .clone_from(&recipe.image.platform.architecture);
    config.os.clone_from(&recipe.image.platform.os);
    config.variant.clone_from(&recipe.image.platform.variant);
    config.rootfs = RootFs {
        kind: "layers".into(),
        diff_ids: layers.iter().map(|l| l.diff_id.clone()).collect(),
    };
    if let Base::Rootfs(path) = &recipe.base {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        config
            .history
            .push(history(&created, &format!("rootfs {name}")));
    }
    if let (Base::Debian(debian), false) = (&recipe.base, built.base.diff_ids.is_empty()) {
        // The bootstrap layer: one history entry per layer, so `inspect` names each.
        config.history.push(history(
            &created,
            &format!(
                "debian {} {} {}",
                debian.suite, debian.variant, debian.architecture
            ),
        ));
    }
    for step in &plan.steps {
        config.history.push(history(&created, &step.description));
    }
    apply_config(&mut config.config, &recipe.config);
    let config_bytes =
        serde_json::to_vec(&config).map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
    let config_blob = store.put_bytes(&config_bytes)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: MEDIA_TYPE_MANIFEST.into(),
        config: OciDescriptor {
            media_type: MEDIA_TYPE_CONFIG.into(),
            digest: config_blob.digest.clone(),
            size: config_blob.size,
            platform: None,
            annotations: BTreeMap::new(),
        },
        layers: layers
            .iter()
            .map(|l| OciDescriptor {
                media_type: Compression::from_media_type(&l.media_type)
                    .map_or_else(|| l.media_type.clone(), |c| c.media_type().to_owned()),
                digest: l.digest.clone(),
                size: l.size,
                platform: None,
                annotations: BTreeMap::new(),
            })
            .collect(),
        annotations: annotations(created, resolved),
    };
    let manifest_bytes =
        serde_json::to_vec(&manifest).map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
    let manifest_blob = store.put_bytes(&manifest_bytes)?;
    Ok((manifest_blob.digest, manifest_blob.size, config_blob.digest))
}

/// The manifest's annotations: the creation date, and for a registry base the standard
/// `org.opencontainers.image.base.*` pair naming it and its resolved digest.
fn annotations(created: String, resolved: Option<&ResolvedBase>) -> BTreeMap<String, String> {
    let mut all = BTreeMap::from([("org.opencontainers.image.created".to_owned(), created)]);
    if let Some(base) = resolved {
        all.insert(
            "org.opencontainers.image.base.name".to_owned(),
            base.reference.to_string(),
        );
        all.insert(
            "org.opencontainers.image.base.digest".to_owned(),
            base.digest.to_string(),
        );
    }
    all
}

fn history(created: &str, what: &str) -> History {
    History {
        created: Some(created.to_owned()),
        created_by: Some(format!("imgbuild: {what}")),
        comment: None,
        empty_layer: None,
    }
}

/// Lays the recipe's `[config]` over the base image's runtime config.
fn apply_config(rc: &mut imgbuild_store::oci::RuntimeConfig, spec: &ConfigSpec) {
    if !spec.env.is_empty() {
        let mut env: Vec<String> = rc.env.take().unwrap_or_default();
        for (k, v) in &spec.env {
            let entry = format!("{k}={v}");
            match env
                .iter_mut()
                .find(|e| e.split('=').next() == Some(k.as_str()))
            {
                Some(existing) => *existing = entry,
                None => env.push(entry),
            }
        }
        rc.env = Some(env);
    }
    if let Some(ep) = &spec.entrypoint {
        rc.entrypoint = Some(ep.clone());
        // As with Dockerfiles, a new entrypoint drops the inherited default arguments.
        rc.cmd = None;
    }
    if let Some(cmd) = &spec.cmd {
        rc.cmd = Some(cmd.clone());
    }
    if let Some(w) = &spec.workdir {
        rc.working_dir = Some(w.clone());
    }
    if let Some(u) = &spec.user {
        rc.user = Some(u.clone());
    }
    if !spec.labels.is_empty() {
        let labels = rc.labels.get_or_insert_with(BTreeMap::new);
        labels.extend(spec.labels.clone());
    }
    if !spec.ports.is_empty() {
        let ports = rc.exposed_ports.get_or_insert_with(BTreeMap::new);
        for p in &spec.ports {
            ports.insert(p.clone(), serde_json::json!({}));
        }
    }
    if !spec.volumes.is_empty() {
        let volumes = rc.volumes.get_or_insert_with(BTreeMap::new);
        for v in &spec.volumes {
            volumes.insert(v.clone(), serde_json::json!({}));
        }
    }
    if let Some(s) = &spec.stop_signal {
        rc.stop_signal = Some(s.clone());
    }
}
