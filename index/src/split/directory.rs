//! A split in object storage read in place: a read-only tantivy [`Directory`] over ranged reads.
//!
//! Opening one costs one request: the last [`TAIL_READ_BYTES`] of the split, which hold its
//! footer and its hot cache (`hot_cache`), so that tantivy opens the index without another
//! round trip. Whatever a query reads beyond that (a posting list, a column, a block of stored
//! rows) is one ranged read, rounded out to [`READ_ALIGN_BYTES`] so that neighbouring small
//! reads share it, and kept in memory up to [`FETCHED_CAP_BYTES`] per split. Before a trace
//! lookup, the ranges every lookup reads (the row columns, listed in the footer) are read at
//! once, in parallel ([`SplitDirectory::prefetch_lookup`]).
//!
//! A failed read surfaces as an `io::Error` wrapping [`RemoteReadError`], which the index
//! error type turns back into [`IndexError::Remote`] however deep in tantivy it failed: the
//! caller answers "object storage cannot be read now", not "the index is damaged".

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    DirectoryLock, FileHandle, Lock, OwnedBytes, WatchCallback, WatchHandle, WritePtr,
};
use tantivy::{Directory, HasLen};

use crate::error::{IndexError, RemoteReadError, remote_read_reason};
use crate::split::hot_cache::segment_of;
use crate::split::{self, SplitFile, TRAILER_LEN};

/// How much of a split's end the first read asks for: the footer and the hot cache of an
/// hour's partition fit in it; when they do not, a second read brings the rest.
const TAIL_READ_BYTES: u64 = 1 << 20;
/// Reads are widened to this alignment: tantivy's reads of one structure come in small
/// neighbouring pieces, and a round trip costs more than the extra bytes.
pub(crate) const READ_ALIGN_BYTES: u64 = 64 << 10;
/// Bytes read beyond the hot cache kept per open split; the oldest go first.
const FETCHED_CAP_BYTES: u64 = 32 << 20;
/// Requests one split's lookup prefetch keeps in flight at once.
const PREFETCH_READERS: usize = 8;
/// The most a split's lookup ranges may add up to: they must stay in memory together.
pub(crate) const MAX_LOOKUP_BYTES: u64 = FETCHED_CAP_BYTES / 2;

/// Reads splits from object storage; weft's storage layer implements it. Each error says
/// why it could not.
pub trait SplitFetcher: Send + Sync {
    /// Writes the split `id` to the file `dest`: a late row for a partition kept only in
    /// object storage brings the whole of it back.
    fn fetch(&self, id: &str, dest: &Path) -> Result<(), String>;
    /// Bytes `range` of split `id`: queries read splits in place.
    fn read_range(&self, id: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>, String>;
    /// The last `len` bytes of split `id` (all of it, when it is shorter), and its size.
    fn read_tail(&self, id: &str, len: u64) -> Result<(Vec<u8>, u64), String>;
}

/// Byte ranges of files held in memory: per file, `(start, bytes)` sorted by start.
#[derive(Default)]
struct Ranges(HashMap<PathBuf, Vec<(u64, OwnedBytes)>>);

impl Ranges {
    fn find(&self, path: &Path, range: &Range<u64>) -> Option<OwnedBytes> {
        let list = self.0.get(path)?;
        // Ranges may overlap (each window read is kept whole), so any range starting at or
        // before the wanted start may hold it; a file has tens of them at most.
        let candidates = list.partition_point(|(start, _)| *start <= range.start);
        list[..candidates].iter().rev().find_map(|(start, bytes)| {
            let end = start + bytes.len() as u64;
            (range.end <= end)
                .then(|| bytes.slice((range.start - start) as usize..(range.end - start) as usize))
        })
    }

    /// Adds a range; returns the bytes of the ranges it replaced: those it holds whole.
    /// Ranges it only overlaps stay, or a window read next to another would drop it, and
    /// its bytes be read again.
    fn insert(&mut self, path: &Path, start: u64, bytes: OwnedBytes) -> u64 {
        let list = self.0.entry(path.to_path_buf()).or_default();
        let end = start + bytes.len() as u64;
        let mut replaced = 0;
        list.retain(|(s, b)| {
            let keep = *s < start || *s + b.len() as u64 > end;
            if !keep {
                replaced += b.len() as u64;
            }
            keep
        });
        let i = list.partition_point(|(s, _)| *s < start);
        list.insert(i, (start, bytes));
        replaced
    }

