//! Reading a recipe file and validating it into a [`Recipe`].

use super::error::RecipeError;
use super::include::Sources;
use super::model::{
    Base, BootMode, ConfigSpec, DiskSpec, ImageSpec, InitramfsCompression, InitramfsSpec, Owner,
    PlatformSpec, Recipe, RunSpec, SbomFormat, Stage, Step, StepOp,
};
use super::raw::{Env, RawConfig, RawDebian, RawDisk, RawFrom, RawImage, RawInitramfs, RawStep, S};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// Reads and validates the recipe at `path`, for its primary (first) platform.
pub fn load(path: &Path) -> Result<Recipe, RecipeError> {
    load_for(path, None)
}

/// Reads and validates the recipe at `path` for `platform` (`None`: its primary one). The
/// platform need not be one the recipe declares (`build --platform`).
pub fn load_for(path: &Path, platform: Option<&PlatformSpec>) -> Result<Recipe, RecipeError> {
    let bytes = fs_err::read(path).map_err(|e| {
        RecipeError::at(path, "", None, format!("cannot read recipe: {e}"))
            .help("pass the path of a recipe file, e.g. `imgbuild build recipes/hello.toml`")
    })?;
    let source = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let byte = e.as_bytes()[at];
        // Lossy decoding keeps every byte before the first bad one where it was.
        let text = String::from_utf8_lossy(e.as_bytes());
        RecipeError::at(
            path,
            &text,
            Some(at..at + 1),
            format!("the recipe is not UTF-8 text: byte 0x{byte:02x} at offset {at}"),
        )
        .help("a recipe is a TOML text file; save it as UTF-8 (is this the right file?)")
    })?;
    parse_for(path, &source, platform)
}

/// Validates recipe text as if it were read from `path` (copy sources and includes are
/// looked up relative to `path`'s directory).
pub fn parse(path: &Path, source: &str) -> Result<Recipe, RecipeError> {
    parse_for(path, source, None)
}

/// Like [`parse`], for `platform` (`None`: the recipe's primary one).
pub fn parse_for(
    path: &Path,
    source: &str,
    platform: Option<&PlatformSpec>,
) -> Result<Recipe, RecipeError> {
    let (raw, sources) = super::include::assemble(path, source)?;
    let cx = Cx { sources: &sources };
    let dir = sources.main().dir.clone();
    let Some(image) = raw.image else {
        return Err(sources
            .error(
                None,
                "missing field `image`: the recipe has no [image] table",
            )
            .help("add [image] with name = \"myimage\" to the recipe (or to a file it includes)"));
    };
    let mut image = cx.image(image)?;
    if let Some(p) = platform {
        image.platform = p.clone();
    }
    let base = match raw.from {
        Some(from) => cx.base(from, &image.platform)?,
        None => Base::Scratch,
    };
    let steps = cx.steps(raw.step, &base)?;
    let config = match raw.config {
        Some(c) => cx.config(c)?,
        None => ConfigSpec::default(),
    };
    let disk = match raw.disk {
        Some(d) => cx.disk(d, &image.platform)?,
        None => DiskSpec::for_architecture(&image.platform.architecture),
    };
    let initramfs = match raw.initramfs {
        Some(i) => cx.initramfs(i)?,
        None => InitramfsSpec::default(),
    };
    let mut stages = Vec::new();
    let mut stage_spans = std::collections::BTreeMap::new();
    for (name, raw_stage) in raw.stage.unwrap_or_default() {
        let span = raw_stage.span();
        let raw_stage = raw_stage.into_inner();
        let base = match raw_stage.from {
            Some(from) => cx.base(from, &image.platform)?,
            None => Base::Scratch,
        };
        let steps = cx.steps(raw_stage.step, &base)?;
        stage_spans.insert(name.clone(), span);
        stages.push(Stage { name, base, steps });
    }
    let stages = cx.order_stages(stages, &steps, &stage_spans)?;
    let mut steps = steps;
    if let Some(system) = raw.system {
        let step = cx.system(system, steps.len() + 1)?;
        // An empty `[system]` changes nothing: no step.
        if !matches!(&step.op, StepOp::System(spec) if *spec == Default::default()) {
            steps.push(step);
        }
    }
    Ok(Recipe {
        path: path.to_owned(),
        source: std::sync::Arc::new(sources),
        dir,
        image,
        base,
        steps,
        config,
        disk,
        initramfs,
        stages,
    })
}

pub(super) struct Cx<'a> {
    /// The recipe's files; every span is global to them.
    pub(super) sources: &'a Sources,
}

/// Longest image name, as Docker's reference grammar allows.
const MAX_NAME: usize = 255;
/// Longest last name component: it becomes the output's file name with a suffix such as
/// `.initramfs.cpio.zst`, and a file name has at most 255 bytes.
const MAX_STEM: usize = 200;

/// Checks an image name against the OCI distribution grammar for repository names:
/// components of `[a-z0-9]+` joined by `.`, `_`, `__` or dashes, separated by `/`.
fn check_image_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "it is {} characters long (at most {MAX_NAME})",
            name.chars().count()
        ));
    }
    for part in name.split('/') {
        if part.is_empty() {
            return Err("it has an empty component (`//`, or `/` at an end)".into());
        }
        if part == "." || part == ".." {
            return Err(format!("it has a `{part}` component"));
        }
        if let Some(c) = part
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(*c)))
        {
            return Err(format!("it contains `{}`", c.escape_debug()));
        }
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let bytes = part.as_bytes();
        if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
            return Err(format!(
                "component `{part}` must start and end with a letter or digit"
            ));
        }
        for run in part.split(|c: char| c.is_ascii_alphanumeric()) {
            if !(run.is_empty()
                || run == "."
                || run == "_"
                || run == "__"
                || run.bytes().all(|b| b == b'-'))
            {
                return Err(format!("component `{part}` has `{run}` between letters (use one `.`, `_`, `__` or dashes)"));
            }
        }
    }
    let stem = name.rsplit('/').next().unwrap_or(name);
    if stem.len() > MAX_STEM {
        return Err(format!(
            "its last component, the output's file name, has {} characters (at most {MAX_STEM})",
            stem.len()
        ));
    }
    Ok(())
}

/// A Debian archive component name (`main`, `non-free-firmware`, `updates/main`).
fn is_component(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./+".contains(&b))
        && !name.split('/').any(|c| c.is_empty() || c == "..")
}

/// The Debian architecture of an OCI platform (as Debian's official images map them).
pub(crate) fn debian_arch(platform: &PlatformSpec) -> String {
    match (platform.architecture.as_str(), platform.variant.as_deref()) {
        ("arm", Some("v7")) => "armhf",
        ("arm", _) => "armel",
        ("386", _) => "i386",
        ("ppc64le", _) => "ppc64el",
        ("mips64le", _) => "mips64el",
        (other, _) => other,
    }
    .to_owned()
}

/// A secret id becomes a file name under `/run/secrets`.
fn check_secret_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("it is empty");
    }
    if id == "." || id == ".." {
        return Err("it is not a file name");
    }
    if id.len() > 255 {
        return Err("it is longer than 255 characters");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err("it may only contain letters, digits, `.`, `_` and `-`");
    }
    Ok(())
}

/// Signal names a stop signal may use (Linux, as Docker accepts them), without `SIG`.
const SIGNALS: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "RTMIN", "RTMAX",
];

