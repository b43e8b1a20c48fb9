//! Serialises a planned FAT32 volume: cluster allocation, boot sector and
//! BPB (fatgen103 §3.1–3.3), FSInfo (§5), the two FATs (§4) and directory
//! and file clusters.

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};

use sha2::{Digest, Sha256};

use super::dirent::{
    lfn_entries, lfn_entry_count, short_entry, short_name_checksum, DosTime, ATTR_ARCHIVE,
    ATTR_DIRECTORY, ATTR_VOLUME_ID, DIRENT_SIZE,
};
use super::geometry::{FatGeometry, NUM_FATS, SECTOR};
use super::names::{assign, EntryName};
use super::{FatError, FatOptions, FatSummary, FileData, Node};
use crate::disk::source::{copy_exact, CopyError};

/// End-of-chain marker.
const EOC: u32 = 0x0FFF_FFFF;
/// Backup boot sector location (`BPB_BkBootSec`).
const BACKUP_BOOT_SECTOR: u64 = 6;
/// Boot code stub: `int 18h` (try the next boot device), then `hlt; jmp $-1`.
const BOOT_STUB: [u8; 5] = [0xCD, 0x18, 0xF4, 0xEB, 0xFD];

/// The 11-byte, space-padded, upper-case volume label.
pub(super) fn label_bytes(label: &str) -> Result<[u8; 11], FatError> {
    let upper = label.to_ascii_uppercase();
    let ok = !upper.is_empty()
        && upper.len() <= 11
        && upper
            .bytes()
            .all(|c| c == b' ' || c.is_ascii_alphanumeric() || b"$%'-_@~`!(){}^#&".contains(&c));
    if !ok {
        return Err(FatError::InvalidLabel {
            label: label.to_string(),
        });
    }
    let mut out = [b' '; 11];
    out[..upper.len()].copy_from_slice(upper.as_bytes());
    Ok(out)
}

struct PlannedEntry {
    name: EntryName,
    is_dir: bool,
    cluster: u32,
    size: u32,
}

struct PlannedDir {
    cluster: u32,
    clusters: u32,
    /// Cluster for the `..` entry (0 when the parent is the root).
    parent: Option<u32>,
    entries: Vec<PlannedEntry>,
}

struct PlannedFile {
    path: String,
    cluster: u32,
    data: FileData,
}

/// Contiguous allocation state.
struct Planner {
    cluster_bytes: u64,
    next: u64,
    run_ends: Vec<u32>,
    dirs: Vec<PlannedDir>,
    files: Vec<PlannedFile>,
    has_label: bool,
}

impl Planner {
    fn alloc(&mut self, clusters: u64) -> u32 {
        let first = self.next;
        self.next += clusters;
        if clusters > 0 {
            // Saturate: an over-full volume is reported before writing.
            self.run_ends
                .push(u32::try_from(self.next - 1).unwrap_or(u32::MAX));
        }
        u32::try_from(first).unwrap_or(u32::MAX)
    }

    /// Plans `dir` (depth first, sorted) and returns its first cluster.
    fn plan_dir(
        &mut self,
        path: &str,
        dir: BTreeMap<String, Node>,
        parent: Option<u32>,
    ) -> Result<u32, FatError> {
        let keys: Vec<&str> = dir.keys().map(String::as_str).collect();
        let names = assign(&keys).map_err(|(a, b)| FatError::Conflict {
            path: format!("{path}/{b}"),
            existing: a,
        })?;
        let mut slots = if parent.is_some() {
            2
        } else {
            usize::from(self.has_label)
        };
        for n in &names {
            slots += 1 + n.long.as_ref().map_or(0, |l| lfn_entry_count(l.len()));
        }
        if slots > 65_536 {
            return Err(FatError::DirectoryTooLarge {
                path: if path.is_empty() {
                    "/".into()
                } else {
                    path.to_string()
                },
                entries: slots,
            });
        }
        let clusters = ((slots * DIRENT_SIZE) as u64)
            .div_ceil(self.cluster_bytes)
            .max(1);
        let cluster = self.alloc(clusters);
        let idx = self.dirs.len();
        self.dirs.push(PlannedDir {
            cluster,
            clusters: clusters as u32,
            parent,
            entries: Vec::with_capacity(names.len()),
        });
        // The root is referred to as cluster 0 in `..` entries.
        let me_as_parent = if parent.is_some() { cluster } else { 0 };
        for ((key, node), name) in dir.into_iter().zip(names) {
            let child_path = format!("{path}/{key}");
            let entry = match node {
                Node::Dir(sub) => {
                    let c = self.plan_dir(&child_path, sub, Some(me_as_parent))?;
                    PlannedEntry {
                        name,
                        is_dir: true,
                        cluster: c,
                        size: 0,
                    }
                }
                Node::File(data) => {
                    let len = data.len();
                    let c = self.alloc(len.div_ceil(self.cluster_bytes));
                    let cluster = if len == 0 { 0 } else { c };
                    self.files.push(PlannedFile {
                        path: child_path,
                        cluster,
                        data,
                    });
                    PlannedEntry {
                        name,
                        is_dir: false,
                        cluster,
                        size: len as u32,
                    }
                }
            };
            self.dirs[idx].entries.push(entry);
        }
        Ok(cluster)
    }
}

