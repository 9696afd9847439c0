//! Faults on demand, so that every failure path of weft's storage has a test that makes it
//! happen: a disk that fills up, an fsync that fails, an index directory whose writes fail, a
//! thread that panics or stalls, a query that does not finish. Retry waits can be recorded and
//! shortened, so a test reads the backoff weft chose without waiting it out.
//!
//! One [`Faults`] is shared by the write-ahead log and every partition's tantivy directory.
//! Nothing is injected unless a test switches it on; the checks are relaxed atomic loads.
//! `FaultyDirectory` wraps tantivy's `MmapDirectory` and consults it on every write.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    AntiCallToken, Directory, DirectoryLock, FileHandle, Lock, TerminatingWrite, WatchCallback,
    WatchHandle, WritePtr,
};

/// Switches that make storage operations fail. All off by default.
#[derive(Debug)]
pub struct Faults {
    /// Bytes that may still be written (WAL and index together) before writes fail with
    /// "no space left on device"; `u64::MAX` means no limit. Writes that cross the limit land
    /// partly, as they do on a real full disk.
    space_left: AtomicU64,
    /// Every WAL fsync fails with an I/O error.
    wal_sync_error: AtomicBool,
    /// Every write into an index directory fails with an I/O error.
    index_write_error: AtomicBool,
    /// The indexer thread panics when it next takes a batch.
    indexer_panic: AtomicBool,
    /// The indexer thread stops making progress (and ignores shutdown) while this is set.
    indexer_stall: AtomicBool,
    /// The WAL thread panics when it next takes a group.
    wal_panic: AtomicBool,
    /// Every query holds its place without finishing while this is set.
    query_stall: AtomicBool,
    /// Retry waits last a millisecond, and the wait asked for is recorded in `pauses`.
    fast_retries: AtomicBool,
    pauses: Mutex<Vec<Duration>>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            space_left: AtomicU64::new(u64::MAX),
            wal_sync_error: AtomicBool::new(false),
            index_write_error: AtomicBool::new(false),
            indexer_panic: AtomicBool::new(false),
            indexer_stall: AtomicBool::new(false),
            wal_panic: AtomicBool::new(false),
            query_stall: AtomicBool::new(false),
            fast_retries: AtomicBool::new(false),
            pauses: Mutex::new(Vec::new()),
        }
    }
}

fn no_space() -> io::Error {
    io::Error::from_raw_os_error(28) // ENOSPC
}

/// The faults a test can switch on and off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// WAL fsyncs fail.
    WalSyncError,
    /// Index directory writes fail.
    IndexWriteError,
    /// The indexer thread panics on its next batch (once per switch-on).
    IndexerPanic,
    /// The indexer thread stalls.
    IndexerStall,
    /// The WAL thread panics on its next group (once per switch-on).
    WalPanic,
    /// Queries stall (each keeps its place and its blocking thread) until switched off.
    QueryStall,
    /// Retry waits are recorded ([`Faults::pauses`]) and last a millisecond each.
    FastRetries,
}

impl Faults {
    /// No faults: what production uses.
    pub fn none() -> Arc<Faults> {
        Arc::new(Faults::default())
    }

    fn flag(&self, fault: Fault) -> &AtomicBool {
        match fault {
            Fault::WalSyncError => &self.wal_sync_error,
            Fault::IndexWriteError => &self.index_write_error,
            Fault::IndexerPanic => &self.indexer_panic,
            Fault::IndexerStall => &self.indexer_stall,
            Fault::WalPanic => &self.wal_panic,
            Fault::QueryStall => &self.query_stall,
            Fault::FastRetries => &self.fast_retries,
        }
    }

    /// Switches a fault on or off.
    pub fn set(&self, fault: Fault, on: bool) {
        self.flag(fault).store(on, Ordering::SeqCst);
    }

    /// Whether a fault is on.
    pub fn is_on(&self, fault: Fault) -> bool {
        self.flag(fault).load(Ordering::Relaxed)
    }

    /// Switches a one-shot fault off and says whether it was on.
    pub fn take(&self, fault: Fault) -> bool {
        self.flag(fault).swap(false, Ordering::SeqCst)
    }

    /// How long to wait before a retry that asked for `wanted`: `wanted` itself, unless
    /// [`Fault::FastRetries`] is on, which records it and answers a millisecond.
    pub fn retry_wait(&self, wanted: Duration) -> Duration {
        if !self.is_on(Fault::FastRetries) {
            return wanted;
        }
        self.pauses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(wanted);
        Duration::from_millis(1)
    }