/// A stop signal as the OCI image spec and Docker take it: `SIGTERM`, `TERM`, `SIGRTMIN+3`,
/// `RTMAX-2` (any case) or a number from 1 to 64.
fn valid_signal(text: &str) -> bool {
    if let Ok(n) = text.parse::<u32>() {
        return (1..=64).contains(&n) && !text.starts_with('0');
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if SIGNALS.contains(&name) {
        return true;
    }
    let offset = |rest: &str| {
        !rest.starts_with('0') && rest.parse::<u32>().is_ok_and(|n| (1..=15).contains(&n))
    };
    name.strip_prefix("RTMIN+").is_some_and(offset)
        || name.strip_prefix("RTMAX-").is_some_and(offset)
}

/// A user as the OCI image spec takes it: `user`, `uid`, `user:group`, `uid:gid`,
/// `uid:group` or `user:gid`.
fn check_user(text: &str) -> Result<(), String> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() > 2 {
        return Err("it has more than one `:`".into());
    }
    for part in parts {
        if part.is_empty() {
            return Err("a user or group is empty".into());
        }
        if let Some(c) = part.chars().find(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!("it contains `{}`", c.escape_debug()));
        }
        if part.bytes().all(|b| b.is_ascii_digit()) && part.parse::<u32>().is_err() {
            return Err(format!("`{part}` is not a 32-bit id"));
        }
    }
    Ok(())
}

const STEP_KINDS: &str = "copy, write, mkdir, symlink, remove, packages or run";

