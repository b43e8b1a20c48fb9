//! `[disk] grow`: the root partition and its ext4 grow to fill a larger disk on first
//! boot, with systemd's own tools and nothing added to the root filesystem's tree (every
//! export keeps the same userland):
//!
//! - the ESP carries [`REPART_FILE`], a `repart.d` definition that matches the root
//!   partition by its type and lets it take the free space after it (it is the last
//!   partition);
//! - the disk's own `/etc/fstab` (already the disk's, see [`super::rootfs`]) mounts the ESP
//!   read-only at `/run/repart.d` before `systemd-repart.service` (statically enabled in
//!   systemd ≥ 245, a no-op while no `repart.d` directory has a definition), and marks `/`
//!   `x-systemd.growfs`, so `systemd-growfs@-.service` grows the mounted ext4 after
//!   `systemd-repart` grew its partition;
//! - the root partition's GPT entry has the Discoverable Partitions Specification's
//!   grow-file-system flag ([`attr::GROW_FILE_SYSTEM`](crate::disk::gpt::attr)).
//!
//! Both run on every boot and do nothing when there is no free space. Images without
//! `systemd-repart` get none of this: their disk is laid out as with `grow = false`.

use crate::disk::guid::Guid;
use imgbuild_store::tarball::{EntryKind, MergedTree};

/// The definition's name at the root of the ESP (`systemd-repart` reads `*.conf` only).
pub const REPART_FILE: &str = "imgbuild-grow-root.conf";

/// Where the disk's fstab mounts the ESP for `systemd-repart`.
pub const REPART_DIR: &str = "/run/repart.d";

/// The `repart.d` definition: the root partition (matched by its type, `root_type`) grows
/// into the free space after it.
pub fn repart_definition(root_type: Guid) -> String {
    format!(
        "# Written by imgbuild ([disk] grow): the root partition grows to fill the disk.\n\
         [Partition]\n\
         Type={}\n",
        root_type.to_string().to_lowercase()
    )
}

/// True when the image has `systemd-repart` (so grow can work on it).
pub fn image_can_grow(tree: &MergedTree) -> bool {
    ["usr/bin/systemd-repart", "bin/systemd-repart"]
        .iter()
        .any(|p| {
            tree.resolve(p)
                .ok()
                .and_then(|r| tree.get(&r))
                .is_some_and(|e| matches!(e.kind, EntryKind::File | EntryKind::Hardlink(_)))
        })
}

/// The fstab line that mounts the ESP (`esp_partuuid`) at [`REPART_DIR`] for
/// `systemd-repart` (and nothing else: `nofail`, read-only).
pub fn fstab_repart_line(esp_partuuid: &str) -> String {
    format!(
        "PARTUUID={esp_partuuid} {REPART_DIR} vfat \
         ro,nofail,x-systemd.wanted-by=systemd-repart.service,\
         x-systemd.before=systemd-repart.service 0 0\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgbuild_store::tarball::{EntryMeta, TarWriter};

    fn tree(entries: &[EntryMeta]) -> MergedTree {
        let mut w = TarWriter::new(Vec::new());
        for e in entries {
            w.append(e, &mut std::io::empty()).unwrap();
        }
        MergedTree::build([w.finish().unwrap().as_slice()]).unwrap()
    }

    #[test]
    fn grows_only_images_with_systemd_repart_usrmerged_or_not() {
        let dir = |p: &str| EntryMeta::dir(p, 0);
        let file = |p: &str| EntryMeta::new(p, EntryKind::File, 0o755, 0);
        let link = |p: &str, t: &str| EntryMeta::new(p, EntryKind::Symlink(t.into()), 0o777, 0);
        let merged = tree(&[
            link("bin", "usr/bin"),
            dir("usr"),
            dir("usr/bin"),
            file("usr/bin/systemd-repart"),
        ]);
        assert!(image_can_grow(&merged));
        assert!(image_can_grow(&tree(&[
            dir("bin"),
            file("bin/systemd-repart")
        ])));
        assert!(!image_can_grow(&tree(&[dir("bin"), file("bin/busybox")])));
        assert!(!image_can_grow(&tree(&[
            dir("usr"),
            dir("usr/bin"),
            dir("usr/bin/systemd-repart")
        ])));
    }

    #[test]
    fn the_definition_matches_the_root_partition_type() {
        let text = repart_definition(Guid::LINUX_ROOT_X86_64);
        assert!(text.contains("[Partition]\n"), "{text}");
        assert!(
            text.contains("Type=4f68bce3-e8cd-4db1-96e7-fbcaf984b709\n"),
            "{text}"
        );
        let arm = repart_definition(Guid::LINUX_ROOT_ARM64);
        assert!(
            arm.contains("Type=b921b045-1df0-41c3-af44-4c6f280d3fae\n"),
            "{arm}"
        );
    }
}
