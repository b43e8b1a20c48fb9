//! What a built image holds, for its SBOMs: one pass over the merged tree reads the dpkg
//! database, `/etc/os-release`, the packages' copyright files and the files of the
//! recipe's `copy` and `write` steps (hashed); the base comes from the recipe and the
//! build report. [`write_sboms`] renders and writes `NAME.spdx.json` / `NAME.cdx.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use imgbuild_builder::debian::Lockfile;
use imgbuild_builder::recipe::{Base, Recipe, SbomFormat};
use imgbuild_builder::sbom::{
    self, cyclonedx, dpkg, license, spdx, BaseImage, FileEntry, ImageContents, Sbom,
};
use imgbuild_builder::{BuildReport, PreparedBase};
use imgbuild_formats::StoredImage;
use imgbuild_store::tarball::{EntryKind, EntryMeta, TreeSink};
use imgbuild_store::{Digest, Store};
use sha1::Digest as _;

use super::{BuildRequest, PipelineError};

/// Copyright files larger than this are not read (Debian's largest are a few hundred KiB).
const MAX_COPYRIGHT: u64 = 4 << 20;

/// A document written beside the outputs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Document {
    /// `spdx`, `cyclonedx` or `provenance`.
    pub kind: String,
    /// Where it was written.
    pub path: PathBuf,
    /// Its media type (also its OCI artifact type when pushed).
    pub media_type: String,
    /// The sha256 of its bytes.
    pub digest: Digest,
}

/// What the documents say the image was built from, read once for all of them.
pub(super) struct Inputs {
    /// The base, as the recipe names it.
    pub base: Option<BaseImage>,
    /// The image's lock, with the sha256 of its bytes.
    pub lock: Option<(Lockfile, Digest)>,
}

impl Inputs {
    /// The base of the prepared image and its lock (`report.lock`), when it has one.
    pub(super) fn read(
        recipe: &Recipe,
        prepared: &PreparedBase,
        report: &BuildReport,
    ) -> Result<Self, PipelineError> {
        let lock = match &report.lock {
            Some(path) if path.exists() => Some(read_lock(path)?),
            _ => None,
        };
        Ok(Inputs {
            base: base_of(recipe, prepared),
            lock,
        })
    }
}

/// A lock file, parsed, and the sha256 of its bytes.
pub(super) fn read_lock(path: &Path) -> Result<(Lockfile, Digest), PipelineError> {
    let text = fs_err::read_to_string(path).map_err(|source| PipelineError::Document {
        path: path.to_owned(),
        source,
    })?;
    let lock = Lockfile::from_toml(path, &text).map_err(imgbuild_builder::SourceError::from)?;
    Ok((lock, Digest::of(text.as_bytes())))
}

/// The image documents describe, and the stem of their file names.
pub(super) struct Subject<'a> {
    /// The built image.
    pub image: &'a StoredImage,
    /// `NAME` (one platform) or `NAME-ARCH` (several).
    pub stem: &'a str,
}

/// Writes one SBOM per format of `formats` for the subject into the request's output
/// directory, as `STEM.spdx.json` and `STEM.cdx.json`.
pub(super) fn write_sboms(
    store: &Store,
    recipe: &Recipe,
    report: &BuildReport,
    subject: &Subject<'_>,
    inputs: &Inputs,
    formats: &[SbomFormat],
    request: &BuildRequest,
) -> Result<Vec<(Document, Vec<u8>)>, PipelineError> {
    let Subject { image, stem } = *subject;
    if formats.is_empty() {
        return Ok(Vec::new());
    }
    let sbom = image_sbom(store, recipe, report, image, inputs, request.epoch)?;
    let out = &request.out;
    let mut written = Vec::new();
    for format in formats {
        let bytes = match format {
            SbomFormat::Spdx => spdx::render(&sbom),
            SbomFormat::Cyclonedx => cyclonedx::render(&sbom),
        };
        let name = format!("{stem}.{}", format.suffix());
        let path = write_document(out, &name, &bytes)?;
        written.push((
            Document {
                kind: format.to_string(),
                path,
                media_type: format.media_type().to_owned(),
                digest: Digest::of(&bytes),
            },
            bytes,
        ));
    }
    Ok(written)
}

