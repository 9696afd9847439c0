//! Where the index's bytes go: for each signal, summed over every partition, the bytes of each
//! part of tantivy's format (term dictionary, postings, positions, fast columns, field norms,
//! the document store) per field. `weft inspect` prints it; the benchmark reports it.

use std::collections::BTreeMap;
use std::path::Path;

use tantivy::Index;

use crate::Signal;
use crate::error::IndexError;
use crate::partition;

/// One signal's bytes, by part and field.
#[derive(Debug, Default, Clone)]
pub struct Footprint {
    /// Documents (rows) in all partitions.
    pub docs: u64,
    /// Partitions looked at.
    pub partitions: usize,
    /// Bytes by (part, field): parts are `termdict`, `postings`, `positions`, `fast`,
    /// `fieldnorms`; the document store is `store` with field `(all)`.
    pub bytes: BTreeMap<(String, String), u64>,
    /// Bytes of the partitions' directories on disk, whatever tantivy accounts for.
    pub on_disk: u64,
}

impl Footprint {
    /// Bytes tantivy accounts for.
    pub fn total(&self) -> u64 {
        self.bytes.values().sum()
    }

    /// Bytes per part, summed over fields.
    pub fn by_part(&self) -> BTreeMap<&str, u64> {
        let mut parts = BTreeMap::new();
        for ((part, _), bytes) in &self.bytes {
            *parts.entry(part.as_str()).or_insert(0) += bytes;
        }
        parts
    }

    /// Bytes per field, summed over parts.
    pub fn by_field(&self) -> BTreeMap<&str, u64> {
        let mut fields = BTreeMap::new();
        for ((_, field), bytes) in &self.bytes {
            *fields.entry(field.as_str()).or_insert(0) += bytes;
        }
        fields
    }
}

fn dir_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// The footprint of `signal` in the index under `root` (the directory `Store::open` takes).
/// Reads committed segments only, without taking a writer's lock, so it may run beside weft.
pub fn footprint(root: &Path, signal: Signal) -> Result<Footprint, IndexError> {
    let mut out = Footprint::default();
    let dir = root.join(signal.dir_name());
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(out);
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_str().and_then(partition::parse_dir_name).is_none() {
            continue;
        }
        let index = Index::open_in_dir(entry.path())?;
        let searcher = index.reader()?.searcher();
        out.partitions += 1;
        out.on_disk += dir_bytes(&entry.path());
        for segment in searcher.space_usage()?.segments() {
            out.docs += u64::from(segment.num_docs());
            let parts = [
                ("termdict", segment.termdict()),
                ("postings", segment.postings()),
                ("positions", segment.positions()),
                ("fast", segment.fast_fields()),
                ("fieldnorms", segment.fieldnorms()),
            ];
            for (part, usage) in parts {
                for field in usage.fields() {
                    let key = (part.to_string(), field.field_name().to_string());
                    *out.bytes.entry(key).or_insert(0) += field.total().get_bytes();
                }
            }
            let store = ("store".to_string(), "(all)".to_string());
            *out.bytes.entry(store).or_insert(0) += segment.store().total().get_bytes();
        }
    }
    Ok(out)
}
