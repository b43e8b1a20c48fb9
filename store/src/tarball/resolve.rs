//! Resolving a path inside an image as the kernel would inside a chroot: symlinks are
//! followed against the merged tree, absolute targets start again at the image's root,
//! `..` never climbs above it, and a chain of more than [`MAX_LINKS`] links is a loop.
//!
//! File steps write where a runtime would: on a usrmerged Debian, `bin/hello` is written
//! as `usr/bin/hello`, so the layer never holds a real `bin/` directory hiding `bin ->
//! usr/bin` (BuildKit resolves a `COPY` destination the same way).

use super::entry::{EntryKind, EntryMeta};
use super::merge::MergedTree;
use std::collections::{BTreeMap, VecDeque};

/// How many symlinks one resolution follows before it calls the chain a loop (Linux's
/// `MAXSYMLINKS`).
pub const MAX_LINKS: usize = 40;

/// A path could not be resolved inside the image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A component before the last is an existing file, device or fifo, not a directory.
    #[error("/{at} is not a directory")]
    NotADirectory {
        /// The offending component, resolved (relative, no leading `/`).
        at: String,
    },
    /// More than [`MAX_LINKS`] symlinks were followed.
    #[error("too many levels of symbolic links (a loop?) at /{at}")]
    Loop {
        /// Where the resolution gave up (relative, no leading `/`).
        at: String,
    },
}

/// Resolves paths against a merged tree plus the entries a step adds on top of it.
#[derive(Debug)]
pub struct PathResolver<'a> {
    below: &'a MergedTree,
    added: BTreeMap<String, EntryKind>,
}

impl<'a> PathResolver<'a> {
    /// A resolver over `below` (the image under the step).
    pub fn new(below: &'a MergedTree) -> Self {
        Self {
            below,
            added: BTreeMap::new(),
        }
    }

    /// Records an entry the step writes at the resolved `path`, so that later paths of the
    /// same step resolve through it.
    pub fn add(&mut self, path: &str, kind: EntryKind) {
        self.added.insert(path.to_owned(), kind);
    }

    fn kind(&self, path: &str) -> Option<&EntryKind> {
        self.added
            .get(path)
            .or_else(|| self.below.get(path).map(|m: &EntryMeta| &m.kind))
    }

    /// Where an entry at `path` (relative or absolute) lands: every component but the last
    /// resolved, the last kept as it is (a symlink there is replaced, not followed).
    pub fn resolve_parent(&self, path: &str) -> Result<String, ResolveError> {
        self.walk(path, false)
    }

    /// Where a directory at `path` lands: as [`Self::resolve_parent`], except that a
    /// symlink in the last place that leads to a directory is followed (`mkdir -p` and a
    /// copy into `bin/` on a usrmerged image go to `usr/bin`).
    pub fn resolve_dir(&self, path: &str) -> Result<String, ResolveError> {
        let parent = self.walk(path, false)?;
        if !matches!(self.kind(&parent), Some(EntryKind::Symlink(_))) {
            return Ok(parent);
        }
        let full = self.walk(path, true)?;
        Ok(if self.kind(&full) == Some(&EntryKind::Dir) {
            full
        } else {
            parent
        })
    }

    /// Fully resolves `path`, the last component too (what `open` would reach).
    pub fn resolve(&self, path: &str) -> Result<String, ResolveError> {
        self.walk(path, true)
    }

    fn walk(&self, path: &str, follow_last: bool) -> Result<String, ResolveError> {
        let mut todo: VecDeque<String> = components(path).collect();
        let mut resolved: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(name) = todo.pop_front() {
            if name == ".." {
                resolved.pop();
                continue;
            }
            let last = todo.is_empty();
            resolved.push(name);
            let here = resolved.join("/");
            match self.kind(&here) {
                Some(EntryKind::Symlink(target)) if !last || follow_last => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(ResolveError::Loop { at: here });
                    }
                    resolved.pop();
                    if target.starts_with('/') {
                        resolved.clear();
                    }
                    for (i, c) in components(target).enumerate() {
                        todo.insert(i, c);
                    }
                }
                Some(EntryKind::Dir | EntryKind::Symlink(_)) | None => {}
                Some(_) if last => {}
                Some(_) => return Err(ResolveError::NotADirectory { at: here }),
            }
        }
        Ok(resolved.join("/"))
    }
}