/// Writes the whole volume.
pub(super) fn write<W: Write + Seek>(
    opts: FatOptions,
    geo: FatGeometry,
    root: BTreeMap<String, Node>,
    w: &mut W,
    offset: u64,
) -> Result<FatSummary, FatError> {
    let label = opts.label.as_deref().map(label_bytes).transpose()?;
    let time = DosTime::from_unix(opts.epoch);
    let digest = Sha256::digest(&opts.volume_id_seed);
    let volume_id = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]);

    let mut plan = Planner {
        cluster_bytes: geo.cluster_bytes(),
        next: 2,
        run_ends: Vec::new(),
        dirs: Vec::new(),
        files: Vec::new(),
        has_label: label.is_some(),
    };
    plan.plan_dir("", root, None)?;
    let used = plan.next - 2;
    if used > u64::from(geo.cluster_count) {
        return Err(FatError::NoSpace {
            needed: used,
            available: u64::from(geo.cluster_count),
            cluster_bytes: geo.cluster_bytes(),
        });
    }
    let next_free = plan.next as u32;

    // Reserved region: boot sector, FSInfo and their backups.
    let mut reserved = vec![0u8; usize::from(geo.reserved_sectors) * SECTOR as usize];
    let boot = boot_sector(&opts, &geo, volume_id, label);
    let free = u64::from(geo.cluster_count) - used;
    let next_hint = if free == 0 { u32::MAX } else { next_free };
    let fsinfo = fsinfo_sector(free as u32, next_hint);
    for base in [0, BACKUP_BOOT_SECTOR] {
        let at = (base * SECTOR) as usize;
        reserved[at..at + 512].copy_from_slice(&boot);
        reserved[at + 512..at + 1024].copy_from_slice(&fsinfo);
    }
    w.seek(SeekFrom::Start(offset))?;
    w.write_all(&reserved)?;

    for copy in 0..NUM_FATS {
        w.seek(SeekFrom::Start(offset + geo.fat_offset(copy)))?;
        write_fat(w, &geo, &plan.run_ends, next_free)?;
    }

    for dir in &plan.dirs {
        let buf = encode_dir(dir, label, time, geo.cluster_bytes());
        w.seek(SeekFrom::Start(offset + geo.cluster_offset(dir.cluster)))?;
        w.write_all(&buf)?;
    }
    let mut end = geo.cluster_offset(next_free);

    let mut buf = vec![0u8; 64 * 1024];
    for file in plan.files {
        if file.cluster == 0 {
            continue;
        }
        w.seek(SeekFrom::Start(offset + geo.cluster_offset(file.cluster)))?;
        copy_file(file.path, file.data, w, &mut buf)?;
        let len_written = w.stream_position()? - offset - geo.cluster_offset(file.cluster);
        let pad = len_written.next_multiple_of(geo.cluster_bytes()) - len_written;
        write_zeros(w, pad, &mut buf)?;
    }

    // Make sure the volume's last sector exists (grows plain files).
    if end < geo.volume_bytes() {
        end = geo.volume_bytes() - SECTOR;
        w.seek(SeekFrom::Start(offset + end))?;
        w.write_all(&[0u8; SECTOR as usize])?;
    }
    w.flush()?;
    Ok(FatSummary {
        geometry: geo,
        volume_id,
        used_clusters: used,
    })
}

fn write_zeros<W: Write>(w: &mut W, mut n: u64, buf: &mut [u8]) -> Result<(), FatError> {
    buf.fill(0);
    while n > 0 {
        let k = n.min(buf.len() as u64) as usize;
        w.write_all(&buf[..k])?;
        n -= k as u64;
    }
    Ok(())
}

/// Copies a file's contents, mapping failures to [`FatError`].
fn copy_file<W: Write>(
    path: String,
    data: FileData,
    w: &mut W,
    buf: &mut [u8],
) -> Result<(), FatError> {
    copy_exact(data, w, buf).map_err(|e| match e {
        CopyError::Short { expected, got } => FatError::ShortRead {
            path,
            expected,
            got,
        },
        CopyError::Read(source) => FatError::Source { path, source },
        CopyError::Write(e) => FatError::Io(e),
    })
}

