//! `include = ["common.toml"]`: a recipe assembled from several files.
//!
//! Every file is parsed on its own; its spans are then moved to its own range of one global
//! byte range ([`Sources`]), so a value keeps pointing at the file, line and column it came
//! from however the files are merged. Included files come first, in include order and
//! depth first: their `[[step]]`s before the including file's, their section keys merged
//! key by key with it. A key set in two files is an error naming both places, except
//! `[image] name` and `tags`, which the recipe being built sets for itself.

use super::error::RecipeError;
use super::raw::{
    Env, OneOrMany, RawAptSource, RawConfig, RawDebian, RawDisk, RawFrom, RawImage, RawInitramfs,
    RawNetwork, RawRecipe, RawServices, RawStage, RawStatic, RawStep, RawSystem, RawUser, S,
};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

/// Every file a recipe was read from, each placed at its own offset of one global byte
/// range, so that any span of the merged recipe names its file.
#[derive(Debug)]
pub struct Sources {
    files: Vec<SourceFile>,
}

/// One recipe file.
#[derive(Debug)]
pub struct SourceFile {
    /// The file as it was named (relative to the including file's directory for includes).
    pub path: PathBuf,
    /// The directory its host paths are relative to.
    pub dir: PathBuf,
    /// Its text.
    pub text: String,
    /// Where its text starts in the global byte range.
    base: usize,
    /// Byte offset of every line's start, so finding a line stays O(log n).
    line_starts: Vec<usize>,
}

impl Sources {
    fn push(&mut self, path: &Path, text: String) -> usize {
        // One byte of gap, so the end of a file is not the start of the next.
        let base = self.files.last().map_or(0, |f| f.base + f.text.len() + 1);
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned();
        self.files.push(SourceFile {
            path: path.to_owned(),
            dir,
            line_starts: std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
            text,
            base,
        });
        base
    }

    /// The recipe file that was loaded (the one that includes the others).
    pub fn main(&self) -> &SourceFile {
        &self.files[0]
    }

    /// Every recipe file: the loaded one first, then its includes in the order they were read.
    pub fn files(&self) -> &[SourceFile] {
        &self.files
    }

    /// The file holding global offset `at`.
    pub fn file_at(&self, at: usize) -> &SourceFile {
        let i = self.files.partition_point(|f| f.base <= at);
        &self.files[i.saturating_sub(1)]
    }

    /// The file and its local byte range of a global span.
    fn local(&self, span: &Range<usize>) -> (&SourceFile, Range<usize>) {
        let file = self.file_at(span.start);
        let start = span.start - file.base;
        let end = span.end.saturating_sub(file.base).max(start);
        (file, start..end)
    }

    /// The text of a global span, when it lies inside one file.
    pub fn text(&self, span: Range<usize>) -> Option<&str> {
        let (file, local) = self.local(&span);
        file.text.get(local)
    }

    /// An error located at a global span (or about the main file as a whole).
    pub fn error(&self, span: Option<Range<usize>>, message: impl Into<String>) -> RecipeError {
        match span {
            Some(span) => {
                let (file, local) = self.local(&span);
                RecipeError::at(&file.path, &file.text, Some(local), message)
            }
            None => RecipeError::at(&self.main().path, "", None, message),
        }
    }

    /// `file:line:col` of a global offset, for messages that name a second place.
    pub fn place(&self, at: usize) -> String {
        let e = self.error(Some(at..at + 1), "");
        format!("{}:{}:{}", e.file.display(), e.line, e.column)
    }

    /// The 1-based line, in its own file, of a global offset.
    pub fn line_of(&self, at: usize) -> usize {
        let file = self.file_at(at);
        file.line_starts.partition_point(|&s| s <= at - file.base)
    }

    /// The directory host paths named at global offset `at` are relative to.
    pub fn dir_at(&self, at: usize) -> &Path {
        &self.file_at(at).dir
    }
}

/// Reads `path` (whose text is `text`) and everything it includes into one raw recipe,
/// with every span global in the returned [`Sources`].
pub(crate) fn assemble(path: &Path, text: &str) -> Result<(RawRecipe, Sources), RecipeError> {
    let mut reader = Reader {
        sources: Sources { files: Vec::new() },
        chain: Vec::new(),
        seen: BTreeSet::new(),
        parts: Vec::new(),
    };
    reader.read(path, text.to_owned(), None)?;
    let Reader { sources, parts, .. } = reader;
    let raw = merge(&sources, parts)?;
    Ok((raw, sources))
}