    fn remove(&mut self, path: &Path, start: u64) -> u64 {
        let Some(list) = self.0.get_mut(path) else {
            return 0;
        };
        let Some(i) = list.iter().position(|(s, _)| *s == start) else {
            return 0;
        };
        list.remove(i).1.len() as u64
    }
}

/// Ranges read so far, and their order, for eviction.
#[derive(Default)]
struct Fetched {
    ranges: Ranges,
    order: VecDeque<(PathBuf, u64)>,
    bytes: u64,
}

struct SplitSource {
    id: String,
    /// Bytes of the split's end held for the hot cache.
    tail_bytes: u64,
    /// The split's size.
    size: u64,
    fetcher: Arc<dyn SplitFetcher>,
    files: HashMap<PathBuf, SplitFile>,
    hot: Ranges,
    fetched: Mutex<Fetched>,
    /// What every trace lookup reads beyond the hot cache (`SplitFooter::lookup`).
    lookup: Vec<(PathBuf, Range<u64>)>,
    /// The segments whose part of `lookup` was read (or is being read) since the split was
    /// opened.
    prefetched: Mutex<HashSet<String>>,
}

/// A split read in place. Cheap to clone; clones share what was read.
#[derive(Clone)]
pub(crate) struct SplitDirectory {
    source: Arc<SplitSource>,
}

impl std::fmt::Debug for SplitDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitDirectory")
            .field("id", &self.source.id)
            .finish()
    }
}

/// The error of a failed request while opening: the caller words it for the user.
fn remote(reason: String) -> IndexError {
    IndexError::Remote(reason)
}

/// Reads the bytes of split `id` from `from` up to `tail_start` and puts them in front of
/// `tail`, when `tail` does not reach back that far.
fn extend_front(
    fetcher: &dyn SplitFetcher,
    id: &str,
    tail: &mut Vec<u8>,
    tail_start: &mut u64,
    from: u64,
) -> Result<(), IndexError> {
    if from >= *tail_start {
        return Ok(());
    }
    let mut front = fetcher.read_range(id, from..*tail_start).map_err(remote)?;
    if front.len() as u64 != *tail_start - from {
        return Err(remote(format!("a short read of {id}")));
    }
    front.append(tail);
    *tail = front;
    *tail_start = from;
    Ok(())
}

impl SplitDirectory {
    /// Opens split `id`: reads its end, checks its footer and keeps its hot cache.
    pub(crate) fn open(
        fetcher: Arc<dyn SplitFetcher>,
        id: &str,
    ) -> Result<SplitDirectory, IndexError> {
        Self::open_reading(fetcher, id, TAIL_READ_BYTES)
    }

