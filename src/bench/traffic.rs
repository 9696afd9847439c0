//! Realistic OTLP traffic, in two shapes ([`Profile`]):
//! - `default`: services calling each other, traces of 5-50 spans, 0-5 logs per span with event
//!   IDs from a catalog, bodies from a Zipf vocabulary (so some words are rare and some common),
//!   typical attributes, and errors at a configurable rate;
//! - `peer`: the load weft was compared with Quickwit on: ~200-byte log records each with its
//!   own random trace and span ID, three attributes, and separate 8-span traces.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

const SERVICES: [&str; 12] = [
    "frontend",
    "checkout",
    "payments",
    "cart",
    "inventory",
    "shipping",
    "auth",
    "search",
    "recommendations",
    "email",
    "currency",
    "ads",
];
const ROUTES: [&str; 8] = [
    "/pay",
    "/cart/{id}",
    "/orders/{id}",
    "/login",
    "/search",
    "/items/{id}",
    "/ship",
    "/quote",
];
const SYLLABLES: [&str; 24] = [
    "ka", "lo", "mi", "ne", "ru", "ta", "vo", "xi", "be", "do", "fa", "gu", "ha", "ji", "ko", "lu",
    "ma", "no", "pe", "qu", "ri", "so", "tu", "we",
];

/// Size of the body vocabulary.
pub const VOCABULARY: usize = 5000;
/// Event IDs in the catalog.
pub const EVENTS: usize = 300;

/// The peer profile's word of `rank` (0 the most common): rank + 24 in base-24 syllable
/// digits, two or three syllables, a different spelling for every rank (the top digit is never
/// the first syllable).
pub fn short_word(rank: usize) -> String {
    let mut n = rank + SYLLABLES.len();
    let mut out = String::with_capacity(9);
    loop {
        out.push_str(SYLLABLES[n % SYLLABLES.len()]);
        n /= SYLLABLES.len();
        if n == 0 {
            break;
        }
    }
    out
}

/// The word of `rank` (0 the most common) in `profile`'s log bodies.
pub fn body_word(profile: Profile, rank: usize) -> String {
    match profile {
        Profile::Default => word(rank),
        Profile::Peer => short_word(rank),
    }
}

/// The `rank`-th word of the vocabulary (rank 0 is the most common).
pub fn word(rank: usize) -> String {
    let mut n = rank;
    let mut out = String::new();
    loop {
        out.push_str(SYLLABLES[n % SYLLABLES.len()]);
        n /= SYLLABLES.len();
        if n == 0 {
            break;
        }
    }
    // Rank-unique and at least three syllables, so words never collide with attribute text.
    format!("{out}x{rank}")
}

fn event_name(i: usize) -> String {
    const STEMS: [&str; 10] = [
        "Payment", "Cache", "Order", "Login", "Cart", "Shipment", "Quote", "Search", "Token",
        "Stock",
    ];
    const ENDS: [&str; 10] = [
        "Declined",
        "Miss",
        "Created",
        "Failed",
        "Updated",
        "Delayed",
        "Expired",
        "Timeout",
        "Refreshed",
        "Low",
    ];
    format!("{}{}{}", STEMS[i % 10], ENDS[(i / 10) % 10], i / 100)
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: impl Into<String>) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

/// The shapes of traffic `weft bench` can send.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Profile {
    /// weft's own: ~300-byte log records written inside traces of 5-50 spans, sharing their IDs.
    #[default]
    Default,
    /// The side-by-side comparison with Quickwit: ~200-byte log records, each with its own
    /// random 128-bit trace ID and 64-bit span ID; attributes `http.method` (constant),
    /// `http.status_code` (five values), `order.id` (random below 10^6); bodies of 6-20 words
    /// from 5,000 with a steep skew; 300 event names; `host.name` from 20 hosts. Spans come in
    /// 8-span traces of their own (~114 bytes each: names from 40, `http.route` from 50 values,
    /// `db.system` constant), three log records per two spans.
    Peer,
}

/// Traffic settings.
#[derive(Clone, Debug)]
pub struct TrafficConfig {
    /// Number of services.
    pub services: usize,
    /// Fraction of traces with an error.
    pub error_rate: f64,
    /// The shape of the traffic.
    pub profile: Profile,
}

/// Where a record comes from: its service and host (the resource it is exported under).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin {
    /// Index into the service names.
    pub service: usize,
    /// Host number.
    pub host: usize,
}