struct Reader {
    sources: Sources,
    /// Canonical paths of the files being read, outermost first, with the path as named.
    chain: Vec<(PathBuf, PathBuf)>,
    /// Canonical paths already read: a file included twice is read once, where it first
    /// appears.
    seen: BTreeSet<PathBuf>,
    /// Every file's recipe, in merge order (includes before the file that names them).
    parts: Vec<RawRecipe>,
}

impl Reader {
    fn read(
        &mut self,
        path: &Path,
        text: String,
        named_at: Option<Range<usize>>,
    ) -> Result<(), RecipeError> {
        let canonical = path.canonicalize().unwrap_or_else(|_| path.to_owned());
        if let Some(at) = self.chain.iter().position(|(p, _)| *p == canonical) {
            let names: Vec<String> = self.chain[at..]
                .iter()
                .map(|(_, named)| named.display().to_string())
                .chain(std::iter::once(path.display().to_string()))
                .collect();
            return Err(self
                .sources
                .error(named_at, format!("recipes include each other in a cycle: {}", names.join(" -> ")))
                .help("remove one of these includes; put what both need in a third file that both include"));
        }
        if !self.seen.insert(canonical.clone()) {
            return Ok(());
        }
        let base = self.sources.push(path, text);
        let file = self.sources.files.last().expect("just pushed");
        let raw = parse_toml(&file.path, &file.text)?.shift(base);
        self.chain.push((canonical, path.to_owned()));
        let dir = self.sources.files.last().expect("pushed").dir.clone();
        for name in raw.include.iter().flat_map(|l| l.get_ref()) {
            let included = self.include_path(name, &dir)?;
            let text = fs_err::read_to_string(&included).map_err(|e| {
                self.sources
                    .error(
                        Some(name.span()),
                        format!("cannot read the included recipe: {e}"),
                    )
                    .help("check the path; it is relative to the file that includes it")
            })?;
            self.read(&included, text, Some(name.span()))?;
        }
        self.chain.pop();
        self.parts.push(raw);
        Ok(())
    }

    /// The file an `include` entry names: relative to the including file and inside its
    /// directory, as every host path of a recipe is.
    fn include_path(&self, name: &S<String>, dir: &Path) -> Result<PathBuf, RecipeError> {
        let rel = Path::new(name.get_ref());
        if name.get_ref().is_empty()
            || rel.is_absolute()
            || rel.components().any(|c| c == Component::ParentDir)
        {
            return Err(self
                .sources
                .error(Some(name.span()), format!("`{}` is not a file inside the recipe's directory", name.get_ref()))
                .help("include files relative to the including recipe, without `..` or a leading `/`, e.g. include = [\"common/base.toml\"]"));
        }
        let full = dir.join(rel);
        // Through a symlink it may still lead out; a missing file is reported when read.
        if let (Ok(file), Ok(root)) = (full.canonicalize(), dir.canonicalize()) {
            if !file.starts_with(&root) {
                return Err(self
                    .sources
                    .error(
                        Some(name.span()),
                        format!(
                            "`{}` resolves outside the recipe's directory (through a symlink)",
                            name.get_ref()
                        ),
                    )
                    .help("copy the file next to the recipe instead of linking to it"));
            }
        }
        Ok(full)
    }
}

/// Parses one file's TOML, with errors located in it.
fn parse_toml(path: &Path, source: &str) -> Result<RawRecipe, RecipeError> {
    toml::from_str(source).map_err(|e| {
        let message = e.message().trim_end().to_owned();
        let written = e
            .span()
            .and_then(|span| source.get(span))
            .map(str::trim)
            .filter(|w| !w.is_empty() && w.len() <= 200 && !w.contains('\n'));
        let help = if message.starts_with("unknown field") {
            "remove the key or fix its spelling; docs/recipe.md lists every key".to_owned()
        } else if message.starts_with("missing field") {
            "add the key; docs/recipe.md lists what each table needs".to_owned()
        } else if let (true, Some(w)) = (message.contains("expected a sequence"), written) {
            format!("this key takes a list: write [{w}]")
        } else {
            "see docs/recipe.md for the recipe format".to_owned()
        };
        RecipeError::at(path, source, e.span(), message).help(help)
    })
}

