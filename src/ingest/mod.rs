//! OTLP ingest over gRPC and HTTP: both decode, then share [`accept`], which normalizes off the
//! async runtime, writes through the pipeline and counts what happened.

pub mod admission;
pub mod grpc;
pub mod http;

use std::collections::HashMap;
use std::sync::Arc;

use weft_index::{RowBatch, Signal};

use crate::metrics::Metrics;
use crate::normalize::TimeWindow;
use crate::pipeline::{Pipeline, PipelineError, Reservation};
use crate::severity::{CompiledRules, SeverityControl};

/// Why an export request was not (fully) accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The body is not a valid OTLP message.
    #[error("{0}")]
    Malformed(String),
    /// The body is larger than allowed after decompression.
    #[error("{0}")]
    TooLarge(String),
    /// Content type or encoding weft does not speak.
    #[error("{0}")]
    Unsupported(String),
    /// The pipeline refused or failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The client took too long to send its request.
    #[error("{0}")]
    Slow(String),
    /// This node takes no OTLP (`role = search`).
    #[error(
        "this weft node answers queries only (role = search); send OTLP exports to an ingest node"
    )]
    SearchNode,
    /// Processing the request panicked: a bug in weft, not in the request as far as anyone
    /// knows, so the client is told to retry rather than to drop the data.
    #[error("weft failed while processing this request (an internal error, logged); retry later")]
    Panicked,
}

impl IngestError {
    /// How long the client should wait before retrying, for errors worth retrying.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            IngestError::Pipeline(e) => Some(e.retry_after()),
            IngestError::Panicked => Some(std::time::Duration::from_secs(5)),
            IngestError::Slow(_) => Some(std::time::Duration::from_secs(1)),
            _ => None,
        }
    }
}

/// What an accepted request reports back.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Records rejected as invalid.
    pub rejected: u64,
    /// Why (the first rejection).
    pub error_message: String,
}

/// Normalized rows of one request, before they are written.
pub struct Prepared {
    batch: RowBatch,
    payload: Vec<u8>,
    accepted: Accepted,
    /// Records severity rules dropped, per rule ID.
    dropped_by_rule: HashMap<String, u64>,
}

impl Prepared {
    /// Wraps normalized rows, encoding them for the WAL (packed: each run of rows with one
    /// service, resource and scope holds it once).
    pub fn new(mut batch: RowBatch, rejected: u64, error_message: String) -> Self {
        let payload = batch.encode_packed();
        Prepared {
            batch,
            payload,
            accepted: Accepted {
                rejected,
                error_message,
            },
            dropped_by_rule: HashMap::new(),
        }
    }
}

/// The bounds ingest applies to what clients send.
#[derive(Clone, Copy, Debug)]
pub struct IngestLimits {
    /// Largest body after decompression.
    pub max_body_bytes: usize,
    /// Records older than this are rejected (they would be deleted at once).
    pub retention: std::time::Duration,
    /// Records further ahead of weft's clock than this are rejected.
    pub max_future_skew: std::time::Duration,
    /// Longest a client may take to send a request body.
    pub body_read_timeout: std::time::Duration,
}

/// Shared state of both ingest front ends.
#[derive(Clone)]
pub struct Ingest {
    pipeline: Arc<Pipeline>,
    metrics: Arc<Metrics>,
    severity: Arc<SeverityControl>,
    limits: IngestLimits,
    /// False on a search node, which refuses every export.
    takes_exports: bool,
}

/// What preparing one request needs besides the request: the severity rules in force, the
/// time to judge their expiry by, and the record times accepted.
pub struct RequestContext {
    /// Rules in force.
    pub rules: Arc<CompiledRules>,
    /// The severity clock's now.
    pub rules_now: u64,
    /// Accepted record times.
    pub window: TimeWindow,
}

impl Ingest {
    /// Ingest over `pipeline`, applying `severity`'s rules.
    pub fn new(
        pipeline: Arc<Pipeline>,
        metrics: Arc<Metrics>,
        severity: Arc<SeverityControl>,
        limits: IngestLimits,
    ) -> Self {
        Ingest {
            pipeline,
            metrics,
            severity,
            limits,
            takes_exports: true,
        }
    }

    /// This ingest, refusing every export: a search node's.
    pub fn refusing_exports(self) -> Self {
        Ingest {
            takes_exports: false,
            ..self
        }
    }