impl Cx<'_> {
    pub(super) fn err(
        &self,
        span: Option<std::ops::Range<usize>>,
        message: impl Into<String>,
    ) -> RecipeError {
        self.sources.error(span, message)
    }

    pub(super) fn err_at<T>(&self, value: &S<T>, message: impl Into<String>) -> RecipeError {
        self.err(Some(value.span()), message)
    }

    pub(super) fn line_of(&self, offset: usize) -> usize {
        self.sources.line_of(offset)
    }

    fn image(&self, raw: S<RawImage>) -> Result<ImageSpec, RecipeError> {
        let span = raw.span();
        let raw = raw.into_inner();
        let name = raw.name.ok_or_else(|| {
            self.err(Some(span.clone()), "[image] needs a `name`")
                .help("add `name = \"myimage\"` under [image]")
        })?;
        if let Err(why) = check_image_name(name.get_ref()) {
            let shown: String = name.get_ref().chars().take(64).collect();
            let more = if shown.len() < name.get_ref().len() {
                "..."
            } else {
                ""
            };
            return Err(self
                .err_at(&name, format!("`{}{more}` is not a valid image name: {why}", shown.escape_debug()))
                .help(format!("use lowercase letters and digits, separated by `.`, `_`, `__` or `-`, and `/` between components, at most {MAX_NAME} characters, e.g. `name = \"team/app\"`")));
        }
        let tags = match raw.tags {
            None => vec!["latest".to_owned()],
            Some(tags) => {
                if tags.get_ref().is_empty() {
                    return Err(self
                        .err_at(&tags, "`tags` is empty")
                        .help("remove it (the default is [\"latest\"]) or list at least one tag"));
                }
                let mut out = Vec::new();
                for tag in tags.into_inner() {
                    let t = tag.get_ref();
                    let ok = !t.is_empty()
                        && t.len() <= 128
                        && t.bytes()
                            .next()
                            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
                        && t.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
                    if !ok {
                        return Err(self.err_at(&tag, format!("`{t}` is not a valid tag")).help(
                            "a tag is up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`",
                        ));
                    }
                    out.push(tag.into_inner());
                }
                out
            }
        };
        let platforms_span =
            (raw.platforms.as_ref().map(S::span)).or_else(|| raw.platform.as_ref().map(S::span));
        let platforms = self.platforms(raw.platform, raw.platforms)?;
        let mut sbom = Vec::new();
        for format in raw.sbom.map(S::into_inner).unwrap_or_default() {
            let parsed: SbomFormat = format.get_ref().parse().map_err(|e: String| {
                self.err_at(&format, e)
                    .help("write e.g. `sbom = [\"spdx\", \"cyclonedx\"]`")
            })?;
            if !sbom.contains(&parsed) {
                sbom.push(parsed);
            }
        }
        sbom.sort();
        Ok(ImageSpec {
            name: name.into_inner(),
            tags,
            platform: platforms[0].clone(),
            platforms,
            platforms_span,
            sbom,
            provenance: raw.provenance.is_some_and(|p| *p.get_ref()),
        })
    }

    /// `platform = "..."` or `platforms = [...]` (not both); `linux/amd64` when neither.
    fn platforms(
        &self,
        one: Option<S<String>>,
        many: Option<S<Vec<S<String>>>>,
    ) -> Result<Vec<PlatformSpec>, RecipeError> {
        let parse = |p: &S<String>| {
            p.get_ref().parse::<PlatformSpec>().map_err(|e| {
                self.err_at(p, e)
                    .help("write e.g. `platform = \"linux/arm64\"`, or `platforms = [\"linux/amd64\", \"linux/arm64\"]`")
            })
        };
        match (one, many) {
            (Some(_), Some(many)) => Err(self
                .err_at(&many, "[image] has both `platform` and `platforms`")
                .help("keep `platforms` (it may list one platform) and remove `platform`")),
            (Some(one), None) => Ok(vec![parse(&one)?]),
            (None, None) => Ok(vec![PlatformSpec::amd64()]),
            (None, Some(many)) => {
                if many.get_ref().is_empty() {
                    return Err(self.err_at(&many, "`platforms` is empty").help(
                        "list at least one, e.g. `platforms = [\"linux/amd64\", \"linux/arm64\"]`",
                    ));
                }
                let mut out: Vec<PlatformSpec> = Vec::new();
                for p in many.get_ref() {
                    let parsed = parse(p)?;
                    if out.contains(&parsed) {
                        return Err(self
                            .err_at(p, format!("`{}` is listed twice", p.get_ref()))
                            .help("list each platform once"));
                    }
                    out.push(parsed);
                }
                Ok(out)
            }
        }
    }

    fn base(&self, raw: S<RawFrom>, platform: &PlatformSpec) -> Result<Base, RecipeError> {
        let span = raw.span();
        let from = raw.into_inner();
        let mut kinds: Vec<(&str, std::ops::Range<usize>)> = Vec::new();
        if let Some(s) = &from.scratch {
            if !*s.get_ref() {
                return Err(self
                    .err_at(s, "`scratch = false` does not name a base")
                    .help("remove [from] or name one base"));
            }
            kinds.push(("scratch", s.span()));
        }
        for (name, v) in [
            ("rootfs", &from.rootfs),
            ("oci", &from.oci),
            ("oci_archive", &from.oci_archive),
        ] {
            if let Some(v) = v {
                kinds.push((name, v.span()));
            }
        }
        if let Some(v) = &from.image {
            kinds.push(("image", v.span()));
        }
        if let Some(v) = &from.debian {
            kinds.push(("debian", v.suite.span()));
        }
        let help = "name exactly one of: scratch = true, rootfs = \"file.tar.zst\", image = \"host/repo:tag\", oci = \"layout:tag\", oci_archive = \"image.tar\"";
        match kinds.as_slice() {
            [] => return Err(self.err(Some(span), "[from] names no base").help(help)),
            [_] => {}
            [(a, _), (b, span), ..] => {
                return Err(self
                    .err(
                        Some(span.clone()),
                        format!("[from] names two bases: `{a}` and `{b}`"),
                    )
                    .help(help))
            }
        }
        if let Some(v) = &from.image {
            let Some(text) = v.get_ref().as_str() else {
                return Err(self
                    .err_at(v, "`from.image` must be a string")
                    .help("write it as image = \"registry.example.com/library/debian:bookworm\""));
            };
            return match imgbuild_registry::Reference::parse(text) {
                Ok(reference) => Ok(Base::Registry { reference }),
                Err(e) => Err(self.err_at(v, e.to_string()).help(
                    "name the registry host, the repository and a tag or digest, e.g. \"registry.example.com/library/debian:bookworm\"",
                )),
            };
        }
        if let Some(v) = from.debian {
            return self.debian(v, platform).map(Base::Debian);
        }
        if from.scratch.is_some() {
            return Ok(Base::Scratch);
        }
        if let Some(r) = from.rootfs {
            let file = self.host_file(&r)?;
            if let Err(kind) = check_tarball(&file) {
                return Err(self
                    .err_at(&r, format!("`{}` is not a tar archive: {kind}", r.get_ref()))
                    .help("`rootfs` takes a tar, tar.gz or tar.zst file, e.g. made with `tar -C rootfs -czf rootfs.tar.gz .`"));
            }
            return Ok(Base::Rootfs(file));
        }
        if let Some(a) = from.oci_archive {
            let file = self.host_file(&a)?;
            if let Err(kind) = check_tarball(&file) {
                return Err(self
                    .err_at(&a, format!("`{}` is not a tar archive: {kind}", a.get_ref()))
                    .help("`oci_archive` takes an OCI archive, e.g. made with `imgbuild build --format oci-archive` or `skopeo copy ... oci-archive:FILE`"));
            }
            return Ok(Base::OciArchive(file));
        }
        let oci = from
            .oci
            .ok_or_else(|| self.err(Some(span), "[from] names no base"))?;
        let text = oci.get_ref();
        let (layout, tag) = match text.rsplit_once(':') {
            Some((l, t)) if !t.contains('/') && !t.is_empty() => (l.to_owned(), Some(t.to_owned())),
            _ => (text.clone(), None),
        };
        let dir_path = self.host_file(&S::new(oci.span(), layout))?;
        if !dir_path.join("index.json").is_file() {
            return Err(self
                .err_at(&oci, format!("{} is not an OCI layout (no index.json)", dir_path.display()))
                .help("point `oci` at a directory made by `imgbuild build --format oci` or `skopeo copy ... oci:DIR:TAG`"));
        }
        Ok(Base::OciLayout { dir: dir_path, tag })
    }

    /// `[from] debian`: the main source, `updates`, `security` and the extra sources, each
    /// with a keyring that exists.
    fn debian(
        &self,
        raw: RawDebian,
        platform: &PlatformSpec,
    ) -> Result<crate::debian::DebianFrom, RecipeError> {
        let arch_span = raw.architecture.as_ref().map(S::span);
        let components = |c: Option<S<Vec<String>>>| -> Result<Vec<String>, RecipeError> {
            let Some(c) = c else {
                return Ok(vec!["main".to_owned()]);
            };
            if c.get_ref().is_empty() || c.get_ref().iter().any(|n| !is_component(n)) {
                return Err(self
                    .err_at(&c, "`components` must name at least one component, each like `main` or `non-free-firmware`")
                    .help("write e.g. components = [\"main\", \"contrib\"]"));
            }
            Ok(c.into_inner())
        };
        let suite = |s: S<String>| -> Result<String, RecipeError> {
            if !is_component(s.get_ref()) {
                return Err(self
                    .err_at(&s, format!("`{}` is not a suite name", s.get_ref()))
                    .help("name a suite or codename, e.g. \"bookworm\" or \"stable\""));
            }
            Ok(s.into_inner())
        };
        let variant_span = raw.variant.as_ref().map(S::span);
        let mirror = match raw.mirror {
            Some(m) => self.repository_url(m)?,
            None => crate::debian::DEFAULT_MIRROR.to_owned(),
        };
        let mut debian = crate::debian::DebianFrom {
            suite: suite(raw.suite)?,
            variant: raw
                .variant
                .map_or_else(|| "minbase".to_owned(), S::into_inner),
            mirror,
            components: components(raw.components)?,
            keyring: raw.keyring.map(|k| self.keyring_file(&k)).transpose()?,
            architecture: raw
                .architecture
                .map_or_else(|| "amd64".to_owned(), S::into_inner),
            updates: raw.updates.is_some_and(S::into_inner),
            security: raw.security.is_some_and(S::into_inner),
            apt: raw.apt.is_none_or(S::into_inner),
            sources: Vec::new(),
            snapshot: raw.snapshot.map(|s| self.snapshot_url(s)).transpose()?,
        };
        if !["minbase", "essential", "custom"].contains(&debian.variant.as_str()) {
            return Err(self
                .err(Some(variant_span.unwrap_or_default()), format!("unknown Debian variant `{}`", debian.variant))
                .help("use \"minbase\" (the default), \"essential\" or \"custom\" (only what packages steps ask for)"));
        }
        self.debian_architecture(&mut debian, arch_span, platform)?;
        for source in raw.source.unwrap_or_default() {
            let uri = source.uri.get_ref().clone();
            let Some(keyring) = source.keyring else {
                return Err(self
                    .err_at(&source.uri, format!("the source {uri} names no `keyring`; imgbuild installs only from signed repositories"))
                    .help("add keyring = \"keys/REPO.gpg\": the repository's OpenPGP public key (binary or armored), relative to the recipe or an absolute path"));
            };
            debian.sources.push(crate::debian::ExtraSource {
                uri: self.repository_url(source.uri)?,
                suite: suite(source.suite)?,
                components: components(source.components)?,
                keyring: self.keyring_file(&keyring)?,
            });
        }
        Ok(debian)
    }

    /// A repository's base URL: `http://` or `https://` and a host.
    fn repository_url(&self, value: S<String>) -> Result<String, RecipeError> {
        let text = value.get_ref();
        let host = text
            .strip_prefix("http://")
            .or_else(|| text.strip_prefix("https://"))
            .and_then(|rest| rest.split('/').next())
            .filter(|h| !h.is_empty() && !h.contains(char::is_whitespace));
        if host.is_none() || text.contains(char::is_whitespace) {
            return Err(self
                .err_at(&value, format!("`{text}` is not an http:// or https:// repository URL"))
                .help("write the repository's base URL, e.g. \"https://packages.example.com/debian\" (the directory that holds dists/ and pool/)"));
        }
        Ok(value.into_inner())
    }

    /// A snapshot server's base URL (`snapshot`): `http://` or `https://` and a host.
    fn snapshot_url(&self, value: S<String>) -> Result<String, RecipeError> {
        if !is_http_url(value.get_ref()) {
            return Err(self
                .err_at(&value, format!("`snapshot` is not an http(s) URL: {:?}", value.get_ref()))
                .help("write the base URL of a snapshot.debian.org-style server, e.g. snapshot = \"https://snapshot.debian.org\""));
        }
        Ok(value.into_inner())
    }

    /// A keyring: an absolute path on the host, or a path relative to the recipe; it must
    /// be a file.
    fn keyring_file(&self, value: &S<String>) -> Result<PathBuf, RecipeError> {
        let path = Path::new(value.get_ref());
        let full = if path.is_absolute() {
            path.to_owned()
        } else {
            self.host_file(value)?
        };
        if !full.is_file() {
            return Err(self
                .err_at(value, format!("keyring `{}` is not a file", full.display()))
                .help("name the repository's OpenPGP public key file (binary .gpg or armored .asc), relative to the recipe or as an absolute path; Debian's is /usr/share/keyrings/debian-archive-keyring.gpg from the debian-archive-keyring package"));
        }
        Ok(full)
    }

    /// A Debian base's `architecture` follows `[image] platform` unless it is set; set, it
    /// must be the platform's.
    fn debian_architecture(
        &self,
        debian: &mut crate::debian::DebianFrom,
        set: Option<std::ops::Range<usize>>,
        platform: &PlatformSpec,
    ) -> Result<(), RecipeError> {
        let wanted = debian_arch(platform);
        let Some(value) = set else {
            debian.architecture = wanted;
            return Ok(());
        };
        if debian.architecture == wanted {
            return Ok(());
        }
        // Point at the key: the last `architecture` before its value.
        let from = value.start.saturating_sub(64);
        let key = (from..value.start)
            .rev()
            .find_map(|start| {
                self.sources
                    .text(start..value.start)
                    .and_then(|t| t.rfind("architecture"))
                    .map(|at| start + at..start + at + "architecture".len())
            })
            .unwrap_or(value);
        Err(self
            .err(
                Some(key),
                format!(
                    "Debian architecture `{}` does not match [image] platform `{platform}` (whose Debian architecture is `{wanted}`)",
                    debian.architecture
                ),
            )
            .help(format!(
                "remove `architecture` (it follows the platform), or set it to \"{wanted}\", or change [image] platform"
            )))
    }

    /// A host path relative to the directory of the recipe file that names it, which must
    /// exist and stay inside that directory.
    pub(super) fn host_file(&self, value: &S<String>) -> Result<PathBuf, RecipeError> {
        let dir = self.sources.dir_at(value.span().start);
        let rel = Path::new(value.get_ref());
        if rel.is_absolute() || rel.components().any(|c| c == Component::ParentDir) {
            return Err(self
                .err_at(value, format!("`{}` leaves the recipe's directory", value.get_ref()))
                .help("host paths are relative to the recipe's directory and may not contain `..` or start with `/`; move the file next to the recipe"));
        }
        let full = dir.join(rel);
        let canonical = full.canonicalize().map_err(|e| {
            self.err_at(value, format!("`{}`: {e}", full.display()))
                .help("check the path; it is relative to the recipe's directory")
        })?;
        let root = dir
            .canonicalize()
            .map_err(|e| self.err_at(value, format!("{}: {e}", dir.display())))?;
        if !canonical.starts_with(&root) {
            return Err(self
                .err_at(
                    value,
                    format!(
                        "`{}` resolves outside the recipe's directory (through a symlink)",
                        value.get_ref()
                    ),
                )
                .help("copy the file next to the recipe instead of linking to it"));
        }
        Ok(full)
    }

    /// Validates the steps on `base`.
    fn steps(&self, raw: Vec<S<RawStep>>, base: &Base) -> Result<Vec<Step>, RecipeError> {
        let mut steps = Vec::with_capacity(raw.len());
        // True while the image is known to hold nothing that could run (scratch, and only
        // directories, symlinks and removals so far).
        let mut empty = matches!(base, Base::Scratch);
        for (i, step) in raw.into_iter().enumerate() {
            let step = self.step(i + 1, step, matches!(base, Base::Debian(_)), empty)?;
            empty &= matches!(
                step.op,
                StepOp::Mkdir { .. } | StepOp::Symlink { .. } | StepOp::Remove { .. }
            );
            steps.push(step);
        }
        Ok(steps)
    }

    fn step(
        &self,
        number: usize,
        raw: S<RawStep>,
        debian_base: bool,
        empty_image: bool,
    ) -> Result<Step, RecipeError> {
        let span = raw.span();
        let line = self.line_of(span.start);
        let s = raw.into_inner();
        let mut kinds: Vec<(&str, std::ops::Range<usize>)> = Vec::new();
        macro_rules! kind {
            ($($field:ident),*) => {$(
                if let Some(v) = &s.$field { kinds.push((stringify!($field), v.span())); }
            )*};
        }
        kind!(copy, write, mkdir, symlink, remove, packages, run);
        kinds.sort_by_key(|(_, span)| span.start);
        let (kind, kind_span) = match kinds.as_slice() {
            [] => {
                return Err(self
                    .err(Some(span), format!("step {number} has no kind"))
                    .help(format!("give the step exactly one of: {STEP_KINDS}")))
            }
            [(k, span)] => (*k, span.clone()),
            [(a, _), (b, span), ..] => {
                return Err(self
                    .err(
                        Some(span.clone()),
                        format!("step {number} has two kinds: `{a}` and `{b}`"),
                    )
                    .help("split them into two [[step]] tables; each step does one thing"))
            }
        };
        let allowed: &[&str] = match kind {
            "copy" => &["to", "mode", "owner", "from_stage"],
            "write" => &["content", "mode", "owner"],
            "mkdir" => &["mode", "owner"],
            "symlink" => &["target", "owner"],
            "remove" => &["missing_ok"],
            "packages" => &[],
            "run" => &["network", "env", "workdir", "user", "secrets"],
            _ => &["network", "env", "workdir", "user", "secrets"],
        };
        let mut options: Vec<(&str, std::ops::Range<usize>)> = Vec::new();
        macro_rules! option {
            ($($field:ident),*) => {$(
                if let Some(v) = &s.$field { options.push((stringify!($field), v.span())); }
            )*};
        }
        option!(
            to, from_stage, content, target, mode, owner, network, env, workdir, user, secrets,
            missing_ok
        );
        if let Some((key, span)) = options.iter().find(|(k, _)| !allowed.contains(k)) {
            let help = if allowed.is_empty() {
                format!("a `{kind}` step takes no other keys")
            } else {
                format!("a `{kind}` step takes: {}", allowed.join(", "))
            };
            return Err(self
                .err(
                    Some(span.clone()),
                    format!("`{key}` does not apply to a `{kind}` step"),
                )
                .help(help));
        }
        let owner = match &s.owner {
            Some(o) => self.owner(o)?,
            None => Owner::default(),
        };
        let op = match kind {
            "copy" => {
                let source = s
                    .copy
                    .as_ref()
                    .map(|v| v.get_ref().clone())
                    .unwrap_or_default();
                let copy = s
                    .copy
                    .as_ref()
                    .ok_or_else(|| self.err(Some(span.clone()), "copy"))?;
                let to = s.to.as_ref().ok_or_else(|| {
                    self.err(
                        Some(copy.span()),
                        format!("step {number}: `copy` needs `to`"),
                    )
                    .help("add `to = \"/path/in/image\"`")
                })?;
                if let Some(stage) = &s.from_stage {
                    return Ok(Step {
                        number,
                        line,
                        span: kind_span,
                        table: span,
                        op: StepOp::Copy {
                            source: self.image_glob(copy)?,
                            matches: Vec::new(),
                            to: self.image_path(to)?,
                            mode: s.mode.as_ref().map(|m| self.mode(m)).transpose()?,
                            owner,
                            from_stage: Some(stage.get_ref().clone()),
                        },
                    });
                }
                if copy.get_ref().trim().is_empty() {
                    return Err(self.err_at(copy, "`copy` is empty").help(
                        "name a file, directory or glob relative to the recipe, e.g. copy = \"app/\" (copy = \".\" copies the recipe's whole directory)",
                    ));
                }
                let matches = self.copy_sources(copy)?;
                StepOp::Copy {
                    from_stage: None,
                    source,
                    matches,
                    to: self.image_path(to)?,
                    mode: s.mode.as_ref().map(|m| self.mode(m)).transpose()?,
                    owner,
                }
            }
            "write" => {
                let path = s
                    .write
                    .as_ref()
                    .ok_or_else(|| self.err(Some(span.clone()), "write"))?;
                StepOp::Write {
                    path: self.image_path(path)?,
                    content: s.content.map(S::into_inner).unwrap_or_default(),
                    mode: s
                        .mode
                        .as_ref()
                        .map(|m| self.mode(m))
                        .transpose()?
                        .unwrap_or(0o644),
                    owner,
                }
            }
            "mkdir" => {
                let path = s
                    .mkdir
                    .as_ref()
                    .ok_or_else(|| self.err(Some(span.clone()), "mkdir"))?;
                StepOp::Mkdir {
                    path: self.image_path(path)?,
                    mode: s
                        .mode
                        .as_ref()
                        .map(|m| self.mode(m))
                        .transpose()?
                        .unwrap_or(0o755),
                    owner,
                }
            }
            "symlink" => {
                let path = s
                    .symlink
                    .as_ref()
                    .ok_or_else(|| self.err(Some(span.clone()), "symlink"))?;
                let target = s.target.as_ref().ok_or_else(|| {
                    self.err(
                        Some(path.span()),
                        format!("step {number}: `symlink` needs `target`"),
                    )
                    .help("add `target = \"/where/it/points\"`")
                })?;
                if target.get_ref().is_empty() || target.get_ref().contains('\0') {
                    return Err(self.err_at(target, "`target` must be a non-empty path"));
                }
                StepOp::Symlink {
                    path: self.image_path(path)?,
                    target: target.get_ref().clone(),
                    owner,
                }
            }
            "remove" => {
                let remove = s
                    .remove
                    .ok_or_else(|| self.err(Some(span.clone()), "remove"))?;
                let rspan = remove.span();
                let list = remove.into_inner().into_vec();
                if list.is_empty() {
                    return Err(self
                        .err(Some(rspan), "`remove` lists no paths")
                        .help("list at least one path, e.g. remove = [\"/usr/share/doc\"]"));
                }
                let paths = list
                    .into_iter()
                    .map(|p| self.image_glob(&S::new(rspan.clone(), p)))
                    .collect::<Result<_, _>>()?;
                StepOp::Remove {
                    paths,
                    missing_ok: s.missing_ok.is_some_and(S::into_inner),
                }
            }
            "packages" => {
                let list = s
                    .packages
                    .ok_or_else(|| self.err(Some(span.clone()), "packages"))?;
                if !debian_base {
                    return Err(self
                        .err_at(&list, "`packages` steps need a Debian base")
                        .help("start from Debian: [from] debian = { suite = \"bookworm\" } (variant \"custom\" installs only what packages steps ask for)"));
                }
                if list.get_ref().iter().any(|p| p.contains('\0')) {
                    return Err(self
                        .err_at(&list, "a package name contains a NUL byte")
                        .help("remove the \\u0000"));
                }
                if list.get_ref().is_empty() {
                    return Err(self
                        .err_at(&list, "`packages` lists no packages")
                        .help("name at least one Debian package, e.g. packages = [\"curl\"]"));
                }
                StepOp::Packages {
                    names: list.into_inner(),
                }
            }
            _ => {
                let script = s.run.ok_or_else(|| self.err(Some(span.clone()), "run"))?;
                if script.get_ref().trim().is_empty() {
                    return Err(self
                        .err_at(&script, "`run` is empty")
                        .help("give the shell command to run"));
                }
                if script.get_ref().contains('\0') {
                    return Err(self
                        .err_at(&script, "`run` contains a NUL byte")
                        .help("remove the \\u0000 from the command"));
                }
                if empty_image {
                    return Err(self
                        .err_at(&script, format!("step {number} runs a shell command, but the image has no shell: it starts from scratch and no step before this one adds files"))
                        .help("start from a base with /bin/sh (e.g. [from] debian = { suite = \"bookworm\" }), or copy a statically linked /bin/sh into the image in an earlier step"));
                }
                let user = match &s.user {
                    Some(u) => self.owner(u)?,
                    None => Owner::default(),
                };
                let mut secrets = Vec::new();
                for id in s.secrets.map(S::into_inner).unwrap_or_default() {
                    if let Err(why) = check_secret_id(id.get_ref()) {
                        return Err(self
                            .err_at(&id, format!("secret id `{}` is not valid: {why}", id.get_ref().escape_debug()))
                            .help("a secret id is a file name under /run/secrets: letters, digits, `.`, `_` and `-`, not `.` or `..`, e.g. secrets = [\"npmrc\"]"));
                    }
                    secrets.push(id.into_inner());
                }
                let env = match s.env {
                    Some(env) => self.env(env.into_inner(), "env")?,
                    None => Default::default(),
                };
                StepOp::Run(RunSpec {
                    script: script.into_inner(),
                    network: s.network.map(S::into_inner).unwrap_or(false),
                    env,
                    workdir: match &s.workdir {
                        Some(w) => self.image_path(w)?,
                        None => "/".into(),
                    },
                    user,
                    secrets,
                })
            }
        };
        Ok(Step {
            number,
            line,
            span: kind_span,
            table: span,
            op,
        })
    }

    /// An absolute path or glob inside the image, normalised as [`Self::image_path`]; a
    /// glob must compile (it is matched when the step runs, against the image below it).
    fn image_glob(&self, value: &S<String>) -> Result<String, RecipeError> {
        let path = self.image_path(value)?;
        if crate::steps::image_glob::is_glob(&path) {
            crate::steps::image_glob::matcher(&path).map_err(|e| {
                self.err_at(value, format!("`{}` is not a valid glob: {}", value.get_ref(), e.kind()))
                    .help("`*` and `?` match within one path component, `**` across them, `[abc]` one of the characters; close every `[`")
            })?;
        }
        Ok(path)
    }

    /// An absolute path inside the image, normalised (no `.`, `..` or doubled `/`).
    pub(super) fn image_path(&self, value: &S<String>) -> Result<String, RecipeError> {
        let text = value.get_ref();
        if !text.starts_with('/') {
            return Err(self
                .err_at(
                    value,
                    format!("`{text}` is not an absolute path in the image"),
                )
                .help(format!(
                    "write it from the image's root, e.g. \"/{}\"",
                    text.trim_start_matches("./")
                )));
        }
        let mut parts = Vec::new();
        for part in text.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    return Err(self
                        .err_at(value, format!("`{text}` contains `..`"))
                        .help("write the path without `..`"))
                }
                p if p.contains('\0') => {
                    return Err(self.err_at(value, "paths may not contain NUL"))
                }
                p => parts.push(p),
            }
        }
        if parts.is_empty() {
            return Err(self
                .err_at(value, "the image root `/` itself cannot be the target here")
                .help("name a path below /"));
        }
        Ok(format!("/{}", parts.join("/")) + if text.ends_with('/') { "/" } else { "" })
    }

    fn mode(&self, value: &S<String>) -> Result<u32, RecipeError> {
        u32::from_str_radix(value.get_ref(), 8)
            .ok()
            .filter(|m| *m <= 0o7777 && !value.get_ref().is_empty())
            .ok_or_else(|| {
                self.err_at(value, format!("`{}` is not a file mode", value.get_ref()))
                    .help("write the mode in octal as a string, e.g. mode = \"0755\"")
            })
    }

    fn owner(&self, value: &S<String>) -> Result<Owner, RecipeError> {
        let parsed = value.get_ref().split_once(':').and_then(|(u, g)| {
            Some(Owner {
                uid: u.parse().ok()?,
                gid: g.parse().ok()?,
            })
        });
        parsed.ok_or_else(|| {
            self.err_at(value, format!("`{}` is not an owner", value.get_ref()))
                .help("write numeric ids as \"uid:gid\", e.g. owner = \"1000:1000\"")
        })
    }

    fn copy_sources(&self, copy: &S<String>) -> Result<Vec<PathBuf>, RecipeError> {
        let pattern = copy.get_ref();
        if !pattern.contains(['*', '?', '[']) {
            return Ok(vec![self.host_file(copy)?]);
        }
        let dir = self.sources.dir_at(copy.span().start);
        if Path::new(pattern).is_absolute()
            || Path::new(pattern)
                .components()
                .any(|c| c == Component::ParentDir)
        {
            return Err(self
                .err_at(copy, format!("`{pattern}` leaves the recipe's directory"))
                .help("globs are relative to the recipe's directory and may not contain `..`"));
        }
        let glob = globset::GlobBuilder::new(pattern.trim_start_matches("./"))
            .literal_separator(true)
            .build()
            .map_err(|e| self.err_at(copy, format!("bad glob: {e}")))?
            .compile_matcher();
        let mut matches = Vec::new();
        for entry in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
            let entry =
                entry.map_err(|e| self.err_at(copy, format!("reading {}: {e}", dir.display())))?;
            let rel = entry.path().strip_prefix(dir).unwrap_or(entry.path());
            if glob.is_match(rel) {
                matches.push(entry.path().to_owned());
            }
        }
        if matches.is_empty() {
            return Err(self
                .err_at(
                    copy,
                    format!("`{pattern}` matches nothing in {}", dir.display()),
                )
                .help("check the pattern; it is matched against paths relative to the recipe"));
        }
        Ok(matches)
    }

    /// Checks every `from_stage` names a stage and orders stages so that each comes after
    /// the stages it copies from; a cycle is an error.
    fn order_stages(
        &self,
        stages: Vec<Stage>,
        steps: &[Step],
        spans: &std::collections::BTreeMap<String, std::ops::Range<usize>>,
    ) -> Result<Vec<Stage>, RecipeError> {
        let known: std::collections::BTreeSet<&str> =
            stages.iter().map(|s| s.name.as_str()).collect();
        let all_refs = stages
            .iter()
            .flat_map(|s| s.steps.iter())
            .chain(steps)
            .filter_map(|s| match &s.op {
                StepOp::Copy {
                    from_stage: Some(stage),
                    ..
                } => Some((stage, s.table.start)),
                _ => None,
            });
        for (stage, at) in all_refs {
            if !known.contains(stage.as_str()) {
                return Err(self
                    .err(Some(at..at + 1), format!("no stage named `{stage}`"))
                    .help(format!(
                        "define it as [stage.{stage}] with its own `from` and `step`s"
                    )));
            }
        }
        let mut ordered: Vec<Stage> = Vec::new();
        let mut pending = stages;
        while !pending.is_empty() {
            let done: std::collections::BTreeSet<String> =
                ordered.iter().map(|s| s.name.clone()).collect();
            let (ready, waiting): (Vec<Stage>, Vec<Stage>) = pending
                .into_iter()
                .partition(|s| s.depends_on().all(|d| done.contains(d)));
            if ready.is_empty() {
                let name = &waiting[0].name;
                return Err(self
                    .err(
                        spans.get(name).cloned(),
                        format!("stages copy from each other in a cycle (through `{name}`)"),
                    )
                    .help("a stage may only copy from stages that do not copy from it"));
            }
            ordered.extend(ready);
            pending = waiting;
        }
        Ok(ordered)
    }

    fn disk(&self, raw: S<RawDisk>, platform: &PlatformSpec) -> Result<DiskSpec, RecipeError> {
        let d = raw.into_inner();
        let mut spec = DiskSpec::for_architecture(&platform.architecture);
        if let Some(size) = &d.size {
            spec.size = Some(parse_size(size.get_ref()).ok_or_else(|| {
                self.err_at(size, format!("`{}` is not a disk size", size.get_ref()))
                    .help("write a size with a unit, e.g. size = \"2GiB\" or \"512MiB\"")
            })?);
        }
        if let Some(boot) = &d.boot {
            spec.boot = match boot.get_ref().as_str() {
                "uefi" => BootMode::Uefi,
                "bios" => BootMode::Bios,
                "hybrid" => BootMode::Hybrid,
                other => {
                    return Err(self
                        .err_at(boot, format!("unknown boot mode `{other}`"))
                        .help("use \"uefi\", \"bios\" or \"hybrid\" (both, the default)"))
                }
            };
            if spec.boot != BootMode::Uefi && platform.architecture == "arm64" {
                return Err(self
                    .err_at(
                        boot,
                        format!(
                            "boot = \"{}\" on platform `{platform}`: arm64 disks boot under UEFI only",
                            boot.get_ref()
                        ),
                    )
                    .help("set boot = \"uefi\" (the default for arm64) or remove `boot`"));
            }
        }
        if let Some(fs) = &d.filesystem {
            if fs.get_ref() != "ext4" {
                return Err(self
                    .err_at(
                        fs,
                        format!("unsupported root filesystem `{}`", fs.get_ref()),
                    )
                    .help("only \"ext4\" is supported"));
            }
        }
        if let Some(cmdline) = d.cmdline {
            if cmdline.get_ref().contains('\0') {
                return Err(self
                    .err_at(&cmdline, "`cmdline` contains a NUL byte")
                    .help("remove the \\u0000"));
            }
            spec.cmdline = cmdline.into_inner();
        }
        if let Some(compress) = d.compress {
            spec.compress = compress.into_inner();
        }
        spec.grow = d.grow.map(S::into_inner);
        Ok(spec)
    }

    fn initramfs(&self, raw: S<RawInitramfs>) -> Result<InitramfsSpec, RecipeError> {
        let i = raw.into_inner();
        let mut spec = InitramfsSpec::default();
        if let Some(c) = &i.compression {
            spec.compression = match c.get_ref().as_str() {
                "zstd" => InitramfsCompression::Zstd,
                "gzip" => InitramfsCompression::Gzip,
                other => {
                    return Err(self
                        .err_at(c, format!("unknown initramfs compression `{other}`"))
                        .help("use \"zstd\" (the default) or \"gzip\""))
                }
            };
        }
        if let Some(init) = &i.init {
            spec.init = Some(self.image_path(init)?);
        }
        Ok(spec)
    }

    fn config(&self, raw: S<RawConfig>) -> Result<ConfigSpec, RecipeError> {
        let c = raw.into_inner();
        let workdir = c.workdir.as_ref().map(|w| self.image_path(w)).transpose()?;
        let mut ports = Vec::new();
        for p in c.ports.unwrap_or_default() {
            let (num, proto) = p.get_ref().split_once('/').unwrap_or((p.get_ref(), "tcp"));
            if num.parse::<u16>().map_or(true, |n| n == 0)
                || !["tcp", "udp", "sctp"].contains(&proto)
            {
                return Err(self
                    .err_at(&p, format!("`{}` is not a port", p.get_ref()))
                    .help("write ports as \"8080/tcp\", \"53/udp\" or \"8080\""));
            }
            ports.push(format!("{num}/{proto}"));
        }
        let volumes = c
            .volumes
            .unwrap_or_default()
            .iter()
            .map(|v| self.image_path(v))
            .collect::<Result<_, _>>()?;
        if let Some(user) = &c.user {
            if let Err(why) = check_user(user.get_ref()) {
                return Err(self
                    .err_at(user, format!("`{}` is not a user: {why}", user.get_ref().escape_debug()))
                    .help("write \"user\", \"uid\", \"user:group\" or \"uid:gid\", e.g. user = \"1000:1000\""));
            }
        }
        if let Some(signal) = &c.stop_signal {
            if !valid_signal(signal.get_ref()) {
                return Err(self
                    .err_at(signal, format!("`{}` is not a signal", signal.get_ref().escape_debug()))
                    .help("name a signal such as \"SIGTERM\", \"SIGQUIT\" or \"SIGRTMIN+3\", or give its number (1 to 64)"));
            }
        }
        Ok(ConfigSpec {
            entrypoint: c
                .entrypoint
                .map(|v| self.argv(v, "entrypoint"))
                .transpose()?,
            cmd: c.cmd.map(|v| self.argv(v, "cmd")).transpose()?,
            env: self.env(c.env.unwrap_or_default(), "env")?,
            workdir,
            user: c.user.map(S::into_inner),
            labels: self.env(c.labels.unwrap_or_default(), "labels")?,
            ports,
            volumes,
            stop_signal: c.stop_signal.map(S::into_inner),
        })
    }

    /// An environment (or label) table: names neither empty nor holding `=` (for `env`)
    /// and nothing holding NUL.
    fn env(&self, raw: Env, what: &str) -> Result<BTreeMap<String, String>, RecipeError> {
        let mut out = BTreeMap::new();
        for (key, value) in raw {
            let k = key.get_ref();
            let why = if k.is_empty() {
                Some("it is empty")
            } else if what == "env" && k.contains('=') {
                Some("it contains `=`")
            } else if k.contains('\0') {
                Some("it contains a NUL byte")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(self
                    .err_at(
                        &key,
                        format!("`{}` is not a valid {what} name: {why}", k.escape_debug()),
                    )
                    .help(
                        "names are non-empty and hold no `=` or NUL, e.g. PATH = \"/usr/bin:/bin\"",
                    ));
            }
            if value.get_ref().contains('\0') {
                return Err(self
                    .err_at(&value, format!("the value of `{k}` contains a NUL byte"))
                    .help("remove the \\u0000; a process cannot receive it"));
            }
            out.insert(key.into_inner(), value.into_inner());
        }
        Ok(out)
    }

    /// `entrypoint` or `cmd`: a list of strings (the exec form).
    fn argv(&self, value: S<toml::Value>, key: &str) -> Result<Vec<String>, RecipeError> {
        let list = match value.get_ref() {
            toml::Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<String>>>(),
            _ => None,
        };
        let Some(list) = list else {
            let example = match value.get_ref() {
                toml::Value::String(text) if !text.trim().is_empty() => {
                    let shell = text.contains(['\'', '"', '$', '|', '&', ';', '>', '<', '*', '`']);
                    let words: Vec<String> = if shell {
                        vec!["/bin/sh".into(), "-c".into(), text.clone()]
                    } else {
                        text.split_whitespace().map(str::to_owned).collect()
                    };
                    toml::Value::Array(words.into_iter().map(toml::Value::String).collect())
                        .to_string()
                }
                _ => "[\"/usr/bin/app\", \"--flag\"]".into(),
            };
            return Err(self
                .err_at(&value, format!("`{key}` must be a list of strings"))
                .help(format!(
                    "write the program and its arguments as a list: {key} = {example}"
                )));
        };
        if list.iter().any(|a| a.contains('\0')) {
            return Err(self
                .err_at(
                    &value,
                    format!("an argument in `{key}` contains a NUL byte"),
                )
                .help("remove the \\u0000; a process cannot receive it"));
        }
        Ok(list)
    }
}

