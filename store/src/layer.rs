//! Layers in the store: written once as an uncompressed tar stream that is hashed (the
//! `diff_id`) and compressed on the fly, read back decompressed whatever their compression.

use crate::{BlobWriter, Digest, LayerRecord, Sha256Writer, Store, StoreError};
use std::io::{self, BufReader, Read, Write};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Compression {
    /// zstd, level 3 (the default: fast and small).
    Zstd,
    /// gzip, level 6 (what every registry and runtime reads).
    Gzip,
    /// No compression.
    None,
}

/// The OCI media type of an uncompressed layer.
pub const MEDIA_TYPE_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// The OCI media type of a gzip layer.
pub const MEDIA_TYPE_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The OCI media type of a zstd layer.
pub const MEDIA_TYPE_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// Docker's gzip layer media type, as found in base images pulled from registries.
pub const DOCKER_MEDIA_TYPE_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

impl Compression {
    /// The OCI media type of a layer compressed this way.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Zstd => MEDIA_TYPE_ZSTD,
            Self::Gzip => MEDIA_TYPE_GZIP,
            Self::None => MEDIA_TYPE_TAR,
        }
    }

    /// The compression a layer media type implies, if imgbuild can read it.
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        match media_type {
            MEDIA_TYPE_ZSTD => Some(Self::Zstd),
            MEDIA_TYPE_GZIP | DOCKER_MEDIA_TYPE_GZIP => Some(Self::Gzip),
            MEDIA_TYPE_TAR | "application/vnd.docker.image.rootfs.diff.tar" => Some(Self::None),
            _ => None,
        }
    }

    /// Wraps a compressed reader so that it yields the plain tar.
    pub fn decoder<'r>(self, reader: impl Read + 'r) -> io::Result<Box<dyn Read + 'r>> {
        Ok(match self {
            Self::Zstd => Box::new(zstd::Decoder::new(reader)?),
            Self::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(reader))),
            Self::None => Box::new(reader),
        })
    }

    fn encoder<'w>(self, out: BlobWriter<'w>) -> io::Result<Encoder<'w>> {
        Ok(match self {
            Self::Zstd => {
                let mut enc = zstd::Encoder::new(out, 3)?;
                // With any number of workers >= 1 zstd's output is the same, so the digest
                // does not depend on the machine's core count.
                enc.multithread(zstd_workers())?;
                Encoder::Zstd(enc)
            }
            Self::Gzip => Encoder::Gzip(
                flate2::GzBuilder::new()
                    .mtime(0)
                    .write(out, flate2::Compression::new(6)),
            ),
            Self::None => Encoder::None(out),
        })
    }
}

fn zstd_workers() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
}

enum Encoder<'w> {
    Zstd(zstd::Encoder<'static, BlobWriter<'w>>),
    Gzip(flate2::write::GzEncoder<BlobWriter<'w>>),
    None(BlobWriter<'w>),
}

impl<'w> Encoder<'w> {
    fn finish(self) -> io::Result<BlobWriter<'w>> {
        match self {
            Self::Zstd(e) => e.finish(),
            Self::Gzip(e) => e.finish(),
            Self::None(w) => Ok(w),
        }
    }
}

impl Write for Encoder<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Zstd(e) => e.write(buf),
            Self::Gzip(e) => e.write(buf),
            Self::None(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Zstd(e) => e.flush(),
            Self::Gzip(e) => e.flush(),
            Self::None(w) => w.flush(),
        }
    }
}

/// Takes a layer's uncompressed tar stream; on [`LayerWriter::commit`] the compressed blob
/// and its layer record are in the store.
pub struct LayerWriter<'s> {
    compression: Compression,
    out: Sha256Writer<Encoder<'s>>,
}

impl<'s> LayerWriter<'s> {
    pub(crate) fn new(store: &'s Store, compression: Compression) -> Result<Self, StoreError> {
        let encoder = compression.encoder(store.blob_writer()?)?;
        Ok(Self {
            compression,
            out: Sha256Writer::new(encoder),
        })
    }

    /// Finishes compression, stores the blob and records the layer.
    pub fn commit(self, store: &Store) -> Result<LayerRecord, StoreError> {
        let (diff_id, _, encoder) = self.out.finish();
        let blob = encoder.finish().map_err(StoreError::from_io)?.commit()?;
        let record = LayerRecord {
            diff_id,
            media_type: self.compression.media_type().to_owned(),
            digest: blob.digest,
            size: blob.size,
        };
        store.with_index(|ix| ix.add_layer(&record))?;
        Ok(record)
    }

    /// Like [`LayerWriter::commit`], but stores nothing unless the tar hashes to `diff_id`.
    pub fn commit_verified(
        self,
        store: &Store,
        diff_id: &Digest,
    ) -> Result<LayerRecord, StoreError> {
        let (found, _, encoder) = self.out.finish();
        if found != *diff_id {
            return Err(StoreError::DigestMismatch {
                expected: diff_id.clone(),
                found,
            });
        }
        let blob = encoder.finish().map_err(StoreError::from_io)?.commit()?;
        let record = LayerRecord {
            diff_id: found,
            media_type: self.compression.media_type().to_owned(),
            digest: blob.digest,
            size: blob.size,
        };
        store.with_index(|ix| ix.add_layer(&record))?;
        Ok(record)
    }
}

impl Write for LayerWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    fn compress(workers: u32, data: &[u8]) -> Vec<u8> {
        let mut enc = zstd::Encoder::new(Vec::new(), 3).unwrap();
        enc.multithread(workers).unwrap();
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn zstd_output_does_not_depend_on_the_number_of_workers() {
        let data: Vec<u8> = (0..40_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 & 0x3f)
            .collect();
        let one = compress(1, &data);
        assert_eq!(one, compress(2, &data));
        assert_eq!(one, compress(7, &data));
    }
}
