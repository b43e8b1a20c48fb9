//! The SQLite index: blobs, layers, step cache entries and image refs.
//!
//! Schema changes are an append-only list of migrations tracked by `pragma user_version`;
//! a released migration is never edited.

use crate::{Digest, StoreError};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::time::Duration;

const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE blobs (
        digest TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        added INTEGER NOT NULL
     );
     CREATE TABLE layers (
        diff_id TEXT NOT NULL,
        media_type TEXT NOT NULL,
        digest TEXT NOT NULL REFERENCES blobs(digest),
        size INTEGER NOT NULL,
        PRIMARY KEY (diff_id, media_type)
     );
     CREATE TABLE cache (
        key TEXT PRIMARY KEY,
        diff_id TEXT NOT NULL,
        created_by TEXT NOT NULL,
        added INTEGER NOT NULL,
        last_used INTEGER NOT NULL
     );
     CREATE TABLE refs (
        name TEXT PRIMARY KEY,
        manifest TEXT NOT NULL REFERENCES blobs(digest),
        updated INTEGER NOT NULL
     );",
    // 2: layer blobs known by digest but kept in a registry until something needs their
    // bytes (layers named by a `--cache-from` import), and where pulled layers came from.
    "CREATE TABLE remote_layers (
        digest TEXT PRIMARY KEY,
        diff_id TEXT NOT NULL,
        media_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        source TEXT NOT NULL,
        added INTEGER NOT NULL
     );
     CREATE INDEX remote_layers_diff_id ON remote_layers (diff_id);",
    // 3: outputs written from images: where, from what (the export's key), and how their
    // files looked to stat(2) right after, so an unchanged output is not written again.
    "CREATE TABLE outputs (
        path TEXT PRIMARY KEY,
        key TEXT NOT NULL,
        files TEXT NOT NULL,
        written INTEGER NOT NULL
     );
     CREATE INDEX outputs_key ON outputs (key);",
    // 4: digests of host files a `copy` step hashed, by path and stat(2) stamp, so that an
    // unchanged file is not read and hashed again.
    "CREATE TABLE file_digests (
        path TEXT PRIMARY KEY,
        stamp TEXT NOT NULL,
        digest TEXT NOT NULL,
        size INTEGER NOT NULL
     );",
    // 5: each layer's table of contents (its entries' metadata), a blob of its own, so a
    // merged tree is built without decompressing the layer.
    "CREATE TABLE layer_tocs (
        diff_id TEXT PRIMARY KEY,
        digest TEXT NOT NULL REFERENCES blobs(digest)
     );",
];

/// A compressed form of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRecord {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// The OCI media type of the blob.
    pub media_type: String,
    /// sha256 of the compressed blob.
    pub digest: Digest,
    /// Size of the compressed blob in bytes.
    pub size: u64,
}

/// A step cache entry: the layer a step with this key produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// The step's cache key.
    pub key: Digest,
    /// The layer it produced.
    pub diff_id: Digest,
    /// The history text of the step.
    pub created_by: String,
    /// Unix seconds when it was last used.
    pub last_used: i64,
}

/// A named image: `name:tag` pointing at a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `name:tag`.
    pub name: String,
    /// The manifest's digest.
    pub manifest: Digest,
    /// Unix seconds of the last update.
    pub updated: i64,
}

/// An output written from an image, as the store remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    /// Its absolute path.
    pub path: PathBuf,
    /// What it was made from: a digest of the image and the export's settings.
    pub key: String,
    /// How its files looked to stat(2) right after it was written (the exporter's own
    /// encoding).
    pub files: String,
}