/// Merges the files' recipes, given in merge order (the main file last).
fn merge(sources: &Sources, mut parts: Vec<RawRecipe>) -> Result<RawRecipe, RecipeError> {
    let mut main = parts.pop().expect("the main file is always read");
    // The recipe being built names its image: its name and tags win over its includes'.
    let main_image = main.image.as_ref().map(S::get_ref);
    let (own_name, own_tags) =
        main_image.map_or((false, false), |i| (i.name.is_some(), i.tags.is_some()));
    let m = Merger { sources };
    let mut out = RawRecipe::default();
    for mut part in parts {
        if let Some(image) = &mut part.image {
            if own_name {
                image.get_mut().name = None;
            }
            if own_tags {
                image.get_mut().tags = None;
            }
        }
        m.recipe(&mut out, part)?;
    }
    main.include = None;
    m.recipe(&mut out, main)?;
    Ok(out)
}

struct Merger<'a> {
    sources: &'a Sources,
}

impl Merger<'_> {
    fn conflict(&self, key: &str, first: &Range<usize>, second: &Range<usize>) -> RecipeError {
        self.sources
            .error(
                Some(second.clone()),
                format!("{key} is set twice: here and at {}", self.sources.place(first.start)),
            )
            .help("a recipe and the files it includes may not set the same key (only [image] name and tags of the recipe being built override its includes'); remove one of them")
    }

    /// `from` into `into`, unless both are set.
    fn key<T>(
        &self,
        name: &str,
        into: &mut Option<S<T>>,
        from: Option<S<T>>,
    ) -> Result<(), RecipeError> {
        match (into.as_ref(), from) {
            (Some(a), Some(b)) => Err(self.conflict(name, &a.span(), &b.span())),
            (None, Some(b)) => {
                *into = Some(b);
                Ok(())
            }
            (_, None) => Ok(()),
        }
    }

    /// A section merged key by key by `each`; a section only one file has is taken whole.
    fn section<T>(
        &self,
        into: &mut Option<S<T>>,
        from: Option<S<T>>,
        each: impl FnOnce(&Self, &mut T, T) -> Result<(), RecipeError>,
    ) -> Result<(), RecipeError> {
        match (into.as_mut(), from) {
            (Some(a), Some(b)) => each(self, a.get_mut(), b.into_inner()),
            (None, Some(b)) => {
                *into = Some(b);
                Ok(())
            }
            (_, None) => Ok(()),
        }
    }

    /// A table of strings merged name by name.
    fn table(
        &self,
        what: &str,
        into: &mut Option<Env>,
        from: Option<Env>,
    ) -> Result<(), RecipeError> {
        let Some(from) = from else { return Ok(()) };
        let into = into.get_or_insert_with(BTreeMap::new);
        for (k, v) in from {
            if let Some((first, _)) = into.get_key_value(&k) {
                return Err(self.conflict(
                    &format!("[config] {what}.{}", k.get_ref()),
                    &first.span(),
                    &k.span(),
                ));
            }
            into.insert(k, v);
        }
        Ok(())
    }

    /// A list without a span of its own (`ports`, `volumes`): located at its first item.
    fn list(
        &self,
        name: &str,
        into: &mut Option<Vec<S<String>>>,
        from: Option<Vec<S<String>>>,
        section: &Range<usize>,
    ) -> Result<(), RecipeError> {
        match (into.as_ref(), from) {
            (Some(a), Some(b)) => {
                let at = |l: &Vec<S<String>>| l.first().map_or(section.clone(), S::span);
                Err(self.conflict(name, &at(a), &at(&b)))
            }
            (None, Some(b)) => {
                *into = Some(b);
                Ok(())
            }
            (_, None) => Ok(()),
        }
    }

    fn recipe(&self, out: &mut RawRecipe, part: RawRecipe) -> Result<(), RecipeError> {
        self.section(&mut out.image, part.image, |m, a: &mut RawImage, b| {
            m.key("[image] name", &mut a.name, b.name)?;
            m.key("[image] tags", &mut a.tags, b.tags)?;
            m.key("[image] platform", &mut a.platform, b.platform)?;
            m.key("[image] platforms", &mut a.platforms, b.platforms)?;
            m.key("[image] sbom", &mut a.sbom, b.sbom)?;
            m.key("[image] provenance", &mut a.provenance, b.provenance)
        })?;
        // A base is one thing: [from] comes from one file.
        self.key("[from]", &mut out.from, part.from)?;
        let config_span = part.config.as_ref().map(S::span).unwrap_or_default();
        self.section(&mut out.config, part.config, |m, a: &mut RawConfig, b| {
            m.key("[config] entrypoint", &mut a.entrypoint, b.entrypoint)?;
            m.key("[config] cmd", &mut a.cmd, b.cmd)?;
            m.table("env", &mut a.env, b.env)?;
            m.key("[config] workdir", &mut a.workdir, b.workdir)?;
            m.key("[config] user", &mut a.user, b.user)?;
            m.table("labels", &mut a.labels, b.labels)?;
            m.list("[config] ports", &mut a.ports, b.ports, &config_span)?;
            m.list("[config] volumes", &mut a.volumes, b.volumes, &config_span)?;
            m.key("[config] stop_signal", &mut a.stop_signal, b.stop_signal)
        })?;
        self.section(&mut out.disk, part.disk, |m, a: &mut RawDisk, b| {
            m.key("[disk] size", &mut a.size, b.size)?;
            m.key("[disk] boot", &mut a.boot, b.boot)?;
            m.key("[disk] filesystem", &mut a.filesystem, b.filesystem)?;
            m.key("[disk] cmdline", &mut a.cmdline, b.cmdline)?;
            m.key("[disk] compress", &mut a.compress, b.compress)?;
            m.key("[disk] grow", &mut a.grow, b.grow)
        })?;
        self.section(
            &mut out.initramfs,
            part.initramfs,
            |m, a: &mut RawInitramfs, b| {
                m.key("[initramfs] compression", &mut a.compression, b.compression)?;
                m.key("[initramfs] init", &mut a.init, b.init)
            },
        )?;
        if let Some(stages) = part.stage {
            let into = out.stage.get_or_insert_with(BTreeMap::new);
            for (name, stage) in stages {
                if let Some(first) = into.get(&name) {
                    return Err(self.conflict(
                        &format!("[stage.{name}]"),
                        &first.span(),
                        &stage.span(),
                    ));
                }
                into.insert(name, stage);
            }
        }
        // The system settings are one thing: [system] comes from one file.
        self.key("[system]", &mut out.system, part.system)?;
        out.step.extend(part.step);
        Ok(())
    }
}

