//! Rows found by scanning a u64 column instead of reading postings: format 3's span ID
//! lookups, and the filters it answers from dictionary-encoded columns (`query::columns`).

use std::ops::RangeInclusive;

use tantivy::columnar::Column;
use tantivy::{DocId, DocSet, TERMINATED};

/// Rows of a segment whose value in a u64 column is in `range` and passes `accept`, read a
/// window of rows at a time (the column's own range scan). It is positioned on its first
/// match when made, so it reads from the segment's first row up to that match even when
/// joined with a rarer query (`trace_id:… span_id:…`); after that, a seek past the window
/// read skips the rows between.
pub(crate) struct ColumnScan {
    column: Column<u64>,
    range: RangeInclusive<u64>,
    accept: Box<dyn Fn(u64) -> bool + Send>,
    max_doc: DocId,
    /// First row after the window `found` was read from.
    window_end: DocId,
    found: Vec<DocId>,
    at: usize,
}

impl ColumnScan {
    /// Rows per read of the column.
    const WINDOW: DocId = 8192;

    /// A scan of the `max_doc` rows of a segment, positioned on the first match.
    pub(crate) fn new(
        column: Column<u64>,
        range: RangeInclusive<u64>,
        accept: impl Fn(u64) -> bool + Send + 'static,
        max_doc: DocId,
    ) -> Self {
        let mut scan = ColumnScan {
            column,
            range,
            accept: Box::new(accept),
            max_doc,
            window_end: 0,
            found: Vec::new(),
            at: 0,
        };
        scan.read_from(0);
        scan
    }

    /// Reads windows from `start` until one holds a match or the segment ends.
    fn read_from(&mut self, start: DocId) {
        let mut start = start;
        self.found.clear();
        self.at = 0;
        while self.found.is_empty() && start < self.max_doc {
            let end = start.saturating_add(Self::WINDOW).min(self.max_doc);
            self.column
                .get_docids_for_value_range(self.range.clone(), start..end, &mut self.found);
            // Each row is checked again: the column's range scan may hand back a row holding
            // its minimum for a value below it (seen with tantivy 0.27's bitpacked codec), and
            // a range may hold values `accept` refuses.
            let (column, accept) = (&self.column, &self.accept);
            self.found
                .retain(|&doc| column.first(doc).is_some_and(accept));
            start = end;
        }
        self.window_end = start;
    }
}

impl DocSet for ColumnScan {
    fn advance(&mut self) -> DocId {
        self.at += 1;
        if self.at >= self.found.len() {
            self.read_from(self.window_end);
        }
        self.doc()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if self.doc() >= target {
            return self.doc();
        }
        if target < self.window_end {
            // Within the window already read: its matches are sorted.
            self.at = self.found.partition_point(|&doc| doc < target);
            if self.at < self.found.len() {
                return self.doc();
            }
            self.read_from(self.window_end);
        } else {
            self.read_from(target);
        }
        self.doc()
    }

    fn doc(&self) -> DocId {
        self.found.get(self.at).copied().unwrap_or(TERMINATED)
    }

    fn size_hint(&self) -> u32 {
        // Unknown without reading the column; an upper bound makes an intersection lead with
        // the other side.
        self.max_doc.saturating_sub(self.doc().min(self.max_doc))
    }
}
