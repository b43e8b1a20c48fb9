//! The tar reader and the layer merge over 1-3 fuzzed layers, streamed to the tar writer.
//!
//! Input: one byte `n` (1 + n % 3 layers), then for each layer but the last a
//! little-endian u16 length and that many bytes; the last layer takes the rest.
//! Checks what the merged stream promises: parents before children, hard links after
//! their target, and that what the writer produced reads back to the same paths.
#![no_main]

use imgbuild_store::tarball::{read_meta, EntryKind, EntryMeta, MergedTree, TarWriter, TreeSink};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeSet;
use std::io::{self, Read};

fn split_layers(data: &[u8]) -> Vec<&[u8]> {
    let Some((&n, mut rest)) = data.split_first() else {
        return Vec::new();
    };
    let n = 1 + usize::from(n % 3);
    let mut layers = Vec::new();
    for _ in 1..n {
        let [a, b, tail @ ..] = rest else { break };
        let len = usize::from(u16::from_le_bytes([*a, *b])).min(tail.len());
        let (layer, tail) = tail.split_at(len);
        layers.push(layer);
        rest = tail;
    }
    layers.push(rest);
    layers
}

/// Forwards to a [`TarWriter`], checking the stream's order guarantees.
struct Checker {
    seen: BTreeSet<String>,
    files: BTreeSet<String>,
    writer: TarWriter<Vec<u8>>,
    write_failed: bool,
}

impl TreeSink for Checker {
    fn entry(&mut self, meta: &EntryMeta, data: &mut dyn Read) -> io::Result<()> {
        let parent = meta.parent();
        assert!(
            parent.is_empty() || self.seen.contains(parent),
            "{:?} streamed before its parent",
            meta.path
        );
        if let EntryKind::Hardlink(target) = &meta.kind {
            assert!(
                self.files.contains(target),
                "hard link {:?} streamed before its target {target:?}",
                meta.path
            );
        }
        assert!(
            self.seen.insert(meta.path.clone()),
            "{:?} streamed twice",
            meta.path
        );
        if meta.kind == EntryKind::File {
            self.files.insert(meta.path.clone());
        }
        if !self.write_failed {
            // The writer may refuse an entry (an error, never a panic); the merge goes on.
            if self.writer.append(meta, data).is_err() {
                self.write_failed = true;
            }
        }
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let layers = split_layers(data);
    // The reader on each layer alone, bytes included.
    for layer in &layers {
        let mut archive = tar::Archive::new(*layer);
        let Ok(entries) = archive.entries() else {
            continue;
        };
        for entry in entries {
            let Ok(mut entry) = entry else { break };
            if read_meta(&mut entry).is_err() {
                break;
            }
            if io::copy(&mut entry, &mut io::sink()).is_err() {
                break;
            }
        }
    }
    let Ok(tree) = MergedTree::build(layers.iter().copied()) else {
        return;
    };
    let mut sink = Checker {
        seen: BTreeSet::new(),
        files: BTreeSet::new(),
        writer: TarWriter::new(Vec::new()),
        write_failed: false,
    };
    if tree.stream(layers.iter().copied(), &mut sink).is_err() {
        return;
    }
    for meta in tree.iter() {
        assert!(
            sink.seen.contains(&meta.path),
            "{:?} never streamed",
            meta.path
        );
    }
    if sink.write_failed {
        return;
    }
    let Ok(out) = sink.writer.finish() else {
        return;
    };
    // What we wrote, we can read back: the same paths in the same order.
    let mut archive = tar::Archive::new(&out[..]);
    let mut paths = Vec::new();
    for entry in archive.entries().expect("our own tar") {
        let mut entry = entry.expect("our own tar entry");
        let meta = read_meta(&mut entry).expect("our own tar entry's metadata");
        paths.push(meta.path);
    }
    let streamed: BTreeSet<String> = paths.iter().cloned().collect();
    assert_eq!(
        streamed, sink.seen,
        "the written tar holds other paths than were streamed"
    );
});