/// Moves every span of a parsed file by `by` bytes, into the global range.
pub(crate) trait Shift {
    /// The value with its spans moved.
    fn shift(self, by: usize) -> Self;
}

impl<T: Shift> Shift for S<T> {
    fn shift(self, by: usize) -> Self {
        let span = self.span();
        S::new(span.start + by..span.end + by, self.into_inner().shift(by))
    }
}

impl<T: Shift> Shift for Option<T> {
    fn shift(self, by: usize) -> Self {
        self.map(|v| v.shift(by))
    }
}

impl<T: Shift> Shift for Vec<T> {
    fn shift(self, by: usize) -> Self {
        self.into_iter().map(|v| v.shift(by)).collect()
    }
}

impl<K: Shift + Ord, V: Shift> Shift for BTreeMap<K, V> {
    fn shift(self, by: usize) -> Self {
        self.into_iter()
            .map(|(k, v)| (k.shift(by), v.shift(by)))
            .collect()
    }
}

macro_rules! unspanned {
    ($($t:ty),*) => {$(
        impl Shift for $t {
            fn shift(self, _: usize) -> Self { self }
        }
    )*};
}
unspanned!(String, bool, i64, toml::Value, OneOrMany);

macro_rules! fields {
    ($($t:ident { $($f:ident),* })*) => {$(
        impl Shift for $t {
            fn shift(self, by: usize) -> Self {
                Self { $($f: self.$f.shift(by)),* }
            }
        }
    )*};
}
fields! {
    RawRecipe { include, image, from, step, config, disk, initramfs, stage, system }
    RawSystem { hostname, timezone, locale, keymap, services, user, network }
    RawServices { enable, disable, mask }
    RawUser {
        name, uid, groups, create_groups, shell, home, ssh_authorized_keys,
        ssh_authorized_keys_file, password_hash, sudo
    }
    RawNetwork { dhcp, fixed }
    RawStatic { interface, address, gateway, dns }
    RawStage { from, step }
    RawDisk { size, boot, filesystem, cmdline, compress, grow }
    RawInitramfs { compression, init }
    RawImage { name, tags, platform, platforms, sbom, provenance }
    RawFrom { scratch, rootfs, oci, oci_archive, image, debian }
    RawDebian {
        suite, variant, mirror, components, keyring, architecture, updates, security, apt, source,
        snapshot
    }
    RawAptSource { uri, suite, components, keyring }
    RawStep {
        copy, write, mkdir, symlink, remove, packages, run, to, from_stage, content, target,
        mode, owner, network, env, workdir, user, secrets, missing_ok
    }
    RawConfig { entrypoint, cmd, env, workdir, user, labels, ports, volumes, stop_signal }
}