/// The components of `path` that name something: no empty ones, no `.`.
fn components(path: &str) -> impl Iterator<Item = String> + '_ {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_owned)
}

impl MergedTree {
    /// Fully resolves `path` inside the tree (symlinks followed, the last one too).
    pub fn resolve(&self, path: &str) -> Result<String, ResolveError> {
        PathResolver::new(self).resolve(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tarball::TarWriter;
    use std::io;

    fn usrmerged() -> MergedTree {
        let mut w = TarWriter::new(Vec::new());
        for d in ["usr", "usr/bin", "usr/lib", "usr/sbin", "etc"] {
            w.append(&EntryMeta::dir(d, 0), &mut io::empty()).unwrap();
        }
        let links = [
            ("bin", "usr/bin"),
            ("sbin", "/usr/sbin"),
            ("lib", "usr/lib"),
            ("usr/sbin/init", "../lib/systemd/systemd"),
            ("loop", "loop2"),
            ("loop2", "/loop"),
            ("up", "../../../etc"),
        ];
        for (path, target) in links {
            let m = EntryMeta::new(path, EntryKind::Symlink(target.into()), 0o777, 0);
            w.append(&m, &mut io::empty()).unwrap();
        }
        let mut f = EntryMeta::file("etc/passwd", 1, 0);
        f.size = 1;
        w.append(&f, &mut &b"x"[..]).unwrap();
        let bytes = w.finish().unwrap();
        MergedTree::build([bytes.as_slice()]).unwrap()
    }

    #[test]
    fn parents_resolve_through_symlinks_and_never_leave_the_root() {
        let tree = usrmerged();
        let r = PathResolver::new(&tree);
        assert_eq!(r.resolve_parent("/bin/hello").unwrap(), "usr/bin/hello");
        assert_eq!(r.resolve_parent("sbin/x/y").unwrap(), "usr/sbin/x/y");
        assert_eq!(r.resolve_parent("/lib/a").unwrap(), "usr/lib/a");
        // The last component is not followed: the link itself is replaced or removed.
        assert_eq!(r.resolve_parent("/bin").unwrap(), "bin");
        assert_eq!(r.resolve_parent("up/x").unwrap(), "etc/x");
        assert_eq!(r.resolve_parent("/../../opt/x").unwrap(), "opt/x");
        assert_eq!(r.resolve_parent("new/dir/file").unwrap(), "new/dir/file");
    }

    #[test]
    fn directories_follow_a_last_symlink_to_a_directory() {
        let tree = usrmerged();
        let mut r = PathResolver::new(&tree);
        assert_eq!(r.resolve_dir("/bin").unwrap(), "usr/bin");
        // A link to nothing is replaced by the directory.
        assert_eq!(r.resolve_dir("/usr/sbin/init").unwrap(), "usr/sbin/init");
        r.add("usr/bin/sub", EntryKind::Dir);
        r.add("usr/bin/sub/l", EntryKind::Symlink("/etc".into()));
        assert_eq!(r.resolve_parent("bin/sub/l/x").unwrap(), "etc/x");
    }

    #[test]
    fn files_in_the_way_and_loops_are_errors() {
        let tree = usrmerged();
        let r = PathResolver::new(&tree);
        assert_eq!(
            r.resolve_parent("/etc/passwd/x"),
            Err(ResolveError::NotADirectory {
                at: "etc/passwd".into()
            })
        );
        assert!(matches!(
            r.resolve_parent("/loop/x"),
            Err(ResolveError::Loop { .. })
        ));
        assert_eq!(
            tree.resolve("sbin/init").unwrap(),
            "usr/lib/systemd/systemd"
        );
    }
}