    /// [`SplitDirectory::open`], first reading the split's last `tail_read` bytes.
    fn open_reading(
        fetcher: Arc<dyn SplitFetcher>,
        id: &str,
        tail_read: u64,
    ) -> Result<SplitDirectory, IndexError> {
        let label = PathBuf::from(format!("{id}.split"));
        let (mut tail, size) = fetcher.read_tail(id, tail_read).map_err(remote)?;
        if tail.len() as u64 != size.min(tail_read) {
            return Err(remote(format!(
                "object storage returned {} bytes of the last {} of {id}",
                tail.len(),
                size.min(tail_read)
            )));
        }
        let trailer = &tail[tail.len().saturating_sub(TRAILER_LEN as usize)..];
        let footer_len = split::footer_len(&label, size, trailer)?;
        let body_len = size - TRAILER_LEN - footer_len;
        let mut tail_start = size - tail.len() as u64;
        extend_front(fetcher.as_ref(), id, &mut tail, &mut tail_start, body_len)?;
        let footer_at = (body_len - tail_start) as usize;
        let footer = split::parse_footer(
            &label,
            &tail[footer_at..footer_at + footer_len as usize],
            body_len,
        )?;
        extend_front(
            fetcher.as_ref(),
            id,
            &mut tail,
            &mut tail_start,
            footer.hot_cache_offset(body_len),
        )?;
        let tail_bytes = tail.len() as u64;
        let tail = OwnedBytes::new(tail);
        let mut hot = Ranges::default();
        for h in &footer.hot {
            let at = (h.offset - tail_start) as usize;
            hot.insert(
                Path::new(&h.file),
                h.start,
                tail.slice(at..at + h.len as usize),
            );
        }
        let lookup = footer
            .lookup
            .iter()
            .map(|l| (PathBuf::from(&l.file), l.start..l.start + l.len))
            .collect();
        let files = footer
            .files
            .into_iter()
            .map(|f| (PathBuf::from(&f.name), f))
            .collect();
        Ok(SplitDirectory {
            source: Arc::new(SplitSource {
                id: id.to_string(),
                tail_bytes,
                size,
                fetcher,
                files,
                hot,
                fetched: Mutex::new(Fetched::default()),
                lookup,
                prefetched: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// The split's size in bytes.
    pub(crate) fn split_bytes(&self) -> u64 {
        self.source.size
    }

    /// Memory held: the split's end and the ranges read since.
    pub(crate) fn memory_bytes(&self) -> u64 {
        let fetched = self
            .source
            .fetched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .bytes;
        self.source.tail_bytes + fetched
    }

    /// Reads what every trace lookup reads of this split (`SplitFooter::lookup`), the ranges
    /// not held yet, on up to [`PREFETCH_READERS`] threads at once, so that the lookup that
    /// follows waits for one round of requests instead of one request per column. With
    /// `segments`, only those segments' ranges (the trace filter rules out the others). Once
    /// per segment of an open split; again after a failure.
    pub(crate) fn prefetch_lookup(&self, segments: Option<&[String]>) -> Result<(), IndexError> {
        let source = &*self.source;
        let segment = |path: &Path| segment_of(path.to_str().unwrap_or_default()).to_string();
        // The segments this call reads; those read before (or being read by another lookup)
        // are left out.
        let claimed: HashSet<String> = {
            let mut done = source.prefetched.lock().unwrap_or_else(|p| p.into_inner());
            let mut claimed = HashSet::new();
            for (path, _) in &source.lookup {
                let name = segment(path);
                if segments.is_none_or(|wanted| wanted.contains(&name)) && !done.contains(&name) {
                    claimed.insert(name);
                }
            }
            done.extend(claimed.iter().cloned());
            claimed
        };
        let ranges: Vec<&(PathBuf, Range<u64>)> = source
            .lookup
            .iter()
            .filter(|(path, _)| claimed.contains(&segment(path)))
            .collect();
        if ranges.is_empty() {
            return Ok(());
        }
        let next = AtomicUsize::new(0);
        let failure: Mutex<Option<io::Error>> = Mutex::new(None);
        let work = || {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((path, range)) = ranges.get(i) else {
                    return;
                };
                let Some(file) = source.files.get(path) else {
                    continue;
                };
                if let Err(error) = source.read(path, file, range.clone()) {
                    *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
                    next.store(ranges.len(), Ordering::Relaxed);
                    return;
                }
            }
        };
        std::thread::scope(|scope| {
            for _ in 0..ranges.len().min(PREFETCH_READERS) {
                scope.spawn(work);
            }
        });
        match failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
            None => Ok(()),
            Some(error) => {
                source
                    .prefetched
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|s| !claimed.contains(s));
                Err(match remote_read_reason(&error) {
                    Some(reason) => remote(reason),
                    None => IndexError::Io(error),
                })
            }
        }
    }

    /// All of file `name`, in one read, not kept; `None` when the split has no such file.
    pub(crate) fn read_file(&self, name: &str) -> Result<Option<Vec<u8>>, IndexError> {
        let Some(file) = self.source.files.get(Path::new(name)) else {
            return Ok(None);
        };
        let bytes = self
            .source
            .fetcher
            .read_range(&self.source.id, file.offset..file.offset + file.len)
            .map_err(remote)?;
        if bytes.len() as u64 != file.len {
            return Err(remote(format!(
                "a short read of {name} in {}",
                self.source.id
            )));
        }
        Ok(Some(bytes))
    }

    /// The names of the split's files.
    pub(crate) fn file_names(&self) -> Vec<String> {
        self.source.files.values().map(|f| f.name.clone()).collect()
    }

    fn file(&self, path: &Path) -> Result<&SplitFile, OpenReadError> {
        self.source
            .files
            .get(path)
            .ok_or_else(|| OpenReadError::FileDoesNotExist(path.to_path_buf()))
    }
}

impl SplitSource {
    fn read(&self, path: &Path, file: &SplitFile, range: Range<u64>) -> io::Result<OwnedBytes> {
        if range.start > range.end || range.end > file.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{range:?} is outside {} ({} bytes)",
                    path.display(),
                    file.len
                ),
            ));
        }
        if range.is_empty() {
            return Ok(OwnedBytes::empty());
        }
        if let Some(bytes) = self.hot.find(path, &range) {
            return Ok(bytes);
        }
        let lock = || self.fetched.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bytes) = lock().ranges.find(path, &range) {
            return Ok(bytes);
        }
        let window = range.start / READ_ALIGN_BYTES * READ_ALIGN_BYTES
            ..range.end.div_ceil(READ_ALIGN_BYTES) * READ_ALIGN_BYTES;
        let window = window.start..window.end.min(file.len);
        let bytes = self
            .fetcher
            .read_range(
                &self.id,
                file.offset + window.start..file.offset + window.end,
            )
            .map_err(|reason| io::Error::other(RemoteReadError(reason)))?;
        if bytes.len() as u64 != window.end - window.start {
            return Err(io::Error::other(RemoteReadError(format!(
                "a short read of {}",
                self.id
            ))));
        }
        let bytes = OwnedBytes::new(bytes);
        let wanted =
            bytes.slice((range.start - window.start) as usize..(range.end - window.start) as usize);
        let mut fetched = lock();
        let replaced = fetched.ranges.insert(path, window.start, bytes);
        fetched.bytes = (fetched.bytes + (window.end - window.start)).saturating_sub(replaced);
        fetched.order.push_back((path.to_path_buf(), window.start));
        while fetched.bytes > FETCHED_CAP_BYTES {
            let Some((path, start)) = fetched.order.pop_front() else {
                break;
            };
            let freed = fetched.ranges.remove(&path, start);
            fetched.bytes = fetched.bytes.saturating_sub(freed);
        }
        Ok(wanted)
    }
}