    /// What preparing a request that arrives now needs.
    pub fn context(&self) -> RequestContext {
        RequestContext {
            rules: self.severity.compiled(),
            rules_now: self.severity.now(),
            window: TimeWindow::around(
                crate::clock::now_unix_nano(),
                self.limits.retention,
                self.limits.max_future_skew,
            ),
        }
    }

    /// Longest a client may take to send a request body.
    pub fn body_read_timeout(&self) -> std::time::Duration {
        self.limits.body_read_timeout
    }

    /// Largest body accepted after decompression.
    pub fn max_body_bytes(&self) -> usize {
        self.limits.max_body_bytes
    }

    /// Takes a request's place before its body is read (see [`admission`]); a refusal is
    /// counted and comes back as a retryable error.
    pub fn reserve(&self, bytes: usize) -> Result<Reservation, IngestError> {
        if !self.takes_exports {
            return Err(IngestError::SearchNode);
        }
        self.pipeline.reserve(bytes).map_err(|error| {
            self.count_refusal(&error);
            IngestError::Pipeline(error)
        })
    }

    /// Runs `prepare` (inflate + decode + normalize + encode, growing the reservation as it
    /// goes) on the blocking pool, then makes the rows durable. Returns once they are fsynced.
    pub async fn accept(
        &self,
        signal: Signal,
        reservation: Reservation,
        prepare: impl FnOnce(&mut Reservation) -> Result<Prepared, IngestError> + Send + 'static,
    ) -> Result<Accepted, IngestError> {
        let (prepared, mut reservation) = tokio::task::spawn_blocking(move || {
            let mut reservation = reservation;
            (prepare(&mut reservation), reservation)
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, signal = ?signal, "decoding an export request panicked");
            self.metrics
                .ingest_panics
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            IngestError::Panicked
        })?;
        let prepared = prepared.inspect_err(|error| {
            if let IngestError::Pipeline(e) = error {
                self.count_refusal(e);
            }
        })?;
        let counters = self.metrics.signal(signal);
        let mut by_rules = 0;
        for (rule, n) in &prepared.dropped_by_rule {
            self.severity.count_dropped(rule, *n);
            by_rules += n;
        }
        self.metrics
            .dropped_by_rules
            .fetch_add(by_rules, std::sync::atomic::Ordering::Relaxed);
        let rejected = prepared.accepted.rejected;
        counters
            .rejected
            .fetch_add(rejected, std::sync::atomic::Ordering::Relaxed);
        let rows = prepared.batch.len() as u64;
        if rows == 0 {
            return Ok(prepared.accepted);
        }
        // What stays in memory until the rows are indexed: the rows and their encoding.
        reservation.shrink_to(2 * prepared.payload.len());
        match self
            .pipeline
            .submit(prepared.batch, prepared.payload, reservation)
            .await
        {
            Ok(()) => {
                counters
                    .received
                    .fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
                Ok(prepared.accepted)
            }
            Err(error) => {
                counters
                    .dropped
                    .fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
                self.count_refusal(&error);
                Err(error.into())
            }
        }
    }

    /// Counts a refused request, by condition when one caused it.
    fn count_refusal(&self, error: &PipelineError) {
        self.metrics
            .requests_refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let PipelineError::Unavailable { condition, .. } = error {
            self.pipeline.health().count_refusal(*condition);
        }
    }
}

/// Normalizes a decoded logs request into rows, rejects those outside the time window and
/// applies the severity rules.
pub fn prepare_logs(
    request: opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest,
    context: &RequestContext,
) -> Prepared {
    let mut out = crate::normalize::logs(request, crate::clock::now_unix_nano());
    context.window.apply_to_logs(&mut out);
    let dropped_by_rule = crate::severity::apply(&context.rules, &mut out.rows, context.rules_now);
    let mut prepared = Prepared::new(
        RowBatch {
            logs: out.rows,
            spans: Vec::new(),
        },
        out.rejected,
        out.error_message,
    );
    prepared.dropped_by_rule = dropped_by_rule;
    prepared
}

/// Normalizes a decoded traces request into rows, rejecting spans outside the time window.
pub fn prepare_spans(
    request: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
    context: &RequestContext,
) -> Prepared {
    let mut out = crate::normalize::spans(request);
    context.window.apply_to_spans(&mut out);
    Prepared::new(
        RowBatch {
            logs: Vec::new(),
            spans: out.rows,
        },
        out.rejected,
        out.error_message,
    )
}
