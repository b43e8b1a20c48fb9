//! The root filesystem's tar stream: the merged tree as it is, but with `/etc/fstab`
//! replaced by one that matches the disk, and the kernel and initrd kept aside for the
//! ESP while they stream past.

use imgbuild_store::tarball::{EntryKind, EntryMeta, TreeSink};
use std::collections::BTreeMap;
use std::io::{self, Read};

/// The `/etc/fstab` of a disk whose root filesystem has `fs_uuid`; with `grow` (the ESP's
/// PARTUUID), `/` is marked `x-systemd.growfs` and the ESP is mounted for
/// `systemd-repart` (see [`super::grow`]).
pub fn fstab(fs_uuid: &str, grow: Option<&str>) -> String {
    let growfs = if grow.is_some() {
        ",x-systemd.growfs"
    } else {
        ""
    };
    let mut text = format!(
        "# Written by imgbuild: the root filesystem of this disk.\n\
         UUID={fs_uuid} / ext4 errors=remount-ro{growfs} 0 1\n"
    );
    if let Some(esp) = grow {
        text.push_str("# [disk] grow: the ESP's repart.d definition grows the root partition.\n");
        text.push_str(&super::grow::fstab_repart_line(esp));
    }
    text
}

/// Wraps a sink: replaces `etc/fstab`, captures the bytes of chosen files.
pub struct RootSink<'a> {
    inner: &'a mut dyn TreeSink,
    fstab: Vec<u8>,
    epoch: u64,
    wrote_fstab: bool,
    saw_etc: bool,
    capture: BTreeMap<String, Vec<u8>>,
}

impl<'a> RootSink<'a> {
    /// Streams into `inner`, writing `fstab` as `/etc/fstab` and keeping the bytes of the
    /// files at `capture` (relative paths).
    pub fn new(inner: &'a mut dyn TreeSink, fstab: String, epoch: u64, capture: &[&str]) -> Self {
        Self {
            inner,
            fstab: fstab.into_bytes(),
            epoch,
            wrote_fstab: false,
            saw_etc: false,
            capture: capture
                .iter()
                .map(|p| ((*p).to_owned(), Vec::new()))
                .collect(),
        }
    }

    fn write_fstab(&mut self) -> io::Result<()> {
        let mut meta = EntryMeta::new("etc/fstab", EntryKind::File, 0o644, self.epoch);
        meta.size = self.fstab.len() as u64;
        self.wrote_fstab = true;
        self.inner.entry(&meta, &mut self.fstab.as_slice())
    }

    /// Adds `/etc/fstab` (and `/etc`) if the image had none; returns the captured files.
    pub fn finish(mut self) -> io::Result<BTreeMap<String, Vec<u8>>> {
        if !self.wrote_fstab {
            if !self.saw_etc {
                self.inner
                    .entry(&EntryMeta::dir("etc", self.epoch), &mut io::empty())?;
            }
            self.write_fstab()?;
        }
        Ok(self.capture)
    }
}

impl TreeSink for RootSink<'_> {
    fn entry(&mut self, meta: &EntryMeta, data: &mut dyn Read) -> io::Result<()> {
        if meta.path == "etc" {
            self.saw_etc = true;
        }
        if meta.path == "etc/fstab" {
            io::copy(data, &mut io::sink())?;
            return self.write_fstab();
        }
        if let Some(buf) = self.capture.get_mut(&meta.path) {
            data.read_to_end(buf)?;
            return self.inner.entry(meta, &mut buf.as_slice());
        }
        self.inner.entry(meta, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgbuild_store::tarball::{read_meta, TarWriter};

    fn paths_and_fstab(tar: &[u8]) -> (Vec<String>, String) {
        let mut paths = Vec::new();
        let mut fstab = String::new();
        for e in tar::Archive::new(tar).entries().unwrap() {
            let mut e = e.unwrap();
            let m = read_meta(&mut e).unwrap();
            if m.path == "etc/fstab" {
                e.read_to_string(&mut fstab).unwrap();
            }
            paths.push(m.path);
        }
        (paths, fstab)
    }

    #[test]
    fn replaces_the_images_fstab_and_captures_files() {
        let mut tar = TarWriter::new(Vec::new());
        let mut sink = RootSink::new(&mut tar, fstab("abc", None), 0, &["boot/k"]);
        sink.entry(&EntryMeta::dir("etc", 0), &mut io::empty())
            .unwrap();
        let mut old = EntryMeta::new("etc/fstab", EntryKind::File, 0o600, 0);
        old.size = 3;
        sink.entry(&old, &mut &b"old"[..]).unwrap();
        let mut k = EntryMeta::new("boot/k", EntryKind::File, 0o644, 0);
        k.size = 2;
        sink.entry(&k, &mut &b"KK"[..]).unwrap();
        let captured = sink.finish().unwrap();
        assert_eq!(captured["boot/k"], b"KK");
        let (paths, text) = paths_and_fstab(&tar.finish().unwrap());
        assert_eq!(paths, ["etc", "etc/fstab", "boot/k"]);
        assert!(text.contains("UUID=abc / ext4"), "{text}");
        assert!(!text.contains("x-systemd"), "{text}");
    }

    #[test]
    fn a_growing_disk_marks_root_growfs_and_mounts_the_esp_for_repart() {
        let text = fstab("abc", Some("e5p"));
        let lines: Vec<_> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("UUID=abc / ext4 "), "{text}");
        assert!(lines[0].contains(",x-systemd.growfs "), "{text}");
        let esp: Vec<_> = lines[1].split_whitespace().collect();
        assert_eq!(
            esp[..3],
            ["PARTUUID=e5p", "/run/repart.d", "vfat"],
            "{text}"
        );
        for option in ["ro", "nofail", "x-systemd.before=systemd-repart.service"] {
            assert!(esp[3].split(',').any(|o| o == option), "{option}: {text}");
        }
    }

    #[test]
    fn adds_an_fstab_when_the_image_has_none() {
        let mut tar = TarWriter::new(Vec::new());
        let sink = RootSink::new(&mut tar, fstab("x", None), 0, &[]);
        sink.finish().unwrap();
        let (paths, _) = paths_and_fstab(&tar.finish().unwrap());
        assert_eq!(paths, ["etc", "etc/fstab"]);
    }
}