/// Checks that `path` starts with a tar header (after gzip or zstd), else says what it
/// looks like instead, without quoting its bytes.
fn check_tarball(path: &Path) -> Result<(), String> {
    use std::io::Read;
    let mut head = Vec::with_capacity(512);
    fs_err::File::open(path)
        .and_then(|f| f.take(512).read_to_end(&mut head))
        .map_err(|e| format!("cannot read it: {e}"))?;
    let compressed = match head.as_slice() {
        [0x1f, 0x8b, ..] => Some("gzip"),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Some("zstd"),
        _ => None,
    };
    let mut block = Vec::with_capacity(512);
    match compressed {
        Some(kind) => {
            let reader = crate::sources::rootfs::open_tarball(path)
                .map_err(|_| format!("{kind} data that cannot be decompressed"))?;
            reader
                .take(512)
                .read_to_end(&mut block)
                .map_err(|_| format!("{kind} data that cannot be decompressed"))?;
        }
        None => block.clone_from(&head),
    }
    if block.len() == 512 && (block.iter().all(|&b| b == 0) || tar_checksum_ok(&block)) {
        return Ok(());
    }
    let what = if let Some(kind) = compressed {
        format!("{kind}-compressed data, but not a tar inside")
    } else {
        sniff(&head).to_owned()
    };
    Err(what)
}

