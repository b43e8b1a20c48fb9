//! The store-wide lock: shared while building, exclusive while collecting garbage.

use crate::StoreError;
use std::fs::{File, TryLockError};
use std::path::Path;
use std::time::{Duration, Instant};

/// Holds the store lock until dropped.
#[derive(Debug)]
pub(crate) struct StoreLock {
    _file: File,
}

fn timeout() -> Duration {
    let secs = std::env::var("IMGBUILD_LOCK_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    Duration::from_secs(secs)
}

impl StoreLock {
    pub(crate) fn acquire(path: &Path, exclusive: bool) -> Result<Self, StoreError> {
        let file = fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?
            .into_parts()
            .0;
        let limit = timeout();
        let start = Instant::now();
        loop {
            let attempt = if exclusive {
                file.try_lock()
            } else {
                file.try_lock_shared()
            };
            match attempt {
                Ok(()) => return Ok(Self { _file: file }),
                Err(TryLockError::WouldBlock) if start.elapsed() < limit => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(StoreError::LockTimeout {
                        path: path.to_owned(),
                        seconds: limit.as_secs(),
                    })
                }
                Err(TryLockError::Error(e)) => {
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("locking {}: {e}", path.display()),
                    )
                    .into())
                }
            }
        }
    }
}
