//! How the answers of [`super::node::NodeQueries`] travel between nodes: JSON over the HTTP
//! API every node already serves (`crate::api::internal` answers, `super::fanout::RemoteNode`
//! asks). Rows go as a protobuf `RowBatch` in base64, the same lossless encoding as the WAL.
//! Both ends convert here, so the two stay one format.

use std::collections::BTreeMap;

use base64::Engine;
use prost::Message;
use serde::{Deserialize, Serialize};
use weft_index::query::Expr;
use weft_index::store::PartitionRef;
use weft_index::{Candidates, LogSearch, RowBatch, Signal, SummaryPart, TraceCandidate};

use super::node::{NodeAnswer, Rows};

/// A node's answer on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireAnswer<W> {
    /// The node that answers (empty when it has no cluster name).
    pub node: String,
    /// Its part of the answer.
    pub value: W,
    /// The partitions it read.
    pub covers: Vec<CoveredPartition>,
}

/// A partition an answer covers.
#[derive(Debug, Serialize, Deserialize)]
pub struct CoveredPartition {
    /// `logs` or `spans`.
    pub signal: String,
    /// The start of its hour.
    pub start_unix_nano: u64,
    /// Which part of it.
    pub part: u32,
}

impl<W> WireAnswer<W> {
    /// `answer` for the wire, its part made a `W` by `encode`.
    pub fn encode<T>(answer: NodeAnswer<T>, encode: impl FnOnce(T) -> W) -> Self {
        WireAnswer {
            node: answer.node,
            value: encode(answer.value),
            covers: answer
                .covers
                .iter()
                .map(|p| CoveredPartition {
                    signal: p.signal.dir_name().to_string(),
                    start_unix_nano: p.start_unix_nano,
                    part: p.part,
                })
                .collect(),
        }
    }

    /// The answer of node `node`, its part made a `T` by `decode`.
    pub fn decode<T>(
        self,
        node: &str,
        decode: impl FnOnce(W) -> Result<T, String>,
    ) -> Result<NodeAnswer<T>, String> {
        let covers = self
            .covers
            .into_iter()
            .map(|c| {
                let signal = match c.signal.as_str() {
                    "logs" => Signal::Logs,
                    "spans" => Signal::Spans,
                    other => return Err(format!("unknown signal '{other}'")),
                };
                Ok(PartitionRef {
                    signal,
                    start_unix_nano: c.start_unix_nano,
                    part: c.part,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(NodeAnswer {
            node: node.to_string(),
            value: decode(self.value)?,
            covers,
        })
    }
}

/// Rows on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireRows {
    /// A `RowBatch`, protobuf, base64.
    pub rows: String,
    /// See [`Rows::more`].
    pub more: bool,
}

impl From<Rows> for WireRows {
    fn from(rows: Rows) -> Self {
        WireRows {
            rows: encode_batch(&rows.rows),
            more: rows.more,
        }
    }
}

impl TryFrom<WireRows> for Rows {
    type Error = String;

    fn try_from(wire: WireRows) -> Result<Self, String> {
        Ok(Rows {
            rows: decode_batch(&wire.rows)?,
            more: wire.more,
        })
    }
}

fn encode_batch(batch: &RowBatch) -> String {
    base64::engine::general_purpose::STANDARD.encode(batch.encode_to_vec())
}

fn decode_batch(text: &str) -> Result<RowBatch, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("rows are not base64: {e}"))?;
    RowBatch::decode(bytes.as_slice()).map_err(|e| format!("rows do not decode: {e}"))
}

/// A log search on the wire (`POST /api/v1/internal/logs`).
#[derive(Debug, Serialize, Deserialize)]
pub struct LogsQuestion {
    pub query: Option<Expr>,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub limit: usize,
    /// A cursor as `LogCursor::encode` writes it.
    pub cursor: Option<String>,
}

impl From<&LogSearch> for LogsQuestion {
    fn from(search: &LogSearch) -> Self {
        LogsQuestion {
            query: search.query.clone(),
            start_unix_nano: search.start_unix_nano,
            end_unix_nano: search.end_unix_nano,
            limit: search.limit,
            cursor: search.cursor.map(|c| c.encode()),
        }
    }
}

/// A trace search's candidates asked for on the wire (`POST
/// /api/v1/internal/trace-candidates`): the spans' query and range.
#[derive(Debug, Serialize, Deserialize)]
pub struct CandidatesQuestion {
    pub query: Option<Expr>,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
}

/// Candidate traces on the wire: (trace ID in hex, start of its newest matching span there).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WireCandidates {
    pub traces: Vec<(String, u64)>,
    /// More matched than a search examines.
    pub capped: bool,
}

impl From<Candidates> for WireCandidates {
    fn from(found: Candidates) -> Self {
        WireCandidates {
            traces: found
                .traces
                .iter()
                .map(|c| (hex::encode(c.trace_id), c.newest_match_unix_nano))
                .collect(),
            capped: found.capped,
        }
    }
}

