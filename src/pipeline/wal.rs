//! The write-ahead log: where an export request's rows become durable before weft acks them.
//!
//! The log is a sequence of segment files named by the position (LSN, a byte offset over the
//! whole log) of their first byte. Each entry is a frame `[len: u32 LE][crc32: u32 LE][payload]`;
//! the payload is one request's rows, `RowBatch::encode_packed` (each run of rows with one
//! service, resource and scope holds it once; entries written before packing read the same).
//! A crash can leave a torn frame at the end of the last segment; opening the log truncates it,
//! which is safe because a torn frame was never fsynced and so never acknowledged.
//!
//! A failed write or fsync leaves the log as it was at the last successful fsync: the file is
//! cut back (and that cut fsynced) before anything else is appended, so what is acknowledged
//! later never sits behind a torn frame. If even the cut fails, the log refuses to append until
//! [`Wal::repair`] succeeds.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use weft_index::faults::Faults;

const FRAME_HEADER: u64 = 8;
const SEGMENT_SUFFIX: &str = ".wal";
/// Frames larger than this are treated as corruption rather than allocated.
const MAX_FRAME_BYTES: u32 = 512 * 1024 * 1024;

/// Errors of the write-ahead log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The file system failed.
    #[error("write-ahead log i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A frame before the end of the log is damaged.
    #[error("write-ahead log segment {path} is damaged at offset {offset}")]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// Offset of the damaged frame inside it.
        offset: u64,
    },
    /// An earlier failure could not be undone; nothing is appended until it is.
    #[error("write-ahead log needs repair after an earlier failure: {0}")]
    NeedsRepair(String),
}

/// The log, opened for appending.
pub struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    /// Base LSNs of all segments, ascending; the last is the active one.
    segments: Vec<u64>,
    active: File,
    /// LSN just past the last frame.
    end: u64,
    /// LSN just past the last frame known durable; failures cut the log back to it.
    synced_end: u64,
    /// Why the last cut-back failed, while the file may hold bytes past `synced_end`.
    broken: Option<String>,
    faults: Option<Arc<Faults>>,
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}{SEGMENT_SUFFIX}"))
}