/// Whether `block` is a tar header: its checksum field matches its bytes.
fn tar_checksum_ok(block: &[u8]) -> bool {
    let field = &block[148..156];
    let text: String = field
        .iter()
        .map(|&b| b as char)
        .filter(|c| c.is_digit(8))
        .collect();
    let Ok(stored) = u32::from_str_radix(&text, 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    stored == sum
}

/// A few words on what a file's first bytes look like.
fn sniff(head: &[u8]) -> &'static str {
    match head {
        [] => "the file is empty",
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => "xz-compressed data (use tar, tar.gz or tar.zst)",
        [b'B', b'Z', b'h', ..] => "bzip2-compressed data (use tar, tar.gz or tar.zst)",
        [b'P', b'K', 3, 4, ..] => "a zip archive",
        [0x7f, b'E', b'L', b'F', ..] => "an ELF executable",
        [0x89, b'P', b'N', b'G', ..] => "a PNG image",
        [b'0', b'7', b'0', b'7', b'0', ..] => "a cpio archive",
        [b'Q', b'F', b'I', 0xfb, ..] => "a qcow2 disk image",
        h if h.len() < 512 && std::str::from_utf8(h).is_ok() => "a short text file",
        h if std::str::from_utf8(h).is_ok() => "text",
        _ => "data of an unknown kind",
    }
}

