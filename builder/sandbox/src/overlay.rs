//! Which xattr namespace overlayfs uses for its private metadata.
//!
//! A real-root overlay mount stores opaque-directory markers (and reads
//! them from lower dirs) as `trusted.overlay.*`. Inside a user namespace
//! `trusted.*` is not writable, so the mount needs the `userxattr` option
//! and overlayfs uses `user.overlay.*` instead. Lower dirs must be unpacked
//! with the same flavour that the sandbox mounts them with, and the upper
//! scan must know which one to interpret: all three take an
//! [`OverlayXattrs`].
//!
//! Whiteouts are the same in both flavours: a 0:0 character device, which
//! the kernel lets unprivileged processes create (Linux >= 5.8).

/// The overlayfs metadata flavour (see module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OverlayXattrs {
    /// `trusted.overlay.*`: real root, no `userxattr` mount option.
    Trusted,
    /// `user.overlay.*`: rootless, overlay mounted with `userxattr`.
    User,
}

impl OverlayXattrs {
    /// The flavour matching the current process: `Trusted` for euid 0 in
    /// the initial user namespace, `User` otherwise.
    pub fn for_current_process() -> Self {
        if rustix::process::geteuid().is_root() && super::namespaces::in_initial_user_namespace() {
            Self::Trusted
        } else {
            Self::User
        }
    }

    /// The xattr prefix overlayfs uses, e.g. `trusted.overlay.`.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Trusted => "trusted.overlay.",
            Self::User => "user.overlay.",
        }
    }

    /// Name of the opaque-directory xattr (value `y`).
    pub fn opaque_name(self) -> &'static str {
        match self {
            Self::Trusted => "trusted.overlay.opaque",
            Self::User => "user.overlay.opaque",
        }
    }
}

/// True if `name` is overlayfs-private metadata in either flavour; such
/// xattrs never belong in a layer.
pub fn is_overlay_private_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.")
}