/// Writes `bytes` to `out/name` atomically.
pub(super) fn write_document(
    out: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<PathBuf, PipelineError> {
    imgbuild_formats::write_output_file(out, name, bytes).map_err(|source| {
        PipelineError::Document {
            path: out.join(name),
            source,
        }
    })
}

/// The SBOM of the built image.
pub(super) fn image_sbom(
    store: &Store,
    recipe: &Recipe,
    report: &BuildReport,
    image: &StoredImage,
    inputs: &Inputs,
    epoch: u64,
) -> Result<Sbom, PipelineError> {
    let mut contents = read_contents(store, image, &added_files(store, report)?)?;
    contents.base.clone_from(&inputs.base);
    Ok(Sbom::from_image(
        &recipe.image.name,
        report.digest.clone(),
        contents,
        inputs.lock.as_ref().map(|(lock, _)| lock),
        epoch,
    ))
}

/// The paths of the regular files the image's `copy` and `write` steps wrote.
fn added_files(store: &Store, report: &BuildReport) -> Result<BTreeSet<String>, PipelineError> {
    let mut paths = BTreeSet::new();
    for step in report
        .steps
        .iter()
        .filter(|s| matches!(s.kind, "copy" | "write"))
    {
        let tree = store
            .merged_tree(std::slice::from_ref(&step.diff_id))
            .map_err(imgbuild_formats::ExportError::from)?;
        paths.extend(
            tree.iter()
                .filter(|m| m.kind == EntryKind::File)
                .map(|m| m.path.clone()),
        );
    }
    Ok(paths)
}

/// The installed packages, their licenses and the distribution of a stored image
/// (`inspect NAME:TAG --sbom`).
pub fn image_contents(store: &Store, image: &StoredImage) -> Result<ImageContents, PipelineError> {
    read_contents(store, image, &BTreeSet::new())
}

/// Reads what the SBOM needs from the merged tree of `image`; `added` are the paths of
/// files to list with their hashes.
fn read_contents(
    store: &Store,
    image: &StoredImage,
    added: &BTreeSet<String>,
) -> Result<ImageContents, PipelineError> {
    let mut sink = ContentsSink {
        added,
        status: None,
        os_release: None,
        etc_os_release: None,
        copyrights: BTreeMap::new(),
        doc_links: BTreeMap::new(),
        files: Vec::new(),
    };
    imgbuild_formats::rootfs_tar::stream(store, image, &mut sink)?;
    let installed = sink
        .status
        .as_deref()
        .map(dpkg::installed)
        .unwrap_or_default();
    let mut licenses = BTreeMap::new();
    for p in &installed {
        // A package's doc directory may be a symlink to another package's (`libfoo1 ->
        // libfoo-common`).
        let dir = sink
            .doc_links
            .get(&p.name)
            .cloned()
            .unwrap_or_else(|| p.name.clone());
        if let Some(declared) = sink.copyrights.get(&dir).and_then(|t| license::declared(t)) {
            licenses.insert(p.name.clone(), declared);
        }
    }
    let os_release = sink.os_release.or(sink.etc_os_release);
    Ok(ImageContents {
        installed,
        licenses,
        distro: os_release.as_deref().and_then(sbom::distro_of_os_release),
        files: sink.files,
        base: None,
    })
}

/// Collects the few files an SBOM reads while the merged tree streams past.
struct ContentsSink<'a> {
    added: &'a BTreeSet<String>,
    status: Option<String>,
    os_release: Option<String>,
    etc_os_release: Option<String>,
    /// Copyright file text by doc directory name.
    copyrights: BTreeMap<String, String>,
    /// `usr/share/doc/NAME -> OTHER` symlinks within the doc directory.
    doc_links: BTreeMap<String, String>,
    files: Vec<FileEntry>,
}