/// Parses `2GiB`, `512MiB`, `1G`, `300M` or plain bytes.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let at = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let n: u64 = text[..at].parse().ok()?;
    let mult: u64 = match text[at..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// True for `http://HOST...` or `https://HOST...` without spaces, query or fragment.
fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    rest.is_some_and(|r| {
        let host = r.split('/').next().unwrap_or("");
        !host.is_empty() && !r.contains(|c: char| c.is_whitespace() || c == '?' || c == '#')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> RecipeError {
        parse(Path::new("r.toml"), text).expect_err("the recipe should be refused")
    }

    fn debian_base(text: &str) -> crate::debian::DebianFrom {
        match parse(Path::new("r.toml"), text).expect("recipe").base {
            Base::Debian(d) => d,
            other => panic!("not a Debian base: {other:?}"),
        }
    }

    #[test]
    fn debian_inline_and_table_forms_are_the_same() {
        let inline = debian_base(
            "[image]\nname = \"x\"\n[from]\ndebian = { suite = \"bookworm\", variant = \"minbase\" }\n",
        );
        let table = debian_base(
            "[image]\nname = \"x\"\n[from.debian]\nsuite = \"bookworm\"\nvariant = \"minbase\"\n",
        );
        assert_eq!(inline, table);
        assert!(inline.apt && !inline.updates && !inline.security && inline.sources.is_empty());
        assert_eq!(inline.apt_sources().len(), 1);
        // An absolute keyring is taken as it is.
        let keyring = tempfile::NamedTempFile::new().unwrap();
        let full = debian_base(&format!(
            "[image]\nname = \"x\"\n[from.debian]\nsuite = \"bookworm\"\nupdates = true\nsecurity = true\napt = false\n\
             [[from.debian.source]]\nuri = \"https://a.example/debian\"\nsuite = \"stable\"\nkeyring = \"{0}\"\n\
             [[from.debian.source]]\nuri = \"https://a.example/other\"\nsuite = \"stable\"\ncomponents = [\"main\", \"contrib\"]\nkeyring = \"{0}\"\n",
            keyring.path().display()
        ));
        assert!(!full.apt);
        let names: Vec<Option<String>> = full.apt_sources().into_iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                None,
                Some("updates".into()),
                Some("security".into()),
                Some("a.example".into()),
                Some("a.example-2".into())
            ]
        );
        assert_eq!(full.sources[1].keyring, keyring.path());
        assert_eq!(full.sources[1].components, ["main", "contrib"]);
    }

    #[test]
    fn image_names_follow_the_distribution_grammar() {
        for good in ["x", "team/app", "a.b_c__d---e/f0", &"a".repeat(200)] {
            assert_eq!(check_image_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "../../etc/x",
            "a/../b",
            "./a",
            "a//b",
            "a/",
            "a..b",
            "a___b",
            "a._b",
            "-a",
            "a-",
            "A",
            "a b",
            &"a".repeat(201),
            &format!("{}/b", "a/".repeat(130)),
        ] {
            assert!(check_image_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signals_as_docker_takes_them() {
        for good in [
            "SIGTERM",
            "term",
            "KILL",
            "9",
            "64",
            "SIGRTMIN+3",
            "rtmax-15",
            "SIGRTMIN",
        ] {
            assert!(valid_signal(good), "{good}");
        }
        for bad in [
            "SIGFOO",
            "",
            "0",
            "65",
            "09",
            "-1",
            "SIGRTMIN+16",
            "RTMIN+0",
            "SIG",
            "TERM ",
        ] {
            assert!(!valid_signal(bad), "{bad}");
        }
    }

    #[test]
    fn users_as_the_oci_config_takes_them() {
        for good in [
            "root",
            "1000",
            "app:app",
            "1000:1000",
            "1000:staff",
            "www-data:33",
        ] {
            assert_eq!(check_user(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            ":",
            "root:",
            ":root",
            "root:root:root",
            "a b",
            "99999999999",
            "a\0",
        ] {
            assert!(check_user(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secret_ids_are_simple_file_names() {
        assert_eq!(check_secret_id("npm.rc-1_x"), Ok(()));
        for bad in ["", ".", "..", "a/b", "a b", &"a".repeat(256)] {
            assert!(check_secret_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_step_s_line_is_found_by_offset() {
        let recipe = parse(
            Path::new("r.toml"),
            "[image]\nname = \"x\"\n\n[[step]]\nmkdir = \"/a\"\n[[step]]\nmkdir = \"/b\"\n",
        )
        .unwrap();
        let lines: Vec<usize> = recipe.steps.iter().map(|s| s.line).collect();
        assert_eq!(lines, [4, 6]);
    }

    #[test]
    fn run_on_an_empty_scratch_image_is_refused_but_not_after_a_write() {
        let head = "[image]\nname = \"x\"\n";
        let e = parse_err(&format!("{head}[[step]]\nrun = \"true\"\n"));
        assert!(e.message.contains("no shell"), "{e}");
        assert_eq!((e.line, e.column), (4, 7));
        let e = parse_err(&format!(
            "{head}[stage.s]\n[[stage.s.step]]\nsymlink = \"/bin/sh\"\ntarget = \"busybox\"\n[[stage.s.step]]\nrun = \"true\"\n"
        ));
        assert!(e.message.contains("no shell"), "{e}");
        parse(
            Path::new("r.toml"),
            &format!("{head}[[step]]\nwrite = \"/bin/sh\"\n[[step]]\nrun = \"true\"\n"),
        )
        .unwrap();
    }

    #[test]
    fn a_string_where_a_list_belongs_gets_the_list_as_help() {
        let e = parse_err("[image]\nname = \"x\"\ntags = \"1.0\"\n");
        assert_eq!(
            e.help.as_deref(),
            Some("this key takes a list: write [\"1.0\"]")
        );
        assert_eq!((e.line, e.column), (3, 8));
    }

    #[test]
    fn disk_compress_is_a_boolean_off_by_default() {
        let head = "[image]\nname = \"x\"\n";
        let r = parse(Path::new("r.toml"), head).unwrap();
        assert!(!r.disk.compress);
        let r = parse(
            Path::new("r.toml"),
            &format!("{head}[disk]\ncompress = true\n"),
        )
        .unwrap();
        assert!(r.disk.compress);
        let e = parse_err(&format!("{head}[disk]\ncompress = \"yes\"\n"));
        assert_eq!(e.line, 4);
    }

    #[test]
    fn disk_grow_is_a_boolean_unset_by_default() {
        let head = "[image]\nname = \"x\"\n";
        let r = parse(Path::new("r.toml"), head).unwrap();
        assert_eq!(r.disk.grow, None);
        for (value, want) in [("true", Some(true)), ("false", Some(false))] {
            let text = format!("{head}[disk]\ngrow = {value}\n");
            let r = parse(Path::new("r.toml"), &text).unwrap();
            assert_eq!(r.disk.grow, want, "{value}");
        }
        let e = parse_err(&format!("{head}[disk]\ngrow = 1\n"));
        assert_eq!(e.line, 4);
    }

    #[test]
    fn entrypoint_as_a_string_gets_the_list_form_as_help() {
        let e = parse_err("[image]\nname = \"x\"\n[config]\nentrypoint = \"/bin/sh\"\n");
        assert_eq!(
            e.help.as_deref(),
            Some("write the program and its arguments as a list: entrypoint = [\"/bin/sh\"]")
        );
        let e = parse_err("[image]\nname = \"x\"\n[config]\ncmd = \"echo $HOME\"\n");
        assert!(e
            .help
            .unwrap()
            .contains(r#"cmd = ["/bin/sh", "-c", "echo $HOME"]"#));
    }

    #[test]
    fn tar_headers_are_told_from_other_files() {
        let mut header = [0u8; 512];
        header[..5].copy_from_slice(b"a.txt");
        header[156] = b'0';
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum::<u32>() + 8 * 32;
        header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        assert!(tar_checksum_ok(&header));
        header[0] = b'b';
        assert!(!tar_checksum_ok(&header));
        assert_eq!(sniff(b""), "the file is empty");
        assert_eq!(
            sniff(b"\xfd7zXZ\0rest"),
            "xz-compressed data (use tar, tar.gz or tar.zst)"
        );
    }
}