pub(crate) struct Index {
    conn: Connection,
    path: PathBuf,
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn digest_col(s: String) -> rusqlite::Result<Digest> {
    s.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn size_col(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn size_param(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Index {
    /// Opens the index, creating or migrating its schema. The caller holds the store's
    /// schema lock; SQLite's own "busy" answers are retried for a while anyway.
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        let start = std::time::Instant::now();
        loop {
            match Self::open_once(path) {
                Err(StoreError::Index { source, .. })
                    if matches!(
                        source.sqlite_error_code(),
                        Some(
                            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                        )
                    ) && start.elapsed() < Duration::from_secs(60) =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    fn open_once(path: &Path) -> Result<Self, StoreError> {
        let err = StoreError::index;
        let mut conn = Connection::open(path).map_err(err(path))?;
        conn.busy_timeout(Duration::from_secs(60))
            .map_err(err(path))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err(path))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err(path))?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
            .map_err(err(path))?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err(path))?;
        let supported = MIGRATIONS.len() as i64;
        if version > supported {
            return Err(StoreError::SchemaTooNew {
                path: path.to_owned(),
                found: version,
                supported,
            });
        }
        // An index that is up to date is not written: opening the store (for `store du`
        // too) leaves it as it was.
        if version < supported {
            for migration in &MIGRATIONS[usize::try_from(version).unwrap_or(0)..] {
                tx.execute_batch(migration).map_err(err(path))?;
            }
            tx.pragma_update(None, "user_version", supported)
                .map_err(err(path))?;
        }
        tx.commit().map_err(err(path))?;
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    fn err(&self) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        StoreError::index(&self.path)
    }

    pub(crate) fn add_blob(&self, digest: &Digest, size: u64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO blobs (digest, size, added) VALUES (?1, ?2, ?3)",
                params![digest.to_string(), size_param(size), now()],
            )
            .map(drop)
            .map_err(self.err())
    }

    pub(crate) fn has_blob(&self, digest: &Digest) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT 1 FROM blobs WHERE digest = ?1",
                [digest.to_string()],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(self.err())
    }

    pub(crate) fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        self.conn
            .query_row(
                "SELECT size FROM blobs WHERE digest = ?1",
                [digest.to_string()],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|r| r.map(size_col))
            .map_err(self.err())
    }