impl TryFrom<WireCandidates> for Candidates {
    type Error = String;

    fn try_from(wire: WireCandidates) -> Result<Self, String> {
        let traces = wire
            .traces
            .into_iter()
            .map(|(id, newest)| {
                Ok(TraceCandidate {
                    trace_id: trace_id(&id)?,
                    newest_match_unix_nano: newest,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Candidates {
            traces,
            capped: wire.capped,
        })
    }
}

fn trace_id(text: &str) -> Result<[u8; 16], String> {
    weft_index::text::trace_id(text)
}

/// The parts of some traces asked for on the wire (`POST /api/v1/internal/trace-parts`).
#[derive(Debug, Serialize, Deserialize)]
pub struct PartsQuestion {
    /// Trace IDs in hex.
    pub trace_ids: Vec<String>,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
}

/// Parts of traces on the wire: their spans (a `RowBatch`, protobuf, base64), and their log
/// records counted per service, in the order of the question's trace IDs.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WireParts {
    pub spans: String,
    pub logs_by_service: Vec<BTreeMap<String, u64>>,
}

impl From<Vec<SummaryPart>> for WireParts {
    fn from(parts: Vec<SummaryPart>) -> Self {
        let mut spans = Vec::new();
        let mut logs_by_service = Vec::with_capacity(parts.len());
        for part in parts {
            spans.extend(part.spans);
            logs_by_service.push(part.logs_by_service);
        }
        WireParts {
            spans: encode_batch(&RowBatch {
                logs: Vec::new(),
                spans,
            }),
            logs_by_service,
        }
    }
}

impl WireParts {
    /// The parts of `ids`, in their order. Spans of other traces are dropped, as are counts
    /// past the last ID: a node answers for what it was asked.
    pub fn parts_of(self, ids: &[[u8; 16]]) -> Result<Vec<SummaryPart>, String> {
        let mut parts: Vec<SummaryPart> = ids.iter().map(|_| SummaryPart::default()).collect();
        for span in decode_batch(&self.spans)?.spans {
            let at = <[u8; 16]>::try_from(span.trace_id.as_slice())
                .ok()
                .and_then(|id| ids.iter().position(|x| *x == id));
            if let Some(i) = at {
                parts[i].spans.push(span);
            }
        }
        for (part, logs) in parts.iter_mut().zip(self.logs_by_service) {
            part.logs_by_service = logs;
        }
        Ok(parts)
    }
}

#[cfg(test)]
mod tests {
    use weft_index::SpanRow;

    use super::*;

    #[test]
    fn trace_parts_come_back_in_the_order_asked() {
        let (a, b) = ([1u8; 16], [2u8; 16]);
        let span = |id: [u8; 16], name: &str| SpanRow {
            trace_id: id.to_vec(),
            name: name.into(),
            ..Default::default()
        };
        let parts = vec![
            SummaryPart {
                spans: vec![span(a, "a1"), span(a, "a2")],
                logs_by_service: BTreeMap::from([("cart".to_string(), 3)]),
            },
            SummaryPart {
                spans: vec![span(b, "b1")],
                logs_by_service: BTreeMap::new(),
            },
        ];
        let back = WireParts::from(parts).parts_of(&[a, b]).unwrap();
        let names = |p: &SummaryPart| p.spans.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&back[0]), ["a1", "a2"]);
        assert_eq!(names(&back[1]), ["b1"]);
        assert_eq!(back[0].logs_by_service["cart"], 3);
        assert!(back[1].logs_by_service.is_empty());
    }

    #[test]
    fn a_badly_named_candidate_fails_the_answer() {
        let wire = WireCandidates {
            traces: vec![("zz".into(), 1)],
            capped: false,
        };
        assert!(Candidates::try_from(wire).is_err());
    }

    #[test]
    fn covers_survive_the_wire_and_an_unknown_signal_does_not() {
        let answer = NodeAnswer {
            node: "ingest-1".into(),
            value: (),
            covers: vec![PartitionRef {
                signal: Signal::Spans,
                start_unix_nano: 3_600_000_000_000,
                part: 2,
            }],
        };
        let wire = WireAnswer::encode(answer, |()| 0u8);
        let json = serde_json::to_string(&wire).unwrap();
        let back: WireAnswer<u8> = serde_json::from_str(&json).unwrap();
        let answer = back.decode("ingest-1", Ok).unwrap();
        assert_eq!(answer.covers[0].signal, Signal::Spans);
        assert_eq!(answer.covers[0].part, 2);
        let mut bad: WireAnswer<u8> = serde_json::from_str(&json).unwrap();
        bad.covers[0].signal = "metrics".into();
        assert!(bad.decode("ingest-1", Ok).is_err());
    }
}