/// Hosts of the peer profile.
const PEER_HOSTS: usize = 20;

/// A deterministic generator (one per client, seeded differently).
pub struct Generator {
    rng: SmallRng,
    zipf: Zipf<f64>,
    config: TrafficConfig,
}

/// One generated trace: its spans and logs, grouped by service.
pub struct GeneratedTrace {
    /// The trace ID.
    pub trace_id: [u8; 16],
    /// Spans, each with where it comes from.
    pub spans: Vec<(Origin, Span)>,
    /// Log records, each with where it comes from.
    pub logs: Vec<(Origin, LogRecord)>,
}

impl Generator {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64, config: TrafficConfig) -> Self {
        Generator {
            rng: SmallRng::seed_from_u64(seed),
            zipf: Zipf::new(VOCABULARY as f64, 1.1).expect("valid Zipf parameters"),
            config,
        }
    }

    fn body(&mut self) -> String {
        self.body_of(8..16)
    }

    /// The peer profile's body: words of 4-6 letters, as natural-language words are.
    fn short_body(&mut self, words: std::ops::Range<usize>) -> String {
        let words = self.rng.random_range(words);
        let mut text = String::with_capacity(words * 6);
        for i in 0..words {
            if i > 0 {
                text.push(' ');
            }
            let rank = self.zipf.sample(&mut self.rng) as usize - 1;
            text.push_str(&short_word(rank));
        }
        text
    }

    fn body_of(&mut self, words: std::ops::Range<usize>) -> String {
        let words = self.rng.random_range(words);
        let mut text = String::with_capacity(words * 10);
        for i in 0..words {
            if i > 0 {
                text.push(' ');
            }
            let rank = self.zipf.sample(&mut self.rng) as usize - 1;
            text.push_str(&word(rank));
        }
        text
    }

    /// One trace starting at `now_nanos`, in the configured profile's shape.
    pub fn trace(&mut self, now_nanos: u64) -> GeneratedTrace {
        match self.config.profile {
            Profile::Default => self.default_trace(now_nanos),
            Profile::Peer => self.peer_trace(now_nanos),
        }
    }

    /// The peer profile: an 8-span trace, and twelve log records that belong to no trace of
    /// this batch (each with random IDs, as a service that logs outside its spans would).
    fn peer_trace(&mut self, now_nanos: u64) -> GeneratedTrace {
        const STATUS: [i64; 5] = [200, 201, 204, 404, 500];
        let services = self.config.services.clamp(1, SERVICES.len());
        let origin = |g: &mut Self| Origin {
            service: g.rng.random_range(0..services),
            host: g.rng.random_range(0..PEER_HOSTS),
        };
        let trace_id: [u8; 16] = self.rng.random();
        let mut spans: Vec<(Origin, Span)> = Vec::with_capacity(8);
        for i in 0..8 {
            let span_id: [u8; 8] = self.rng.random();
            let parent = if i == 0 {
                Vec::new()
            } else {
                spans[self.rng.random_range(0..i)].1.span_id.clone()
            };
            let start = now_nanos + self.rng.random_range(0..50_000_000u64);
            let span = Span {
                trace_id: trace_id.to_vec(),
                span_id: span_id.to_vec(),
                parent_span_id: parent,
                name: format!("op{}", self.rng.random_range(0..40)),
                kind: 2,
                start_time_unix_nano: start,
                end_time_unix_nano: start + self.rng.random_range(10_000..20_000_000u64),
                attributes: vec![
                    kv(
                        "http.route",
                        s(format!("/r{}", self.rng.random_range(0..50))),
                    ),
                    kv("db.system", s("postgresql")),
                ],
                ..Default::default()
            };
            spans.push((origin(self), span));
        }
        let mut logs = Vec::with_capacity(12);
        for _ in 0..12 {
            let trace_id: [u8; 16] = self.rng.random();
            let span_id: [u8; 8] = self.rng.random();
            let severity = [5, 9, 9, 9, 13, 17][self.rng.random_range(0..6)];
            let event = event_name(self.zipf.sample(&mut self.rng) as usize % EVENTS);
            let record = LogRecord {
                time_unix_nano: now_nanos + self.rng.random_range(0..50_000_000u64),
                severity_number: severity,
                event_name: event,
                body: Some(AnyValue {
                    value: Some(s(self.short_body(6..21))),
                }),
                trace_id: trace_id.to_vec(),
                span_id: span_id.to_vec(),
                attributes: vec![
                    kv("http.method", s("GET")),
                    kv(
                        "http.status_code",
                        any_value::Value::IntValue(STATUS[self.rng.random_range(0..5)]),
                    ),
                    kv(
                        "order.id",
                        s(self.rng.random_range(0..1_000_000u32).to_string()),
                    ),
                ],
                ..Default::default()
            };
            logs.push((origin(self), record));
        }
        GeneratedTrace {
            trace_id,
            spans,
            logs,
        }
    }

    fn default_trace(&mut self, now_nanos: u64) -> GeneratedTrace {
        let services = self.config.services.clamp(1, SERVICES.len());
        let trace_id: [u8; 16] = self.rng.random();
        let span_count = self.rng.random_range(5..=50);
        let failing = self.rng.random_bool(self.config.error_rate.clamp(0.0, 1.0));
        let mut spans: Vec<(Origin, Span)> = Vec::with_capacity(span_count);
        let mut logs = Vec::new();
        let user = self.rng.random_range(1..100_000u32);
        let order = self.rng.random_range(1..10_000_000u32);
        let total_ns: u64 = self.rng.random_range(2_000_000..800_000_000);
        for i in 0..span_count {
            let service = if i == 0 {
                0
            } else {
                self.rng.random_range(0..services)
            };
            let parent = if i == 0 {
                Vec::new()
            } else {
                spans[self.rng.random_range(0..i)].1.span_id.clone()
            };
            let offset = if i == 0 {
                0
            } else {
                self.rng.random_range(0..total_ns / 2)
            };
            let duration = if i == 0 {
                total_ns
            } else {
                self.rng
                    .random_range(1_000..=(total_ns - offset).max(1_001))
            };
            let span_id: [u8; 8] = self.rng.random();
            let route = ROUTES[self.rng.random_range(0..ROUTES.len())];
            let is_error = failing && i == span_count - 1;
            let start = now_nanos + offset;
            let mut attributes = vec![
                kv("http.method", s(if i % 3 == 0 { "POST" } else { "GET" })),
                kv("http.route", s(route)),
                kv(
                    "http.status_code",
                    any_value::Value::IntValue(if is_error { 500 } else { 200 }),
                ),
            ];
            if i % 4 == 1 {
                attributes.push(kv("db.system", s("postgresql")));
                attributes.push(kv("db.statement", s("SELECT * FROM orders WHERE id = $1")));
            }
            let span = Span {
                trace_id: trace_id.to_vec(),
                span_id: span_id.to_vec(),
                parent_span_id: parent,
                name: format!("{} {route}", if i % 3 == 0 { "POST" } else { "GET" }),
                kind: if i == 0 { 2 } else { 3 },
                start_time_unix_nano: start,
                end_time_unix_nano: start + duration,
                attributes,
                status: Some(Status {
                    code: if is_error { 2 } else { 0 },
                    message: if is_error {
                        "upstream failed".into()
                    } else {
                        String::new()
                    },
                }),
                ..Default::default()
            };
            let log_count = self.rng.random_range(0..=5);
            for j in 0..log_count {
                let severity = if is_error && j == log_count - 1 {
                    17
                } else {
                    [5, 9, 9, 9, 13][self.rng.random_range(0..5)]
                };
                let event = event_name(self.zipf.sample(&mut self.rng) as usize % EVENTS);
                logs.push((
                    Origin {
                        service,
                        host: service % 4,
                    },
                    LogRecord {
                        time_unix_nano: start + duration * j as u64 / (log_count as u64 + 1),
                        observed_time_unix_nano: start,
                        severity_number: severity,
                        event_name: event,
                        body: Some(AnyValue {
                            value: Some(s(self.body())),
                        }),
                        trace_id: trace_id.to_vec(),
                        span_id: span_id.to_vec(),
                        attributes: vec![
                            kv("user.id", s(format!("u{user}"))),
                            kv("order.id", s(format!("o{order}"))),
                            kv("http.route", s(route)),
                            kv("thread.name", s(format!("worker-{}", j % 8))),
                            kv("code.function", s(format!("{}::handle", SERVICES[service]))),
                            kv(
                                "session.id",
                                s(format!("s{:08x}", user.wrapping_mul(2_654_435_761))),
                            ),
                        ],
                        flags: 1,
                        ..Default::default()
                    },
                ));
            }
            spans.push((
                Origin {
                    service,
                    host: service % 4,
                },
                span,
            ));
        }
        GeneratedTrace {
            trace_id,
            spans,
            logs,
        }
    }
}

