//! `pattern:"user <*> logged in"`: the log records whose body fits a template
//! (`crate::templates`).
//!
//! The index narrows first: a record that fits holds every word of the template's constant
//! tokens, so the body's postings for those words (all of them) pick the candidates. Each
//! candidate's body is then read from the doc store and masked as the clustering masks it,
//! and kept when it has the template's length and constant tokens. Reading bodies is what a
//! pattern filter costs, in proportion to the candidates; the words keep them few.

use std::sync::Arc;

use prost::Message;
use tantivy::query::{
    AllQuery, BooleanQuery, EnableScoring, Explanation, Occur, Query, Scorer, TermQuery, Weight,
};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::store::StoreReader;
use tantivy::{DocId, DocSet, Score, SegmentReader, TERMINATED, TantivyDocument, Term};

use super::compile::text_tokens;
use crate::log_fields;
use crate::model::LogRow;
use crate::templates::{WILDCARD, body_matches};

/// Doc store blocks a filter keeps decompressed per segment: candidates come in order, so the
/// block of the last one is most often the block of the next.
const STORE_CACHE_BLOCKS: usize = 4;

/// The body, alone, of a stored log row (field 7 of `LogRow`).
#[derive(Clone, PartialEq, Message)]
struct StoredBody {
    #[prost(message, optional, tag = "7")]
    body: Option<opentelemetry_proto::tonic::common::v1::AnyValue>,
}

/// The text of a stored row's body.
pub(crate) fn stored_body(stored: &[u8]) -> Result<String, prost::DecodeError> {
    Ok(LogRow {
        body: StoredBody::decode(stored)?.body,
        ..Default::default()
    }
    .body_text())
}

/// The filter: candidates from the words, confirmed on the body.
#[derive(Clone, Debug)]
pub(crate) struct TemplateFilter {
    template: Arc<Vec<String>>,
    words: Vec<String>,
}

impl TemplateFilter {
    /// The filter of `template` (tokens as `crate::templates::parse_template` gives them).
    pub(crate) fn new(template: Vec<String>) -> Self {
        let mut words: Vec<String> = template
            .iter()
            .flat_map(|token| {
                token
                    .split(WILDCARD)
                    .flat_map(text_tokens)
                    .collect::<Vec<_>>()
            })
            .collect();
        words.sort();
        words.dedup();
        TemplateFilter {
            template: Arc::new(template),
            words,
        }
    }

    fn candidates(&self) -> Box<dyn Query> {
        if self.words.is_empty() {
            return Box::new(AllQuery);
        }
        let body = log_fields().body;
        Box::new(BooleanQuery::new(
            self.words
                .iter()
                .map(|w| {
                    let q: Box<dyn Query> = Box::new(TermQuery::new(
                        Term::from_field_text(body, w),
                        IndexRecordOption::Basic,
                    ));
                    (Occur::Must, q)
                })
                .collect(),
        ))
    }
}

impl Query for TemplateFilter {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(TemplateWeight {
            candidates: self.candidates().weight(enable_scoring)?,
            template: self.template.clone(),
        }))
    }
}

struct TemplateWeight {
    candidates: Box<dyn Weight>,
    template: Arc<Vec<String>>,
}

impl Weight for TemplateWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let mut scorer = TemplateScorer {
            candidates: self.candidates.scorer(reader, boost)?,
            store: reader.get_store_reader(STORE_CACHE_BLOCKS)?,
            template: self.template.clone(),
        };
        scorer.settle();
        Ok(Box::new(scorer))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.seek(doc) != doc {
            return Err(tantivy::TantivyError::InvalidArgument(format!(
                "document {doc} does not fit the template"
            )));
        }
        Ok(Explanation::new("fits the template", 1.0))
    }
}

struct TemplateScorer {
    candidates: Box<dyn Scorer>,
    store: StoreReader,
    template: Arc<Vec<String>>,
}

impl TemplateScorer {
    /// Whether the candidate `doc` fits. A row the store cannot give back is kept: a scorer
    /// has no way to fail, and reading that row for the answer then fails loudly, where
    /// dropping it would hide it without a word.
    fn fits(&self, doc: DocId) -> bool {
        let Ok(stored) = self.store.get::<TantivyDocument>(doc) else {
            return true;
        };
        let bytes = stored
            .get_first(log_fields().source)
            .and_then(|v| v.as_bytes())
            .unwrap_or_default();
        stored_body(bytes).is_ok_and(|body| body_matches(&self.template, &body))
    }

    /// Moves to the first candidate at or after the current one that fits.
    fn settle(&mut self) -> DocId {
        loop {
            let doc = self.candidates.doc();
            if doc == TERMINATED || self.fits(doc) {
                return doc;
            }
            self.candidates.advance();
        }
    }
}

impl DocSet for TemplateScorer {
    fn advance(&mut self) -> DocId {
        self.candidates.advance();
        self.settle()
    }

    fn doc(&self) -> DocId {
        self.candidates.doc()
    }

    fn size_hint(&self) -> u32 {
        self.candidates.size_hint()
    }
}

impl Scorer for TemplateScorer {
    fn score(&mut self) -> Score {
        1.0
    }
}