/// Streams one FAT copy: media and EOC reserved entries, then contiguous
/// chains (each cluster points to the next, the run's last to EOC).
fn write_fat<W: Write>(
    w: &mut W,
    geo: &FatGeometry,
    run_ends: &[u32],
    next_free: u32,
) -> Result<(), FatError> {
    const CHUNK: usize = 16 * 1024;
    let total = u64::from(geo.fat_sectors) * SECTOR / 4;
    let mut ends = run_ends.iter().peekable();
    let mut buf = Vec::with_capacity(CHUNK * 4);
    let mut i: u64 = 0;
    while i < total {
        buf.clear();
        let stop = (i + CHUNK as u64).min(total);
        while i < stop {
            let v: u32 = match i {
                0 => 0x0FFF_FFF8,
                1 => EOC,
                c if c < u64::from(next_free) => {
                    if ends.peek().is_some_and(|&&e| u64::from(e) == c) {
                        ends.next();
                        EOC
                    } else {
                        (c + 1) as u32
                    }
                }
                _ => 0,
            };
            buf.extend_from_slice(&v.to_le_bytes());
            i += 1;
        }
        w.write_all(&buf)?;
    }
    Ok(())
}

/// The clusters of one directory.
fn encode_dir(
    dir: &PlannedDir,
    label: Option<[u8; 11]>,
    t: DosTime,
    cluster_bytes: u64,
) -> Vec<u8> {
    let mut buf = Vec::with_capacity((u64::from(dir.clusters) * cluster_bytes) as usize);
    match dir.parent {
        Some(parent) => {
            buf.extend_from_slice(&short_entry(
                b".          ",
                ATTR_DIRECTORY,
                0,
                dir.cluster,
                0,
                t,
            ));
            buf.extend_from_slice(&short_entry(
                b"..         ",
                ATTR_DIRECTORY,
                0,
                parent,
                0,
                t,
            ));
        }
        None => {
            if let Some(l) = label {
                buf.extend_from_slice(&short_entry(&l, ATTR_VOLUME_ID, 0, 0, 0, t));
            }
        }
    }
    for e in &dir.entries {
        if let Some(long) = &e.name.long {
            for l in lfn_entries(long, short_name_checksum(&e.name.short)) {
                buf.extend_from_slice(&l);
            }
        }
        let attr = if e.is_dir {
            ATTR_DIRECTORY
        } else {
            ATTR_ARCHIVE
        };
        buf.extend_from_slice(&short_entry(
            &e.name.short,
            attr,
            e.name.case_flags,
            e.cluster,
            e.size,
            t,
        ));
    }
    buf.resize((u64::from(dir.clusters) * cluster_bytes) as usize, 0);
    buf
}

/// Boot sector with the FAT32 BPB (fatgen103 §3.1, §3.3).
fn boot_sector(
    opts: &FatOptions,
    geo: &FatGeometry,
    volume_id: u32,
    label: Option<[u8; 11]>,
) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[0..3].copy_from_slice(&[0xEB, 0x58, 0x90]);
    b[3..11].copy_from_slice(b"IMGBUILD");
    b[11..13].copy_from_slice(&512u16.to_le_bytes());
    b[13] = geo.sectors_per_cluster;
    b[14..16].copy_from_slice(&geo.reserved_sectors.to_le_bytes());
    b[16] = NUM_FATS as u8;
    b[21] = 0xF8;
    b[24..26].copy_from_slice(&63u16.to_le_bytes());
    b[26..28].copy_from_slice(&255u16.to_le_bytes());
    b[28..32].copy_from_slice(&opts.hidden_sectors.to_le_bytes());
    b[32..36].copy_from_slice(&geo.total_sectors.to_le_bytes());
    b[36..40].copy_from_slice(&geo.fat_sectors.to_le_bytes());
    b[44..48].copy_from_slice(&2u32.to_le_bytes());
    b[48..50].copy_from_slice(&1u16.to_le_bytes());
    b[50..52].copy_from_slice(&(BACKUP_BOOT_SECTOR as u16).to_le_bytes());
    b[64] = 0x80;
    b[66] = 0x29;
    b[67..71].copy_from_slice(&volume_id.to_le_bytes());
    b[71..82].copy_from_slice(&label.unwrap_or(*b"NO NAME    "));
    b[82..90].copy_from_slice(b"FAT32   ");
    match &opts.boot_code {
        Some(code) => b[90..90 + code.len()].copy_from_slice(code),
        None => b[90..90 + BOOT_STUB.len()].copy_from_slice(&BOOT_STUB),
    }
    b[510] = 0x55;
    b[511] = 0xAA;
    b
}

/// FSInfo sector (fatgen103 §5).
fn fsinfo_sector(free: u32, next_free: u32) -> [u8; 512] {
    let mut s = [0u8; 512];
    s[0..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
    s[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
    s[488..492].copy_from_slice(&free.to_le_bytes());
    s[492..496].copy_from_slice(&next_free.to_le_bytes());
    s[508..512].copy_from_slice(&0xAA55_0000u32.to_le_bytes());
    s
}