/// One file of a split read in place.
struct SplitFileHandle {
    source: Arc<SplitSource>,
    path: PathBuf,
    file: SplitFile,
}

impl std::fmt::Debug for SplitFileHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.source.id, self.path.display())
    }
}

impl HasLen for SplitFileHandle {
    fn len(&self) -> usize {
        self.file.len as usize
    }
}

impl FileHandle for SplitFileHandle {
    fn read_bytes(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        self.source
            .read(&self.path, &self.file, range.start as u64..range.end as u64)
    }
}

fn read_only(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{} is in a split, which is never written", path.display()),
    )
}

impl Directory for SplitDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        let file = self.file(path)?.clone();
        Ok(Arc::new(SplitFileHandle {
            source: self.source.clone(),
            path: path.to_path_buf(),
            file,
        }))
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        Err(DeleteError::IoError {
            io_error: Arc::new(read_only(path)),
            filepath: path.to_path_buf(),
        })
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        Ok(self.source.files.contains_key(path))
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        Err(OpenWriteError::wrap_io_error(
            read_only(path),
            path.to_path_buf(),
        ))
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        let file = self.file(path)?;
        self.source
            .read(path, file, 0..file.len)
            .map(|bytes| bytes.as_slice().to_vec())
            .map_err(|e| OpenReadError::wrap_io_error(e, path.to_path_buf()))
    }

    fn atomic_write(&self, path: &Path, _data: &[u8]) -> io::Result<()> {
        Err(read_only(path))
    }

    fn sync_directory(&self) -> io::Result<()> {
        Ok(())
    }

    fn acquire_lock(&self, _lock: &Lock) -> Result<DirectoryLock, LockError> {
        // Locks keep writers apart, and nothing writes a split; readers take the meta lock
        // only while reading `meta.json`, which never changes here.
        Ok(DirectoryLock::from(Box::new(())))
    }

    fn watch(&self, _watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        // A split never changes.
        Ok(WatchHandle::empty())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A split held in memory, counting the requests made of it.
    struct InMemory {
        split: Vec<u8>,
        requests: AtomicUsize,
    }

    impl SplitFetcher for InMemory {
        fn fetch(&self, _id: &str, _dest: &Path) -> Result<(), String> {
            Err("not used".into())
        }

        fn read_range(&self, _id: &str, range: Range<u64>) -> Result<Vec<u8>, String> {
            self.requests.fetch_add(1, Ordering::SeqCst);
            self.split
                .get(range.start as usize..range.end as usize)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| "range not satisfiable".into())
        }

        fn read_tail(&self, _id: &str, len: u64) -> Result<(Vec<u8>, u64), String> {
            self.requests.fetch_add(1, Ordering::SeqCst);
            let start = self.split.len().saturating_sub(len as usize);
            Ok((self.split[start..].to_vec(), self.split.len() as u64))
        }
    }

    /// A window read next to one it overlaps keeps both: neither's bytes are read again.
    /// One it holds whole replaces.
    #[test]
    fn overlapping_ranges_are_both_kept_and_contained_ones_replaced() {
        let bytes =
            |range: Range<u64>| OwnedBytes::new(range.map(|i| i as u8).collect::<Vec<u8>>());
        let path = Path::new("a.fast");
        let mut ranges = Ranges::default();
        assert_eq!(ranges.insert(path, 100, bytes(100..200)), 0);
        assert_eq!(ranges.insert(path, 0, bytes(0..150)), 0);
        assert_eq!(
            ranges.find(path, &(160..190)).as_deref(),
            Some(&bytes(160..190)[..])
        );
        assert_eq!(
            ranges.find(path, &(10..140)).as_deref(),
            Some(&bytes(10..140)[..])
        );
        assert!(ranges.find(path, &(120..210)).is_none());
        assert_eq!(
            ranges.insert(path, 0, bytes(0..300)),
            250,
            "both held whole"
        );
        assert_eq!(
            ranges.find(path, &(120..210)).as_deref(),
            Some(&bytes(120..210)[..])
        );
    }

    /// When the first read does not reach back to the footer's start, or to the hot cache's,
    /// the rest is read; every file reads back as it was packed either way.
    #[test]
    fn a_tail_read_short_of_the_footer_and_hot_cache_is_completed() -> Result<(), IndexError> {
        let tmp = tempfile::tempdir()?;
        let src = tmp.path().join("src");
        std::fs::create_dir(&src)?;
        let files: [(&str, Vec<u8>); 2] = [
            ("small.json", b"{\"a\":1}".to_vec()),
            (
                "big.bin",
                (0..200_000u32).map(|i| (i % 251) as u8).collect(),
            ),
        ];
        for (name, bytes) in &files {
            std::fs::write(src.join(name), bytes)?;
        }
        let packed = tmp.path().join("x.split");
        split::pack(&src, &packed)?;
        let footer = split::read_footer(&packed)?;
        assert_eq!(footer.hot.len(), 1, "the small file is in the hot cache");
        let fetcher = Arc::new(InMemory {
            split: std::fs::read(&packed)?,
            requests: AtomicUsize::new(0),
        });
        for tail_read in [16, 40, TAIL_READ_BYTES] {
            fetcher.requests.store(0, Ordering::SeqCst);
            let directory = SplitDirectory::open_reading(fetcher.clone(), "x", tail_read)?;
            let opening = fetcher.requests.load(Ordering::SeqCst);
            assert_eq!(
                opening,
                if tail_read == TAIL_READ_BYTES { 1 } else { 3 },
                "tail {tail_read}"
            );
            let small = directory
                .atomic_read(Path::new("small.json"))
                .map_err(tantivy::TantivyError::from)?;
            assert_eq!(small, files[0].1, "from the hot cache");
            assert_eq!(fetcher.requests.load(Ordering::SeqCst), opening);
            let big = directory
                .atomic_read(Path::new("big.bin"))
                .map_err(tantivy::TantivyError::from)?;
            assert_eq!(big, files[1].1);
            assert_eq!(fetcher.requests.load(Ordering::SeqCst), opening + 1);
        }
        Ok(())
    }
}
