//! `weft inspect`: where a data directory's bytes go, per signal, per part of the index format
//! and per field, as bytes and bytes per record. Reads committed data only; safe beside a
//! running weft.

use std::fmt::Write;
use std::path::Path;

use weft_index::Signal;
use weft_index::footprint::{Footprint, footprint};

/// The footprint of both signals under `data_dir`, as a table.
pub fn report(data_dir: &Path) -> anyhow::Result<String> {
    let index = data_dir.join("index");
    let mut out = String::new();
    for signal in [Signal::Logs, Signal::Spans] {
        let f = footprint(&index, signal)?;
        out.push_str(&render(signal.dir_name(), &f));
    }
    Ok(out)
}

fn per(bytes: u64, docs: u64) -> f64 {
    if docs == 0 {
        0.0
    } else {
        bytes as f64 / docs as f64
    }
}

/// One signal's table: totals, then every field with its bytes in each part.
pub fn render(name: &str, f: &Footprint) -> String {
    const PARTS: [&str; 6] = [
        "store",
        "termdict",
        "postings",
        "positions",
        "fast",
        "fieldnorms",
    ];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{name}: {} records in {} partitions, {} bytes on disk ({:.1} per record)",
        f.docs,
        f.partitions,
        f.on_disk,
        per(f.on_disk, f.docs)
    );
    if f.docs == 0 {
        return out;
    }
    let _ = write!(out, "{:<28}", "bytes per record");
    for part in PARTS {
        let _ = write!(out, "{part:>11}");
    }
    let _ = writeln!(out, "{:>11}", "total");
    let mut fields: Vec<(&str, u64)> = f.by_field().into_iter().collect();
    fields.sort_by_key(|(_, bytes)| std::cmp::Reverse(*bytes));
    for (field, total) in fields {
        let _ = write!(out, "{field:<28}");
        for part in PARTS {
            let bytes = f
                .bytes
                .get(&(part.to_string(), field.to_string()))
                .copied()
                .unwrap_or(0);
            if bytes == 0 {
                let _ = write!(out, "{:>11}", "");
            } else {
                let _ = write!(out, "{:>11.2}", per(bytes, f.docs));
            }
        }
        let _ = writeln!(out, "{:>11.2}", per(total, f.docs));
    }
    let parts = f.by_part();
    let _ = write!(out, "{:<28}", "all fields");
    for part in PARTS {
        let _ = write!(
            out,
            "{:>11.2}",
            per(parts.get(part).copied().unwrap_or(0), f.docs)
        );
    }
    let _ = writeln!(out, "{:>11.2}", per(f.total(), f.docs));
    let other = f.on_disk.saturating_sub(f.total());
    let _ = writeln!(
        out,
        "{:<28}{:>77.2}\n",
        "not in segments (meta, locks)",
        per(other, f.docs)
    );
    out
}