impl TreeSink for ContentsSink<'_> {
    fn entry(&mut self, meta: &EntryMeta, data: &mut dyn Read) -> io::Result<()> {
        let path = meta.path.as_str();
        if let EntryKind::Symlink(target) = &meta.kind {
            if let Some(name) = path
                .strip_prefix("usr/share/doc/")
                .filter(|n| !n.contains('/'))
            {
                let target = target.trim_end_matches('/');
                if !target.is_empty() && !target.contains('/') {
                    self.doc_links.insert(name.to_owned(), target.to_owned());
                }
            }
            return Ok(());
        }
        if meta.kind != EntryKind::File {
            return Ok(());
        }
        if self.added.contains(path) {
            self.files.push(hash_file(path, meta.size, data)?);
            return Ok(());
        }
        let text = |data: &mut dyn Read| -> io::Result<String> {
            let mut bytes = Vec::new();
            data.read_to_end(&mut bytes)?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        };
        match path {
            "var/lib/dpkg/status" => self.status = Some(text(data)?),
            "usr/lib/os-release" => self.os_release = Some(text(data)?),
            "etc/os-release" => self.etc_os_release = Some(text(data)?),
            _ => {
                let package = path
                    .strip_prefix("usr/share/doc/")
                    .and_then(|p| p.strip_suffix("/copyright"))
                    .filter(|p| !p.contains('/'));
                if let (Some(package), true) = (package, meta.size <= MAX_COPYRIGHT) {
                    self.copyrights.insert(package.to_owned(), text(data)?);
                }
            }
        }
        Ok(())
    }
}

/// The sha256 and SHA-1 of a file's bytes.
fn hash_file(path: &str, size: u64, data: &mut dyn Read) -> io::Result<FileEntry> {
    let mut sha256 = sha2::Sha256::new();
    let mut sha1 = sha1::Sha1::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = data.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha256.update(&buf[..n]);
        sha1.update(&buf[..n]);
    }
    Ok(FileEntry {
        path: format!("/{path}"),
        sha256: hex::encode(sha256.finalize()),
        sha1: hex::encode(sha1.finalize()),
        size,
    })
}

/// The image or tarball the recipe builds on, named as the recipe names it, with the
/// digest preparation resolved (a registry or layout manifest, a tarball's or archive's
/// sha256); none for scratch and Debian bases (whose packages the SBOM lists).
fn base_of(recipe: &Recipe, prepared: &PreparedBase) -> Option<BaseImage> {
    // Relative to the recipe, so another checkout gives the same SBOM.
    let shown = |path: &Path| {
        path.strip_prefix(&recipe.dir)
            .unwrap_or(path)
            .display()
            .to_string()
    };
    let named = |name: String, digest: &Digest, is_image: bool| BaseImage {
        name,
        digest: digest.clone(),
        is_image,
        purl: None,
    };
    match (&recipe.base, prepared) {
        (Base::Registry { reference }, PreparedBase::Registry(b)) => Some(BaseImage {
            purl: Some(sbom::registry_purl(
                &format!("{}/{}", b.reference.registry, b.reference.repository),
                &b.digest,
            )),
            ..named(reference.to_string(), &b.digest, true)
        }),
        (Base::Rootfs(path), PreparedBase::Rootfs { digest, .. }) => {
            Some(named(shown(path), digest, false))
        }
        (Base::OciArchive(path), PreparedBase::OciArchive { digest, .. }) => {
            Some(named(shown(path), digest, true))
        }
        (Base::OciLayout { dir, tag }, PreparedBase::OciLayout { manifest, .. }) => {
            let name = match tag {
                Some(t) => format!("{}:{t}", shown(dir)),
                None => shown(dir),
            };
            Some(named(name, manifest, true))
        }
        _ => None,
    }
}