fn list_segments(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(base) = name
            .to_str()
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
            .and_then(|n| n.parse::<u64>().ok())
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Reads one frame at the reader's position. `Ok(None)` at a clean end, or at a torn or
/// damaged frame (the caller decides whether that is acceptable where it happened).
pub(crate) fn read_frame(reader: &mut impl Read) -> Result<Option<Vec<u8>>, WalError> {
    let mut header = [0u8; FRAME_HEADER as usize];
    match read_full(reader, &mut header)? {
        0 => return Ok(None),
        n if n < header.len() => return Ok(None),
        _ => {}
    }
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    if len > MAX_FRAME_BYTES {
        return Ok(None);
    }
    let mut payload = vec![0u8; len as usize];
    if read_full(reader, &mut payload)? < payload.len() {
        return Ok(None);
    }
    if crc32fast::hash(&payload) != crc {
        return Ok(None);
    }
    Ok(Some(payload))
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads every entry in `[from, to)` of the log in `dir`, calling `visit(start, end, payload)`
/// for each. `from` must be an entry boundary (an index checkpoint is one) and `to` a durable
/// position (the end of an acknowledged entry): every frame in between must be intact.
///
/// Safe while another thread appends: bytes before a durable position never change.
pub fn read_range<E: From<WalError>>(
    dir: &Path,
    from: u64,
    to: u64,
    mut visit: impl FnMut(u64, u64, Vec<u8>) -> Result<(), E>,
) -> Result<usize, E> {
    let segments = list_segments(dir)?;
    let mut count = 0;
    let io = |e: std::io::Error| E::from(WalError::Io(e));
    for (i, &base) in segments.iter().enumerate() {
        let next_base = segments.get(i + 1).copied().unwrap_or(u64::MAX);
        if next_base <= from {
            continue;
        }
        if base >= to {
            break;
        }
        let path = segment_path(dir, base);
        let mut file = File::open(&path).map_err(io)?;
        let mut offset = from.saturating_sub(base);
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        while base + offset < to.min(next_base) {
            match read_frame(&mut reader)? {
                Some(payload) => {
                    let len = FRAME_HEADER + payload.len() as u64;
                    visit(base + offset, base + offset + len, payload)?;
                    offset += len;
                    count += 1;
                }
                None => return Err(WalError::Corrupt { path, offset }.into()),
            }
        }
    }
    Ok(count)
}

impl Wal {
    /// Opens the log in `dir` (creating it), truncating a torn tail. New entries start at the
    /// returned log's [`Wal::end`]; if the log is empty it starts at `min_start`, so positions
    /// never go backwards relative to an index checkpoint.
    pub fn open(dir: &Path, segment_bytes: u64, min_start: u64) -> Result<Self, WalError> {
        Self::open_with_faults(dir, segment_bytes, min_start, None)
    }

    /// [`Wal::open`], writing through `faults` (tests make writes and fsyncs fail with it).
    pub fn open_with_faults(
        dir: &Path,
        segment_bytes: u64,
        min_start: u64,
        faults: Option<Arc<Faults>>,
    ) -> Result<Self, WalError> {
        std::fs::create_dir_all(dir)?;
        let mut segments = list_segments(dir)?;
        if segments.is_empty() {
            let base = min_start;
            File::create(segment_path(dir, base))?.sync_all()?;
            sync_dir(dir)?;
            segments.push(base);
        }
        let last = *segments.last().expect("at least one segment");
        let path = segment_path(dir, last);
        let valid = Self::valid_length(&path)?;
        let mut active = OpenOptions::new().read(true).write(true).open(&path)?;
        if active.metadata()?.len() != valid {
            tracing::warn!(
                segment = %path.display(),
                valid_bytes = valid,
                "truncating torn write-ahead log tail"
            );
            active.set_len(valid)?;
            active.sync_all()?;
        }
        active.seek(SeekFrom::End(0))?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            segment_bytes,
            segments,
            active,
            end: last + valid,
            synced_end: last + valid,
            broken: None,
            faults,
        })
    }

    /// Length of the prefix of a segment made of whole, intact frames.
    fn valid_length(path: &Path) -> Result<u64, WalError> {
        let mut reader = BufReader::new(File::open(path)?);
        let mut offset = 0;
        while let Some(payload) = read_frame(&mut reader)? {
            offset += FRAME_HEADER + payload.len() as u64;
        }
        Ok(offset)
    }

    /// LSN just past the last entry.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// The directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes held by all segments.
    pub fn disk_bytes(&self) -> u64 {
        self.end - self.segments.first().copied().unwrap_or(self.end)
    }

    /// Appends one entry (not yet durable: call [`Wal::sync`]). Returns its `[start, end)`.
    /// On failure every entry appended since the last sync is cut away.
    pub fn append(&mut self, payload: &[u8]) -> Result<(u64, u64), WalError> {
        self.repair()?;
        let result = self.append_frame(payload);
        if result.is_err() {
            self.cut_back();
        }
        result
    }

    fn append_frame(&mut self, payload: &[u8]) -> Result<(u64, u64), WalError> {
        let base = *self.segments.last().expect("at least one segment");
        if self.end > base && self.end - base >= self.segment_bytes {
            self.rotate()?;
        }
        let len = u32::try_from(payload.len()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "entry larger than 4 GiB")
        })?;
        let mut header = [0u8; FRAME_HEADER as usize];
        header[0..4].copy_from_slice(&len.to_le_bytes());
        header[4..8].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
        match &self.faults {
            Some(faults) => {
                faults.write_all(&mut self.active, &header)?;
                faults.write_all(&mut self.active, payload)?;
            }
            None => {
                self.active.write_all(&header)?;
                self.active.write_all(payload)?;
            }
        }
        let start = self.end;
        self.end += FRAME_HEADER + payload.len() as u64;
        Ok((start, self.end))
    }

    /// Makes every appended entry durable. On failure none of the entries appended since the
    /// last sync is kept: the log is cut back to it.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.repair()?;
        if self.synced_end == self.end {
            return Ok(());
        }
        let result = self.sync_active();
        match result {
            Ok(()) => {
                self.synced_end = self.end;
                Ok(())
            }
            Err(error) => {
                self.cut_back();
                Err(error)
            }
        }
    }

    fn sync_active(&mut self) -> Result<(), WalError> {
        if let Some(faults) = &self.faults {
            faults.wal_sync()?;
        }
        self.active.sync_data()?;
        Ok(())
    }

    /// Cuts the active segment back to the last durable position and makes the cut durable.
    /// If that fails the log is marked broken and refuses to append until [`Wal::repair`]
    /// succeeds.
    fn cut_back(&mut self) {
        let base = *self.segments.last().expect("at least one segment");
        // Every entry since the last sync is in the active segment: rotation syncs first.
        debug_assert!(self.synced_end >= base);
        let keep = self.synced_end.saturating_sub(base);
        let result = (|| -> std::io::Result<()> {
            self.active.set_len(keep)?;
            self.active.seek(SeekFrom::Start(keep))?;
            if let Some(faults) = &self.faults {
                faults.wal_sync()?;
            }
            self.active.sync_all()
        })();
        self.end = self.synced_end;
        match result {
            Ok(()) => self.broken = None,
            Err(error) => {
                tracing::error!(%error, "cutting the write-ahead log back after a failure failed");
                self.broken = Some(error.to_string());
            }
        }
    }

    /// Whether an earlier failure is still not undone.
    pub fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    /// Undoes an earlier failure's leftovers (cuts the file back to the last durable entry and
    /// fsyncs). A no-op when nothing needs undoing.
    pub fn repair(&mut self) -> Result<(), WalError> {
        if self.broken.is_none() {
            return Ok(());
        }
        self.cut_back();
        match &self.broken {
            None => Ok(()),
            Some(why) => Err(WalError::NeedsRepair(why.clone())),
        }
    }

    fn rotate(&mut self) -> Result<(), WalError> {
        // Everything so far must be durable before a new segment starts, so that a failure
        // later only ever cuts back inside the active segment.
        if self.synced_end != self.end {
            self.sync_active()?;
            self.synced_end = self.end;
        }
        let base = self.end;
        // A failed rotation may have left this (empty) file behind: truncating it is safe.
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(segment_path(&self.dir, base))?;
        sync_dir(&self.dir)?;
        self.active = file;
        self.segments.push(base);
        Ok(())
    }

    /// Deletes segments whose every entry lies before `lsn` (they are indexed and committed).
    /// The active segment is kept.
    pub fn remove_before(&mut self, lsn: u64) -> Result<usize, WalError> {
        let mut removed = 0;
        while self.segments.len() > 1 && self.segments[1] <= lsn {
            let base = self.segments[0];
            std::fs::remove_file(segment_path(&self.dir, base))?;
            self.segments.remove(0);
            removed += 1;
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// Reads every entry from `from` onwards, calling `visit(start, end, payload)` for each.
    /// `from` must be an entry boundary (an index checkpoint is one).
    pub fn replay(
        &self,
        from: u64,
        mut visit: impl FnMut(u64, u64, Vec<u8>),
    ) -> Result<usize, WalError> {
        read_range::<WalError>(&self.dir, from, self.synced_end, |start, end, payload| {
            visit(start, end, payload);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use weft_index::faults::Fault;

    fn collect(wal: &Wal, from: u64) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        wal.replay(from, |start, _, p| out.push((start, p)))
            .unwrap();
        out
    }

    #[test]
    fn entries_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), 1 << 20, 0).unwrap();
        let (s1, e1) = wal.append(b"one").unwrap();
        let (s2, _) = wal.append(b"two").unwrap();
        wal.sync().unwrap();
        drop(wal);
        let wal = Wal::open(dir.path(), 1 << 20, 0).unwrap();
        assert_eq!(
            collect(&wal, 0),
            vec![(s1, b"one".to_vec()), (s2, b"two".to_vec())]
        );
        assert_eq!(collect(&wal, e1), vec![(s2, b"two".to_vec())]);
    }

    #[test]
    fn torn_tail_is_truncated_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), 1 << 20, 0).unwrap();
        wal.append(b"kept").unwrap();
        wal.sync().unwrap();
        let end = wal.end();
        drop(wal);
        let path = segment_path(dir.path(), 0);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);
        let mut wal = Wal::open(dir.path(), 1 << 20, 0).unwrap();
        assert_eq!(wal.end(), end);
        wal.append(b"next").unwrap();
        wal.sync().unwrap();
        let payloads: Vec<_> = collect(&wal, 0).into_iter().map(|(_, p)| p).collect();
        assert_eq!(payloads, vec![b"kept".to_vec(), b"next".to_vec()]);
    }

    #[test]
    fn empty_log_starts_at_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), 1 << 20, 5000).unwrap();
        assert_eq!(wal.end(), 5000);
        let (start, _) = wal.append(b"x").unwrap();
        assert_eq!(start, 5000);
    }

    #[test]
    fn rotation_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), 64, 0).unwrap();
        let mut ends = Vec::new();
        for i in 0..20u8 {
            ends.push(wal.append(&[i; 30]).unwrap().1);
        }
        wal.sync().unwrap();
        assert!(wal.segments.len() > 5);
        let removed = wal.remove_before(ends[10]).unwrap();
        assert!(removed > 0);
        let left = collect(&wal, ends[10]);
        assert_eq!(left.len(), 9);
        assert_eq!(left[0].1, vec![11u8; 30]);
        drop(wal);
        let wal = Wal::open(dir.path(), 64, 0).unwrap();
        assert_eq!(collect(&wal, ends[10]).len(), 9);
    }

    /// Regression: a write that failed midway (disk full) left the file offset past the log's
    /// end, so entries appended and acknowledged later sat behind a torn frame and were cut off
    /// as a "torn tail" at the next start.
    #[test]
    fn a_failed_append_leaves_the_log_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::none();
        let mut wal = Wal::open_with_faults(dir.path(), 1 << 20, 0, Some(faults.clone())).unwrap();
        wal.append(b"before").unwrap();
        wal.sync().unwrap();
        let durable = wal.end();
        faults.set_space_left(Some(20));
        wal.append(b"fits").unwrap();
        let err = wal.append(&[7u8; 100]).unwrap_err();
        assert!(err.to_string().contains("space"), "{err}");
        assert_eq!(wal.end(), durable, "cut back to the last sync");
        assert_eq!(
            std::fs::metadata(segment_path(dir.path(), 0))
                .unwrap()
                .len(),
            durable
        );
        faults.set_space_left(None);
        let (start, _) = wal.append(b"after").unwrap();
        assert_eq!(start, durable);
        wal.sync().unwrap();
        drop(wal);
        let wal = Wal::open(dir.path(), 1 << 20, 0).unwrap();
        let payloads: Vec<_> = collect(&wal, 0).into_iter().map(|(_, p)| p).collect();
        assert_eq!(payloads, vec![b"before".to_vec(), b"after".to_vec()]);
    }

    #[test]
    fn a_failed_fsync_drops_the_unsynced_entries() {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::none();
        let mut wal = Wal::open_with_faults(dir.path(), 1 << 20, 0, Some(faults.clone())).unwrap();
        wal.append(b"one").unwrap();
        wal.sync().unwrap();
        let durable = wal.end();
        wal.append(b"lost").unwrap();
        faults.set(Fault::WalSyncError, true);
        assert!(wal.sync().is_err());
        // The cut itself needs an fsync, which fails too: the log refuses to append until it
        // can be repaired.
        assert!(wal.is_broken());
        assert!(matches!(
            wal.append(b"refused"),
            Err(WalError::NeedsRepair(_))
        ));
        faults.set(Fault::WalSyncError, false);
        wal.repair().unwrap();
        assert_eq!(wal.end(), durable);
        wal.append(b"two").unwrap();
        wal.sync().unwrap();
        drop(wal);
        let wal = Wal::open(dir.path(), 1 << 20, 0).unwrap();
        let payloads: Vec<_> = collect(&wal, 0).into_iter().map(|(_, p)| p).collect();
        assert_eq!(payloads, vec![b"one".to_vec(), b"two".to_vec()]);
    }

    #[test]
    fn read_range_stops_at_the_bound_and_reports_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), 64, 0).unwrap();
        let mut ends = Vec::new();
        for i in 0..10u8 {
            ends.push(wal.append(&[i; 30]).unwrap().1);
        }
        wal.sync().unwrap();
        let mut seen = Vec::new();
        read_range::<WalError>(dir.path(), ends[2], ends[6], |_, _, p| {
            seen.push(p[0]);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![3, 4, 5, 6]);
        // Damage inside the durable range is an error, not a silent end.
        let first = segment_path(dir.path(), 0);
        let mut bytes = std::fs::read(&first).unwrap();
        bytes[10] ^= 0xff;
        std::fs::write(&first, bytes).unwrap();
        let err = read_range::<WalError>(dir.path(), 0, ends[6], |_, _, _| Ok(())).unwrap_err();
        assert!(matches!(err, WalError::Corrupt { .. }), "{err}");
    }

    proptest! {
        /// Whatever is appended and synced, then torn at any byte after the last sync, replays
        /// as exactly the synced entries, in order, once each.
        #[test]
        fn replay_yields_synced_entries_once(
            entries in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..40),
            synced_count in 0usize..40,
            tear in 0usize..400,
            segment_bytes in 64u64..2048,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let synced_count = synced_count.min(entries.len());
            let mut wal = Wal::open(dir.path(), segment_bytes, 0).unwrap();
            for e in &entries[..synced_count] {
                wal.append(e).unwrap();
            }
            wal.sync().unwrap();
            let synced_end = wal.end();
            for e in &entries[synced_count..] {
                wal.append(e).unwrap();
            }
            wal.sync().unwrap();
            let last_base = *wal.segments.last().unwrap();
            drop(wal);
            // Simulate a crash that lost part of what followed the sync point.
            let path = segment_path(dir.path(), last_base);
            let len = std::fs::metadata(&path).unwrap().len();
            let keep = (synced_end.saturating_sub(last_base) + tear as u64).min(len);
            if synced_end >= last_base {
                OpenOptions::new().write(true).open(&path).unwrap().set_len(keep).unwrap();
            }
            let wal = Wal::open(dir.path(), segment_bytes, 0).unwrap();
            let replayed: Vec<Vec<u8>> = collect(&wal, 0).into_iter().map(|(_, p)| p).collect();
            prop_assert!(replayed.len() >= synced_count);
            prop_assert_eq!(&replayed[..], &entries[..replayed.len()]);
        }
    }
}
