//! Reading `.deb` binary packages.
//!
//! Implements `deb(5)`: an `ar` archive whose members are `debian-binary`
//! (`2.0\n`), `control.tar[.gz|.xz|.zst]` and `data.tar[.gz|.xz|.zst|.bz2 unsupported]`,
//! in that order. The control tarball's `control` file is a single deb822 paragraph
//! (Policy §5.3); the data tarball is exposed as a streaming [`tar::Archive`] for
//! installation.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::control::{self, ControlFields};

/// Reading a `.deb` failed.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    /// I/O error.
    #[error("reading {path}: {source}")]
    Io {
        /// The `.deb`.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not a valid `deb(5)` file.
    #[error("{path} is not a valid .deb: {reason}")]
    Format {
        /// The `.deb`.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl DebError {
    /// Always false: a `.deb` is read after its hash was verified, so a bad one is the
    /// mirror's or the disk's fault.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Io { .. } | Self::Format { .. } => false,
        }
    }
}

#[derive(Debug, Clone)]
struct Member {
    name: String,
    offset: u64,
    size: u64,
}

/// An opened `.deb`: its control fields and where its data tarball lives.
#[derive(Debug, Clone)]
pub struct Deb {
    path: PathBuf,
    control: ControlFields,
    data: Member,
}

fn members(path: &Path, f: &mut fs_err::File) -> Result<Vec<Member>, DebError> {
    let io = |source| DebError::Io {
        path: path.to_owned(),
        source,
    };
    let fmt = |reason: &str| DebError::Format {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let len = f.metadata().map_err(io)?.len();
    let mut magic = [0u8; 8];
    f.read_exact(&mut magic).map_err(io)?;
    if &magic != b"!<arch>\n" {
        return Err(fmt("missing ar magic `!<arch>`"));
    }
    let mut out = Vec::new();
    let mut pos = 8u64;
    while pos + 60 <= len {
        f.seek(SeekFrom::Start(pos)).map_err(io)?;
        let mut hdr = [0u8; 60];
        f.read_exact(&mut hdr).map_err(io)?;
        if &hdr[58..60] != b"`\n" {
            return Err(fmt("bad ar member header"));
        }
        let name = String::from_utf8_lossy(&hdr[0..16])
            .trim_end()
            .trim_end_matches('/')
            .to_owned();
        let size: u64 = String::from_utf8_lossy(&hdr[48..58])
            .trim()
            .parse()
            .map_err(|_| fmt("bad ar member size"))?;
        let offset = pos + 60;
        if offset + size > len {
            return Err(fmt("truncated ar member"));
        }
        out.push(Member { name, offset, size });
        pos = offset + size + (size & 1);
    }
    Ok(out)
}

fn decompressor<'a>(
    path: &Path,
    name: &str,
    r: impl Read + 'a,
) -> Result<Box<dyn Read + 'a>, DebError> {
    let ext = name.rsplit_once(".tar").map_or("", |(_, e)| e);
    Ok(match ext {
        "" => Box::new(r),
        ".gz" => Box::new(flate2::read::GzDecoder::new(r)),
        ".xz" => Box::new(liblzma::read::XzDecoder::new(r)),
        ".zst" => Box::new(
            zstd::stream::read::Decoder::new(r).map_err(|source| DebError::Io {
                path: path.to_owned(),
                source,
            })?,
        ),
        other => {
            return Err(DebError::Format {
                path: path.to_owned(),
                reason: format!("unsupported compression {other:?} of member {name}"),
            })
        }
    })
}

impl Deb {
    /// Opens a `.deb` and reads its `control` file.
    pub fn open(path: &Path) -> Result<Deb, DebError> {
        let io = |source| DebError::Io {
            path: path.to_owned(),
            source,
        };
        let fmt = |reason: String| DebError::Format {
            path: path.to_owned(),
            reason,
        };
        let mut f = fs_err::File::open(path).map_err(io)?;
        let ms = members(path, &mut f)?;
        match ms.first() {
            Some(m) if m.name == "debian-binary" => {}
            _ => return Err(fmt("first member is not debian-binary".into())),
        }
        let ctrl = ms
            .iter()
            .find(|m| m.name.starts_with("control.tar"))
            .ok_or_else(|| fmt("no control.tar member".into()))?;
        let data = ms
            .iter()
            .find(|m| m.name.starts_with("data.tar"))
            .ok_or_else(|| fmt("no data.tar member".into()))?
            .clone();
        f.seek(SeekFrom::Start(ctrl.offset)).map_err(io)?;
        let limited = BufReader::new(f.take(ctrl.size));
        let mut tar = tar::Archive::new(decompressor(path, &ctrl.name, limited)?);
        let mut text = None;
        for entry in tar.entries().map_err(io)? {
            let mut entry = entry.map_err(io)?;
            let p = entry.path().map_err(io)?.into_owned();
            if p == Path::new("./control") || p == Path::new("control") {
                let mut s = String::new();
                entry.read_to_string(&mut s).map_err(io)?;
                text = Some(s);
                break;
            }
        }
        let text = text.ok_or_else(|| fmt("control.tar has no control file".into()))?;
        let para = control::parse(&text)
            .next()
            .ok_or_else(|| fmt("empty control file".into()))?
            .map_err(|e| fmt(format!("bad control file: {e}")))?;
        Ok(Deb {
            path: path.to_owned(),
            control: para.to_owned_fields(),
            data,
        })
    }

    /// The fields of the package's `control` file.
    pub fn control(&self) -> &ControlFields {
        &self.control
    }

    /// Name of the data member (e.g. `data.tar.xz`).
    pub fn data_member(&self) -> &str {
        &self.data.name
    }

    /// A streaming reader of the data tarball (the files to install).
    pub fn data(&self) -> Result<tar::Archive<Box<dyn Read>>, DebError> {
        let mut f = fs_err::File::open(&self.path).map_err(|source| DebError::Io {
            path: self.path.clone(),
            source,
        })?;
        f.seek(SeekFrom::Start(self.data.offset))
            .map_err(|source| DebError::Io {
                path: self.path.clone(),
                source,
            })?;
        let limited = BufReader::new(f.take(self.data.size));
        Ok(tar::Archive::new(decompressor(
            &self.path,
            &self.data.name,
            limited,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_a_deb() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.deb");
        fs_err::write(&p, b"hello world, definitely not ar").unwrap();
        assert!(matches!(Deb::open(&p), Err(DebError::Format { .. })));
    }
}
