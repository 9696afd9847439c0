//! The free-space watermark: below it weft refuses new data, before the disk is actually full,
//! so that what it has acknowledged can still be indexed and committed, and so that a full disk
//! is a clear, retryable refusal instead of a failing write.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weft_index::faults::Faults;

use super::health::{Condition, Health};

/// How often free space is looked at, at most.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// Free bytes for unprivileged writers on the file system holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("path holds a NUL byte"))?;
    // SAFETY: statvfs only writes into the struct we hand it, and c_path is a valid C string.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stats) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok(stats.f_bavail as u64 * stats.f_frsize as u64)
}

/// Watches the free space of the data directory's file system.
pub struct Watermark {
    path: PathBuf,
    min_free: u64,
    faults: Option<Arc<Faults>>,
    last_check: Option<Instant>,
}

impl Watermark {
    /// Refuses data while fewer than `min_free` bytes are free under `path` (0: never).
    pub fn new(path: &Path, min_free: u64, faults: Option<Arc<Faults>>) -> Self {
        Watermark {
            path: path.to_path_buf(),
            min_free,
            faults,
            last_check: None,
        }
    }

    /// Free bytes, as a test's emulated disk or the real one says (whichever is smaller).
    fn free(&self) -> std::io::Result<u64> {
        let real = free_bytes(&self.path)?;
        let emulated = self
            .faults
            .as_ref()
            .and_then(|f| f.space_left())
            .unwrap_or(u64::MAX);
        Ok(real.min(emulated))
    }

    /// Sets or clears [`Condition::DiskLow`]; looks at the disk at most every 100 ms.
    /// Returns whether space is low.
    pub fn check(&mut self, health: &Health) -> bool {
        if self.min_free == 0 {
            return false;
        }
        if self
            .last_check
            .is_some_and(|last| last.elapsed() < CHECK_EVERY)
        {
            return health.is_set(Condition::DiskLow);
        }
        self.last_check = Some(Instant::now());
        match self.free() {
            Ok(free) if free < self.min_free => {
                health.set(
                    Condition::DiskLow,
                    format!(
                        "{} bytes free on the data directory's file system, below the {} byte watermark (min_free_disk_bytes); free space or raise retention",
                        free, self.min_free
                    ),
                );
                true
            }
            Ok(_) => {
                health.clear(Condition::DiskLow);
                false
            }
            Err(error) => {
                // Not knowing is no reason to refuse: the writes themselves will tell.
                tracing::warn!(%error, "cannot read free disk space");
                health.is_set(Condition::DiskLow)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_read_and_an_emulated_disk_counts() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
        let faults = Faults::none();
        let health = Health::new(Duration::from_secs(5));
        let mut watermark = Watermark::new(dir.path(), 1000, Some(faults.clone()));
        assert!(!watermark.check(&health));
        faults.set_space_left(Some(10));
        watermark.last_check = None;
        assert!(watermark.check(&health));
        assert!(health.is_set(Condition::DiskLow));
        let (_, reason) = health.refusal(0).unwrap();
        assert!(reason.contains("10 bytes free"), "{reason}");
        faults.set_space_left(None);
        watermark.last_check = None;
        assert!(!watermark.check(&health));
        assert!(!health.is_set(Condition::DiskLow));
    }
}