fn resource(origin: Origin) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", s(SERVICES[origin.service])),
            kv("host.name", s(format!("host-{}", origin.host))),
            kv("deployment.environment", s("bench")),
        ],
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "weft-bench".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

/// Groups log records by origin (service and host) into one export request, as an SDK or a
/// collector would.
pub fn logs_request(records: Vec<(Origin, LogRecord)>) -> ExportLogsServiceRequest {
    let mut by_origin: std::collections::BTreeMap<Origin, Vec<LogRecord>> = Default::default();
    for (origin, record) in records {
        by_origin.entry(origin).or_default().push(record);
    }
    ExportLogsServiceRequest {
        resource_logs: by_origin
            .into_iter()
            .map(|(origin, log_records)| ResourceLogs {
                resource: Some(resource(origin)),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope()),
                    log_records,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// Groups spans by origin (service and host) into one export request.
pub fn spans_request(spans: Vec<(Origin, Span)>) -> ExportTraceServiceRequest {
    let mut by_origin: std::collections::BTreeMap<Origin, Vec<Span>> = Default::default();
    for (origin, span) in spans {
        by_origin.entry(origin).or_default().push(span);
    }
    ExportTraceServiceRequest {
        resource_spans: by_origin
            .into_iter()
            .map(|(origin, spans)| ResourceSpans {
                resource: Some(resource(origin)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope()),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn traces_have_the_promised_shape() {
        let mut g = Generator::new(
            1,
            TrafficConfig {
                services: 8,
                error_rate: 0.5,
                profile: Profile::Default,
            },
        );
        for _ in 0..50 {
            let t = g.trace(1_000_000_000);
            assert!((5..=50).contains(&t.spans.len()));
            assert!(t.logs.len() <= t.spans.len() * 5);
            assert!(t.spans[0].1.parent_span_id.is_empty());
            assert!(
                t.spans[1..]
                    .iter()
                    .all(|(_, s)| s.parent_span_id.len() == 8)
            );
            assert!(t.spans.iter().all(|(origin, _)| origin.service < 8));
        }
    }

    #[test]
    fn log_records_are_about_300_bytes() {
        let mut g = Generator::new(
            2,
            TrafficConfig {
                services: 8,
                error_rate: 0.0,
                profile: Profile::Default,
            },
        );
        let mut records = Vec::new();
        while records.len() < 1000 {
            records.extend(g.trace(1).logs);
        }
        let n = records.len();
        let bytes = logs_request(records).encoded_len();
        let per_record = bytes / n;
        assert!(
            (200..450).contains(&per_record),
            "{per_record} bytes per record"
        );
    }

    /// The peer profile's sizes are the comparison's: ~204 bytes per log record and ~114 per
    /// span (each record's OTLP protobuf encoding), every log record with its own IDs.
    #[test]
    fn the_peer_profile_has_the_comparisons_shape() {
        let mut g = Generator::new(
            3,
            TrafficConfig {
                services: 8,
                error_rate: 0.0,
                profile: Profile::Peer,
            },
        );
        let (mut logs, mut spans) = (Vec::new(), Vec::new());
        while logs.len() < 1000 {
            let t = g.trace(1);
            assert_eq!(t.spans.len(), 8);
            logs.extend(t.logs);
            spans.extend(t.spans);
        }
        let trace_ids: std::collections::HashSet<_> =
            logs.iter().map(|(_, r)| r.trace_id.clone()).collect();
        assert_eq!(
            trace_ids.len(),
            logs.len(),
            "every log record has its own trace ID"
        );
        let hosts: std::collections::HashSet<_> = logs.iter().map(|(o, _)| o.host).collect();
        assert_eq!(hosts.len(), PEER_HOSTS);
        // Each record's own encoding, as the comparison counted it (export envelopes aside).
        let per_log = logs.iter().map(|(_, r)| r.encoded_len()).sum::<usize>() / logs.len();
        let per_span = spans.iter().map(|(_, s)| s.encoded_len()).sum::<usize>() / spans.len();
        assert!(
            (190..220).contains(&per_log),
            "{per_log} bytes per log record"
        );
        assert!((105..125).contains(&per_span), "{per_span} bytes per span");
    }

    #[test]
    fn words_are_distinct() {
        let words: std::collections::HashSet<String> = (0..VOCABULARY).map(word).collect();
        assert_eq!(words.len(), VOCABULARY);
    }
}