    /// The retry waits asked for while [`Fault::FastRetries`] was on, in order.
    pub fn pauses(&self) -> Vec<Duration> {
        self.pauses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Holds the calling thread while [`Fault::QueryStall`] is on, as a query stuck in a slow
    /// read would be.
    pub fn stall_query(&self) {
        while self.is_on(Fault::QueryStall) {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Lets `bytes` more bytes be written before the emulated disk is full (`None`: no limit).
    pub fn set_space_left(&self, bytes: Option<u64>) {
        self.space_left
            .store(bytes.unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Bytes the emulated disk still takes, if it is limited.
    pub fn space_left(&self) -> Option<u64> {
        let left = self.space_left.load(Ordering::Relaxed);
        (left != u64::MAX).then_some(left)
    }

    /// Takes room for a write of `len` bytes: how many of them may land. Zero with `len > 0`
    /// means the disk is full.
    pub fn reserve_write(&self, len: usize) -> usize {
        let mut left = self.space_left.load(Ordering::Relaxed);
        loop {
            if left == u64::MAX {
                return len;
            }
            let granted = (len as u64).min(left);
            match self.space_left.compare_exchange_weak(
                left,
                left - granted,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return granted as usize,
                Err(actual) => left = actual,
            }
        }
    }

    /// Writes `buf` to `out` as a disk with this much room would: all of it, a prefix and then
    /// "no space left on device", or nothing.
    pub fn write_all(&self, out: &mut impl Write, buf: &[u8]) -> io::Result<()> {
        let granted = self.reserve_write(buf.len());
        out.write_all(&buf[..granted])?;
        if granted < buf.len() {
            return Err(no_space());
        }
        Ok(())
    }

    /// The error an fsync of the WAL returns, if it is to fail.
    pub fn wal_sync(&self) -> io::Result<()> {
        if self.is_on(Fault::WalSyncError) {
            return Err(io::Error::other("injected fsync failure"));
        }
        Ok(())
    }

    fn index_write(&self, len: usize) -> io::Result<usize> {
        if self.is_on(Fault::IndexWriteError) {
            return Err(io::Error::other("injected index write failure"));
        }
        match self.reserve_write(len) {
            0 if len > 0 => Err(no_space()),
            n => Ok(n),
        }
    }
}

/// A tantivy directory that behaves like the one it wraps until [`Faults`] says otherwise.
#[derive(Clone, Debug)]
pub(crate) struct FaultyDirectory {
    inner: tantivy::directory::MmapDirectory,
    faults: Arc<Faults>,
}

impl FaultyDirectory {
    pub(crate) fn new(inner: tantivy::directory::MmapDirectory, faults: Arc<Faults>) -> Self {
        FaultyDirectory { inner, faults }
    }
}

/// A file being written through a [`FaultyDirectory`].
struct FaultyWrite {
    inner: Option<WritePtr>,
    faults: Arc<Faults>,
    path: PathBuf,
}

impl Write for FaultyWrite {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let granted = self.faults.index_write(buf.len())?;
        let inner = self
            .inner
            .as_mut()
            .ok_or_else(|| io::Error::other(format!("{} is closed", self.path.display())))?;
        inner.write(&buf[..granted])
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.inner.as_mut() {
            Some(inner) => inner.flush(),
            None => Ok(()),
        }
    }
}

impl TerminatingWrite for FaultyWrite {
    fn terminate_ref(&mut self, _: AntiCallToken) -> io::Result<()> {
        self.faults.index_write(0)?;
        match self.inner.take() {
            Some(inner) => inner.terminate(),
            None => Ok(()),
        }
    }
}

impl Directory for FaultyDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        self.inner.get_file_handle(path)
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        self.inner.delete(path)
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.inner.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        if self.faults.is_on(Fault::IndexWriteError) {
            return Err(OpenWriteError::wrap_io_error(
                io::Error::other("injected index write failure"),
                path.to_path_buf(),
            ));
        }
        let inner = self.inner.open_write(path)?;
        Ok(io::BufWriter::new(Box::new(FaultyWrite {
            inner: Some(inner),
            faults: self.faults.clone(),
            path: path.to_path_buf(),
        })))
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        self.inner.atomic_read(path)
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        // All or nothing: an atomic write that does not fit fails without landing.
        if self.faults.is_on(Fault::IndexWriteError) {
            return Err(io::Error::other("injected index write failure"));
        }
        if self.faults.reserve_write(data.len()) < data.len() {
            return Err(no_space());
        }
        self.inner.atomic_write(path, data)
    }

    fn sync_directory(&self) -> io::Result<()> {
        self.inner.sync_directory()
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        self.inner.acquire_lock(lock)
    }

    fn watch(&self, watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.inner.watch(watch_callback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_takes_a_prefix_then_refuses() {
        let faults = Faults::default();
        faults.set_space_left(Some(10));
        let mut out = Vec::new();
        faults.write_all(&mut out, b"0123456").unwrap();
        let err = faults.write_all(&mut out, b"789abc").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28));
        assert_eq!(out, b"0123456789");
        assert_eq!(faults.space_left(), Some(0));
        faults.set_space_left(None);
        faults.write_all(&mut out, b"!").unwrap();
        assert_eq!(faults.space_left(), None);
    }

    #[test]
    fn one_shot_faults_fire_once() {
        let faults = Faults::default();
        assert!(!faults.take(Fault::IndexerPanic));
        faults.set(Fault::IndexerPanic, true);
        assert!(faults.take(Fault::IndexerPanic));
        assert!(!faults.take(Fault::IndexerPanic));
    }
}
