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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_each_field_per_part_and_the_totals_per_record() {
        let mut f = Footprint {
            docs: 4,
            partitions: 1,
            on_disk: 1000,
            ..Default::default()
        };
        for (part, field, bytes) in [
            ("store", "(all)", 400),
            ("termdict", "trace_id", 200),
            ("postings", "trace_id", 40),
            ("termdict", "body", 80),
        ] {
            f.bytes.insert((part.into(), field.into()), bytes);
        }
        let text = render("logs", &f);
        let line = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("no line for {name} in\n{text}"))
                .split_whitespace()
                .skip(1)
                .map(String::from)
                .collect::<Vec<_>>()
        };
        assert!(text.starts_with("logs: 4 records in 1 partitions, 1000 bytes on disk (250.0"));
        // Fields sorted by bytes: store's 100 per record first, then trace_id's 50 + 10.
        assert_eq!(line("(all)"), ["100.00", "100.00"]);
        assert_eq!(line("trace_id"), ["50.00", "10.00", "60.00"]);
        assert_eq!(line("body"), ["20.00", "20.00"]);
        let order: Vec<&str> = text
            .lines()
            .skip(2)
            .take(3)
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        assert_eq!(order, ["(all)", "trace_id", "body"]);
        assert_eq!(
            line("not in segments").last().map(String::as_str),
            Some("70.00")
        );
    }
}
