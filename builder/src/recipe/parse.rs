//! Reading a recipe file and validating it into a [`Recipe`].

use super::error::RecipeError;
use super::model::{
    Base, BootMode, ConfigSpec, DiskSpec, ImageSpec, InitramfsCompression, InitramfsSpec, Owner,
    PlatformSpec, Recipe, RunSpec, Step, StepOp,
};
use super::raw::{RawConfig, RawDisk, RawFrom, RawImage, RawInitramfs, RawRecipe, RawStep, S};
use std::path::{Component, Path, PathBuf};

/// Reads and validates the recipe at `path`.
pub fn load(path: &Path) -> Result<Recipe, RecipeError> {
    let source = fs_err::read_to_string(path).map_err(|e| {
        RecipeError::at(path, "", None, format!("cannot read recipe: {e}"))
            .help("pass the path of a recipe file, e.g. `imgbuild build recipes/hello.toml`")
    })?;
    parse(path, &source)
}

/// Validates recipe text as if it were read from `path` (copy sources are looked up
/// relative to `path`'s directory).
pub fn parse(path: &Path, source: &str) -> Result<Recipe, RecipeError> {
    let cx = Cx { path, source };
    let raw: RawRecipe = toml::from_str(source).map_err(|e| {
        let message = e.message().trim_end().to_owned();
        let help = if message.starts_with("unknown field") {
            "remove the key or fix its spelling; docs/recipe.md lists every key"
        } else if message.starts_with("missing field") {
            "add the key; docs/recipe.md lists what each table needs"
        } else {
            "see docs/recipe.md for the recipe format"
        };
        cx.err(e.span(), message).help(help)
    })?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let image = cx.image(raw.image)?;
    let base = match raw.from {
        Some(from) => cx.base(from, &dir)?,
        None => Base::Scratch,
    };
    let steps = raw
        .step
        .into_iter()
        .enumerate()
        .map(|(i, step)| cx.step(i + 1, step, &dir, matches!(base, Base::Debian(_))))
        .collect::<Result<_, _>>()?;
    let config = match raw.config {
        Some(c) => cx.config(c)?,
        None => ConfigSpec::default(),
    };
    let disk = match raw.disk {
        Some(d) => cx.disk(d)?,
        None => DiskSpec::default(),
    };
    let initramfs = match raw.initramfs {
        Some(i) => cx.initramfs(i)?,
        None => InitramfsSpec::default(),
    };
    Ok(Recipe {
        path: path.to_owned(),
        dir,
        image,
        base,
        steps,
        config,
        disk,
        initramfs,
    })
}

struct Cx<'a> {
    path: &'a Path,
    source: &'a str,
}

const STEP_KINDS: &str = "copy, write, mkdir, symlink, remove, packages or run";