    pub(crate) fn blobs(&self) -> Result<Vec<(Digest, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT digest, size FROM blobs ORDER BY digest")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| Ok((digest_col(r.get(0)?)?, size_col(r.get(1)?))))
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    pub(crate) fn add_layer(&self, layer: &LayerRecord) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO layers (diff_id, media_type, digest, size) VALUES (?1, ?2, ?3, ?4)",
                params![
                    layer.diff_id.to_string(),
                    layer.media_type,
                    layer.digest.to_string(),
                    size_param(layer.size)
                ],
            )
            .map(drop)
            .map_err(self.err())
    }

    /// Every compressed form of a layer, newest media types first by name.
    pub(crate) fn layer_forms(&self, diff_id: &Digest) -> Result<Vec<LayerRecord>, StoreError> {
        self.forms(
            "SELECT media_type, digest, size FROM layers WHERE diff_id = ?1 ORDER BY media_type",
            diff_id,
        )
    }

    /// Runs a query that selects `media_type, digest, size` rows of one layer.
    fn forms(&self, sql: &str, diff_id: &Digest) -> Result<Vec<LayerRecord>, StoreError> {
        let mut stmt = self.conn.prepare(sql).map_err(self.err())?;
        let rows = stmt
            .query_map([diff_id.to_string()], |r| {
                Ok(LayerRecord {
                    diff_id: diff_id.clone(),
                    media_type: r.get(0)?,
                    digest: digest_col(r.get(1)?)?,
                    size: size_col(r.get(2)?),
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    pub(crate) fn layer_by_digest(
        &self,
        digest: &Digest,
    ) -> Result<Option<LayerRecord>, StoreError> {
        self.conn
            .query_row(
                "SELECT diff_id, media_type, size FROM layers WHERE digest = ?1",
                [digest.to_string()],
                |r| {
                    Ok(LayerRecord {
                        diff_id: digest_col(r.get(0)?)?,
                        media_type: r.get(1)?,
                        digest: digest.clone(),
                        size: size_col(r.get(2)?),
                    })
                },
            )
            .optional()
            .map_err(self.err())
    }

    pub(crate) fn put_cache(
        &self,
        key: &Digest,
        diff_id: &Digest,
        created_by: &str,
    ) -> Result<(), StoreError> {
        let t = now();
        self.conn
            .execute(
                "INSERT OR REPLACE INTO cache (key, diff_id, created_by, added, last_used) VALUES (?1, ?2, ?3, ?4, ?4)",
                params![key.to_string(), diff_id.to_string(), created_by, t],
            )
            .map(drop)
            .map_err(self.err())
    }

    pub(crate) fn get_cache(&self, key: &Digest) -> Result<Option<CacheEntry>, StoreError> {
        let entry = self.peek_cache(key)?;
        if entry.is_some() {
            self.conn
                .execute(
                    "UPDATE cache SET last_used = ?2 WHERE key = ?1",
                    params![key.to_string(), now()],
                )
                .map_err(self.err())?;
        }
        Ok(entry)
    }

    /// The cache entry for `key`, without marking it used.
    pub(crate) fn peek_cache(&self, key: &Digest) -> Result<Option<CacheEntry>, StoreError> {
        self.conn
            .query_row(
                "SELECT diff_id, created_by, last_used FROM cache WHERE key = ?1",
                [key.to_string()],
                |r| {
                    Ok(CacheEntry {
                        key: key.clone(),
                        diff_id: digest_col(r.get(0)?)?,
                        created_by: r.get(1)?,
                        last_used: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(self.err())
    }

    pub(crate) fn cache_entries(&self) -> Result<Vec<CacheEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, diff_id, created_by, last_used FROM cache ORDER BY last_used DESC, key")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(CacheEntry {
                    key: digest_col(r.get(0)?)?,
                    diff_id: digest_col(r.get(1)?)?,
                    created_by: r.get(2)?,
                    last_used: r.get(3)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    pub(crate) fn set_ref(&self, name: &str, manifest: &Digest) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO refs (name, manifest, updated) VALUES (?1, ?2, ?3)",
                params![name, manifest.to_string(), now()],
            )
            .map(drop)
            .map_err(self.err())
    }

    pub(crate) fn refs(&self) -> Result<Vec<ImageRef>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, manifest, updated FROM refs ORDER BY name")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ImageRef {
                    name: r.get(0)?,
                    manifest: digest_col(r.get(1)?)?,
                    updated: r.get(2)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    pub(crate) fn put_output(&self, record: &OutputRecord) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO outputs (path, key, files, written) VALUES (?1, ?2, ?3, ?4)",
                params![
                    record.path.to_string_lossy(),
                    record.key,
                    record.files,
                    now()
                ],
            )
            .map(drop)
            .map_err(self.err())
    }

    /// The outputs recorded at `path`, or made with `key`.
    pub(crate) fn outputs_where(
        &self,
        path: Option<&Path>,
        key: Option<&str>,
    ) -> Result<Vec<OutputRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT path, key, files FROM outputs
                 WHERE (?1 IS NULL OR path = ?1) AND (?2 IS NULL OR key = ?2)
                 ORDER BY written DESC",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(
                params![path.map(|p| p.to_string_lossy().into_owned()), key],
                |r| {
                    Ok(OutputRecord {
                        path: PathBuf::from(r.get::<_, String>(0)?),
                        key: r.get(1)?,
                        files: r.get(2)?,
                    })
                },
            )
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    pub(crate) fn forget_output(&self, path: &Path) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM outputs WHERE path = ?1",
                [path.to_string_lossy()],
            )
            .map(drop)
            .map_err(self.err())
    }

    /// The recorded file digests of paths in `[from, to)` (byte order), by path.
    pub(crate) fn file_digests_between(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, String, Digest, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT path, stamp, digest, size FROM file_digests WHERE path >= ?1 AND path < ?2",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![from, to], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    digest_col(r.get(2)?)?,
                    size_col(r.get(3)?),
                ))
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Records file digests (path, stamp, digest, size), replacing what was recorded.
    pub(crate) fn put_file_digests(
        &self,
        found: &[(String, String, Digest, u64)],
    ) -> Result<(), StoreError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(self.err())?;
        let result = (|| {
            let mut stmt = self.conn.prepare_cached(
                "INSERT OR REPLACE INTO file_digests (path, stamp, digest, size) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (path, stamp, digest, size) in found {
                stmt.execute(params![path, stamp, digest.to_string(), size_param(*size)])?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => self.conn.execute_batch("COMMIT").map_err(self.err()),
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(StoreError::index(&self.path)(e))
            }
        }
    }

    /// Every path with a recorded file digest.
    pub(crate) fn file_digest_paths(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT path FROM file_digests")
            .map_err(self.err())?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    pub(crate) fn forget_file_digest(&self, path: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM file_digests WHERE path = ?1", [path])
            .map(drop)
            .map_err(self.err())
    }

    pub(crate) fn remove_ref(&self, name: &str) -> Result<bool, StoreError> {
        self.conn
            .execute("DELETE FROM refs WHERE name = ?1", [name])
            .map(|n| n > 0)
            .map_err(self.err())
    }

    /// Deletes a blob's row and every layer and cache row that depends on it.
    pub(crate) fn forget_blob(&self, digest: &Digest) -> Result<(), StoreError> {
        let d = digest.to_string();
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(self.err())?;
        let result = (|| {
            self.conn.execute(
                "DELETE FROM cache WHERE diff_id IN (SELECT diff_id FROM layers WHERE digest = ?1)
                   AND NOT EXISTS (SELECT 1 FROM layers l2 WHERE l2.diff_id = cache.diff_id AND l2.digest != ?1)",
                [&d],
            )?;
            // A layer's table of contents goes with its last form, and with its own blob.
            self.conn.execute(
                "DELETE FROM layer_tocs WHERE digest = ?1
                   OR (diff_id IN (SELECT diff_id FROM layers WHERE digest = ?1)
                       AND NOT EXISTS (SELECT 1 FROM layers l2
                                       WHERE l2.diff_id = layer_tocs.diff_id AND l2.digest != ?1))",
                [&d],
            )?;
            self.conn
                .execute("DELETE FROM layers WHERE digest = ?1", [&d])?;
            self.conn
                .execute("DELETE FROM refs WHERE manifest = ?1", [&d])?;
            self.conn
                .execute("DELETE FROM blobs WHERE digest = ?1", [&d])?;
            Ok(())
        })();
        match result {
            Ok(()) => self.conn.execute_batch("COMMIT").map_err(self.err()),
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(self.err()(e))
            }
        }
    }

    /// Moves the WAL into the database and truncates it, so the index takes no more room
    /// on disk than it needs (after `gc`).
    pub(crate) fn checkpoint(&self) -> Result<(), StoreError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(self.err())
    }

    pub(crate) fn remove_cache_entry(&self, key: &Digest) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM cache WHERE key = ?1", [key.to_string()])
            .map(drop)
            .map_err(self.err())
    }

    pub(crate) fn add_remote_layer(
        &self,
        layer: &LayerRecord,
        source: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO remote_layers (digest, diff_id, media_type, size, source, added)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    layer.digest.to_string(),
                    layer.diff_id.to_string(),
                    layer.media_type,
                    size_param(layer.size),
                    source,
                    now()
                ],
            )
            .map(drop)
            .map_err(self.err())
    }

    /// A remote layer blob and where it can be fetched from.
    pub(crate) fn remote_layer(
        &self,
        digest: &Digest,
    ) -> Result<Option<(LayerRecord, String)>, StoreError> {
        self.conn
            .query_row(
                "SELECT diff_id, media_type, size, source FROM remote_layers WHERE digest = ?1",
                [digest.to_string()],
                |r| {
                    Ok((
                        LayerRecord {
                            diff_id: digest_col(r.get(0)?)?,
                            media_type: r.get(1)?,
                            digest: digest.clone(),
                            size: size_col(r.get(2)?),
                        },
                        r.get(3)?,
                    ))
                },
            )
            .optional()
            .map_err(self.err())
    }

    /// Remote forms of a layer whose blob is not in the store.
    pub(crate) fn remote_forms(&self, diff_id: &Digest) -> Result<Vec<LayerRecord>, StoreError> {
        self.forms(
            "SELECT media_type, digest, size FROM remote_layers
             WHERE diff_id = ?1 AND digest NOT IN (SELECT digest FROM layers)
             ORDER BY media_type",
            diff_id,
        )
    }

    /// The blob holding a layer's table of contents, if there is one.
    pub(crate) fn layer_toc(&self, diff_id: &Digest) -> Result<Option<Digest>, StoreError> {
        self.conn
            .query_row(
                "SELECT digest FROM layer_tocs WHERE diff_id = ?1",
                [diff_id.to_string()],
                |r| digest_col(r.get(0)?),
            )
            .optional()
            .map_err(self.err())
    }

    pub(crate) fn set_layer_toc(&self, diff_id: &Digest, toc: &Digest) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO layer_tocs (diff_id, digest) VALUES (?1, ?2)",
                [diff_id.to_string(), toc.to_string()],
            )
            .map(drop)
            .map_err(self.err())
    }

    /// Every layer's table of contents: (diff_id, blob).
    pub(crate) fn layer_tocs(&self) -> Result<Vec<(Digest, Digest)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT diff_id, digest FROM layer_tocs")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| Ok((digest_col(r.get(0)?)?, digest_col(r.get(1)?)?)))
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    pub(crate) fn all_layers(&self) -> Result<Vec<LayerRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT diff_id, media_type, digest, size FROM layers ORDER BY diff_id, media_type",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(LayerRecord {
                    diff_id: digest_col(r.get(0)?)?,
                    media_type: r.get(1)?,
                    digest: digest_col(r.get(2)?)?,
                    size: size_col(r.get(3)?),
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }
}