#[cfg(test)]
mod tests {
    use crate::recipe::{load, parse, Recipe};
    use std::path::Path;

    fn same(a: &Recipe, b: &Recipe) {
        assert_eq!(a.image, b.image);
        assert_eq!(a.base, b.base);
        let ops = |r: &Recipe| r.steps.iter().map(|s| s.op.clone()).collect::<Vec<_>>();
        assert_eq!(ops(a), ops(b));
        assert_eq!(a.config, b.config);
        assert_eq!(a.disk, b.disk);
        assert_eq!(a.initramfs, b.initramfs);
    }

    #[test]
    fn a_shipped_recipe_is_the_same_as_with_its_include_written_out() {
        let recipes = Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes");
        let common = fs_err::read_to_string(recipes.join("common/debian-bookworm.toml")).unwrap();
        for name in ["debian-minimal.toml", "debian-vm.toml"] {
            let path = recipes.join(name);
            let text = fs_err::read_to_string(&path).unwrap();
            let line = text.lines().find(|l| l.starts_with("include")).unwrap();
            // Written out: the included [from] after the recipe's own tables, in one file.
            let inlined = format!("{}\n{common}", text.replace(line, ""));
            same(&load(&path).unwrap(), &parse(&path, &inlined).unwrap());
        }
    }

    #[test]
    fn the_built_recipe_names_the_image_and_a_file_included_twice_is_read_once() {
        let tmp = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| fs_err::write(tmp.path().join(name), text).unwrap();
        write(
            "d.toml",
            "[image]\nname = \"d\"\ntags = [\"d\"]\n[[step]]\nmkdir = \"/d\"\n",
        );
        write(
            "b.toml",
            "include = [\"d.toml\"]\n[[step]]\nmkdir = \"/b\"\n",
        );
        write(
            "c.toml",
            "include = [\"d.toml\"]\n[[step]]\nmkdir = \"/c\"\n",
        );
        write(
            "a.toml",
            "include = [\"b.toml\", \"c.toml\"]\n[image]\nname = \"a\"\n",
        );
        let a = load(&tmp.path().join("a.toml")).unwrap();
        assert_eq!(
            (a.image.name.as_str(), a.image.tags.as_slice()),
            ("a", &["d".to_owned()][..])
        );
        let made: Vec<String> = a.steps.iter().map(|s| s.op.describe()).collect();
        assert_eq!(made, ["mkdir /d", "mkdir /b", "mkdir /c"]);
        assert_eq!(
            a.steps.iter().map(|s| s.number).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        // A step's line is in its own file; an error after parsing points there.
        assert_eq!(a.steps[1].line, 2);
        let e = a.step_error(&a.steps[1], "/b", "x");
        assert_eq!(
            (e.file.file_name().unwrap().to_str(), e.line, e.column),
            (Some("b.toml"), 3, 10)
        );
    }

    #[test]
    fn disk_grow_comes_through_an_include() {
        let tmp = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| fs_err::write(tmp.path().join(name), text).unwrap();
        write("disk.toml", "[disk]\ngrow = false\n");
        write(
            "a.toml",
            "include = [\"disk.toml\"]\n[image]\nname = \"a\"\n",
        );
        assert_eq!(
            load(&tmp.path().join("a.toml")).unwrap().disk.grow,
            Some(false)
        );
    }
}