impl Cx<'_> {
    fn err(&self, span: Option<std::ops::Range<usize>>, message: impl Into<String>) -> RecipeError {
        RecipeError::at(self.path, self.source, span, message)
    }

    fn err_at<T>(&self, value: &S<T>, message: impl Into<String>) -> RecipeError {
        self.err(Some(value.span()), message)
    }

    fn line_of(&self, offset: usize) -> usize {
        self.source[..offset.min(self.source.len())]
            .matches('\n')
            .count()
            + 1
    }

    fn image(&self, raw: S<RawImage>) -> Result<ImageSpec, RecipeError> {
        let span = raw.span();
        let raw = raw.into_inner();
        let name = raw.name.ok_or_else(|| {
            self.err(Some(span.clone()), "[image] needs a `name`")
                .help("add `name = \"myimage\"` under [image]")
        })?;
        let valid_name = !name.get_ref().is_empty()
            && name.get_ref().split('/').all(|part| {
                !part.is_empty()
                    && part.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
            });
        if !valid_name {
            return Err(self
                .err_at(&name, format!("`{}` is not a valid image name", name.get_ref()))
                .help("use lowercase letters, digits, `.`, `_`, `-` and `/`, e.g. `name = \"team/app\"`"));
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
        let platform = match raw.platform {
            None => PlatformSpec {
                os: "linux".into(),
                architecture: "amd64".into(),
                variant: None,
            },
            Some(p) => match p.get_ref().as_str() {
                "linux/amd64" => PlatformSpec {
                    os: "linux".into(),
                    architecture: "amd64".into(),
                    variant: None,
                },
                "linux/arm64" | "linux/arm64/v8" => PlatformSpec {
                    os: "linux".into(),
                    architecture: "arm64".into(),
                    variant: Some("v8".into()),
                },
                other => {
                    return Err(self
                        .err_at(&p, format!("unsupported platform `{other}`"))
                        .help("use \"linux/amd64\" (the default) or \"linux/arm64\""))
                }
            },
        };
        Ok(ImageSpec {
            name: name.into_inner(),
            tags,
            platform,
        })
    }

    fn base(&self, raw: S<RawFrom>, dir: &Path) -> Result<Base, RecipeError> {
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
        for (name, v) in [("image", &from.image), ("debian", &from.debian)] {
            if let Some(v) = v {
                kinds.push((name, v.span()));
            }
        }
        let help = "name exactly one of: scratch = true, rootfs = \"file.tar.zst\", oci = \"layout:tag\", oci_archive = \"image.tar\"";
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
        if let Some(v) = from.image.as_ref() {
            return Err(self
                .err_at(
                    v,
                    "`from.image` is not supported by this version of imgbuild",
                )
                .help("use scratch, rootfs, oci, oci_archive or debian for now"));
        }
        if let Some(v) = from.debian {
            let span = v.span();
            let mut debian: crate::debian::DebianFrom = v.into_inner().try_into().map_err(|e: toml::de::Error| {
                self.err(Some(span.clone()), format!("[from] debian: {}", e.message().trim_end()))
                    .help("write e.g. debian = { suite = \"bookworm\", variant = \"minbase\" }; keys: suite, variant, mirror, components, keyring, architecture")
            })?;
            if !["minbase", "essential", "custom"].contains(&debian.variant.as_str()) {
                return Err(self
                    .err(Some(span), format!("unknown Debian variant `{}`", debian.variant))
                    .help("use \"minbase\" (the default), \"essential\" or \"custom\" (only what packages steps ask for)"));
            }
            if let Some(keyring) = &debian.keyring {
                debian.keyring =
                    Some(self.host_file(&S::new(span, keyring.display().to_string()), dir)?);
            }
            return Ok(Base::Debian(debian));
        }
        if from.scratch.is_some() {
            return Ok(Base::Scratch);
        }
        if let Some(r) = from.rootfs {
            return Ok(Base::Rootfs(self.host_file(&r, dir)?));
        }
        if let Some(a) = from.oci_archive {
            return Ok(Base::OciArchive(self.host_file(&a, dir)?));
        }
        let oci = from
            .oci
            .ok_or_else(|| self.err(Some(span), "[from] names no base"))?;
        let text = oci.get_ref();
        let (layout, tag) = match text.rsplit_once(':') {
            Some((l, t)) if !t.contains('/') && !t.is_empty() => (l.to_owned(), Some(t.to_owned())),
            _ => (text.clone(), None),
        };
        let dir_path = self.host_file(&S::new(oci.span(), layout), dir)?;
        if !dir_path.join("index.json").is_file() {
            return Err(self
                .err_at(&oci, format!("{} is not an OCI layout (no index.json)", dir_path.display()))
                .help("point `oci` at a directory made by `imgbuild build --format oci` or `skopeo copy ... oci:DIR:TAG`"));
        }
        Ok(Base::OciLayout { dir: dir_path, tag })
    }

    /// A host path relative to the recipe's directory that must exist and stay inside it.
    fn host_file(&self, value: &S<String>, dir: &Path) -> Result<PathBuf, RecipeError> {
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

    fn step(
        &self,
        number: usize,
        raw: S<RawStep>,
        dir: &Path,
        debian_base: bool,
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
        let kind = match kinds.as_slice() {
            [] => {
                return Err(self
                    .err(Some(span), format!("step {number} has no kind"))
                    .help(format!("give the step exactly one of: {STEP_KINDS}")))
            }
            [(k, _)] => *k,
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
            "remove" => &[],
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
        option!(to, from_stage, content, target, mode, owner, network, env, workdir, user, secrets);
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
                    return Err(self
                        .err_at(
                            stage,
                            "`from_stage` is not supported by this version of imgbuild",
                        )
                        .help("copy from the recipe's directory for now"));
                }
                let matches = self.copy_sources(copy, dir)?;
                StepOp::Copy {
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
                    .map(|p| self.image_path(&S::new(rspan.clone(), p)))
                    .collect::<Result<_, _>>()?;
                StepOp::Remove { paths }
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
                let user = match &s.user {
                    Some(u) => self.owner(u)?,
                    None => Owner::default(),
                };
                let secrets = s.secrets.map(S::into_inner).unwrap_or_default();
                let valid = |id: &String| {
                    !id.is_empty()
                        && id
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                };
                if let Some(bad) = secrets.iter().find(|id| !valid(id)) {
                    return Err(self
                        .err(
                            Some(span.clone()),
                            format!("secret id `{bad}` is not valid"),
                        )
                        .help("secret ids are letters, digits, `.`, `_` and `-`"));
                }
                StepOp::Run(RunSpec {
                    script: script.into_inner(),
                    network: s.network.map(S::into_inner).unwrap_or(false),
                    env: s.env.map(S::into_inner).unwrap_or_default(),
                    workdir: match &s.workdir {
                        Some(w) => self.image_path(w)?,
                        None => "/".into(),
                    },
                    user,
                    secrets,
                })
            }
        };
        Ok(Step { number, line, op })
    }

    /// An absolute path inside the image, normalised (no `.`, `..` or doubled `/`).
    fn image_path(&self, value: &S<String>) -> Result<String, RecipeError> {
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

    fn copy_sources(&self, copy: &S<String>, dir: &Path) -> Result<Vec<PathBuf>, RecipeError> {
        let pattern = copy.get_ref();
        if !pattern.contains(['*', '?', '[']) {
            return Ok(vec![self.host_file(copy, dir)?]);
        }
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

    fn disk(&self, raw: S<RawDisk>) -> Result<DiskSpec, RecipeError> {
        let d = raw.into_inner();
        let mut spec = DiskSpec::default();
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
            spec.cmdline = cmdline.into_inner();
        }
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
            if user.get_ref().is_empty() {
                return Err(self
                    .err_at(user, "`user` is empty")
                    .help("write \"uid:gid\", \"uid\" or a user name"));
            }
        }
        for key in c.env.iter().flat_map(|e| e.keys()) {
            if key.is_empty() || key.contains('=') {
                return Err(self
                    .err(
                        None,
                        format!("environment variable name `{key}` is not valid"),
                    )
                    .help("names may not be empty or contain `=`"));
            }
        }
        Ok(ConfigSpec {
            entrypoint: c.entrypoint,
            cmd: c.cmd,
            env: c.env.unwrap_or_default(),
            workdir,
            user: c.user.map(S::into_inner),
            labels: c.labels.unwrap_or_default(),
            ports,
            volumes,
            stop_signal: c.stop_signal,
        })
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
