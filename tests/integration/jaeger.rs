//! weft's Jaeger query API decoded with the field names and types of Jaeger's JSON model, the
//! same model that decodes Jaeger's own answers in ../shared/reference/.

use std::collections::{BTreeSet, HashMap};

use serde::Deserialize;
use serde_json::Value;

use crate::query_api::loaded;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct Envelope<T> {
    pub(crate) data: Option<T>,
    total: i64,
    limit: i64,
    offset: i64,
    errors: Option<Vec<JaegerError>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct JaegerError {
    code: u16,
    msg: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Trace {
    #[serde(rename = "traceID")]
    trace_id: String,
    spans: Vec<Span>,
    processes: HashMap<String, Process>,
    warnings: Option<Vec<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Span {
    #[serde(rename = "traceID")]
    trace_id: String,
    #[serde(rename = "spanID")]
    span_id: String,
    operation_name: String,
    references: Vec<Reference>,
    start_time: u64,
    duration: u64,
    tags: Vec<KeyValue>,
    logs: Vec<Log>,
    #[serde(rename = "processID")]
    process_id: String,
    warnings: Option<Vec<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Reference {
    ref_type: String,
    #[serde(rename = "traceID")]
    trace_id: String,
    #[serde(rename = "spanID")]
    span_id: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct KeyValue {
    key: String,
    #[serde(rename = "type")]
    kind: String,
    value: Value,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Log {
    timestamp: u64,
    fields: Vec<KeyValue>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Process {
    service_name: String,
    tags: Vec<KeyValue>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Operation {
    name: String,
    span_kind: String,
}

/// Jaeger's rules for a tag's value against its declared type.
fn check_tag(tag: &KeyValue) {
    let ok = match tag.kind.as_str() {
        "string" => tag.value.is_string(),
        "bool" => tag.value.is_boolean(),
        // Integers beyond JavaScript's exact range travel as strings.
        "int64" => {
            tag.value.is_i64() || tag.value.as_str().is_some_and(|s| s.parse::<i64>().is_ok())
        }
        "float64" => tag.value.is_number(),
        "binary" => tag.value.is_string(),
        _ => false,
    };
    assert!(
        ok,
        "tag {} of type {} holds {}",
        tag.key, tag.kind, tag.value
    );
}

pub(crate) fn check_trace(trace: &Trace) {
    assert!(!trace.spans.is_empty());
    assert!(
        trace
            .warnings
            .as_ref()
            .is_none_or(|w| w.iter().all(|m| !m.is_empty()))
    );
    for span in &trace.spans {
        assert_eq!(span.trace_id, trace.trace_id);
        assert!(span.span_id.len() == 16 && span.span_id.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(
            trace.processes.contains_key(&span.process_id),
            "{}",
            span.process_id
        );
        for r in &span.references {
            assert!(matches!(r.ref_type.as_str(), "CHILD_OF" | "FOLLOWS_FROM"));
            assert!(!r.trace_id.is_empty() && !r.span_id.is_empty());
        }
        span.tags.iter().for_each(check_tag);
        for log in &span.logs {
            log.fields.iter().for_each(check_tag);
            assert!(log.timestamp >= span.start_time.saturating_sub(60_000_000));
        }
        let _ = (&span.operation_name, span.duration, &span.warnings);
    }
    for p in trace.processes.values() {
        assert!(!p.service_name.is_empty());
        p.tags.iter().for_each(check_tag);
    }
}

pub(crate) fn reference(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weft_answers_in_jaegers_model() {
    let (server, data) = loaded().await;
    let get = |path: String, query: Vec<(String, String)>| {
        let server = &server;
        async move {
            let response = server
                .client
                .get(server.url(&path))
                .query(&query)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };

    let (status, text) = get("/api/services".into(), vec![]).await;
    assert_eq!(status, 200);
    let services: Envelope<Vec<String>> = serde_json::from_str(&text).unwrap();
    let services: BTreeSet<String> = services.data.unwrap().into_iter().collect();
    assert_eq!(
        services,
        ["checkout", "frontend", "inventory", "payments"]
            .map(String::from)
            .into()
    );

    let (_, text) = get("/api/services/payments/operations".into(), vec![]).await;
    let ops: Envelope<Vec<String>> = serde_json::from_str(&text).unwrap();
    assert_eq!(ops.data.unwrap(), vec!["charge", "refund"]);

    let (_, text) = get(
        "/api/operations".into(),
        vec![
            ("service".into(), "frontend".into()),
            ("spanKind".into(), "server".into()),
        ],
    )
    .await;
    let ops: Envelope<Vec<Operation>> = serde_json::from_str(&text).unwrap();
    let names: Vec<(String, String)> = ops
        .data
        .unwrap()
        .into_iter()
        .map(|o| (o.name, o.span_kind))
        .collect();
    assert_eq!(
        names,
        vec![
            ("GET /checkout".into(), "server".into()),
            ("GET /slow".into(), "server".into())
        ]
    );

    // Search: errors in payments, times in microseconds.
    let micros = |ns: u64| (ns / 1000).to_string();
    let (status, text) = get(
        "/api/traces".into(),
        vec![
            ("service".into(), "payments".into()),
            ("tags".into(), r#"{"error":"true"}"#.into()),
            ("start".into(), micros(data.start)),
            ("end".into(), micros(data.end)),
            ("limit".into(), "50".into()),
        ],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let found: Envelope<Vec<Trace>> = serde_json::from_str(&text).unwrap();
    assert!(found.errors.is_none());
    let traces = found.data.unwrap();
    assert_eq!(found.total as usize, traces.len());
    let want: BTreeSet<String> = data
        .spans
        .iter()
        .filter(|s| s.error)
        .map(|s| hex::encode(&s.trace_id))
        .collect();
    assert_eq!(
        traces
            .iter()
            .map(|t| t.trace_id.clone())
            .collect::<BTreeSet<_>>(),
        want
    );
    traces.iter().for_each(check_trace);

    // One trace: parent references, typed tags, span events and weft's logs in place.
    let trace_id = want.iter().next().unwrap().clone();
    let (status, text) = get(format!("/api/traces/{trace_id}"), vec![]).await;
    assert_eq!(status, 200);
    let envelope: Envelope<Vec<Trace>> = serde_json::from_str(&text).unwrap();
    let trace = &envelope.data.unwrap()[0];
    check_trace(trace);
    assert_eq!(trace.spans.len(), 4);
    assert_eq!(trace.processes.len(), 4);
    let charge = trace
        .spans
        .iter()
        .find(|s| s.operation_name == "charge")
        .unwrap();
    assert_eq!(charge.references.len(), 1);
    assert_eq!(charge.references[0].ref_type, "CHILD_OF");
    assert!(
        charge
            .tags
            .iter()
            .any(|t| t.key == "error" && t.value == Value::Bool(true))
    );
    assert!(
        charge
            .tags
            .iter()
            .any(|t| t.key == "span.kind" && t.value == "client")
    );
    let declined = charge
        .logs
        .iter()
        .find(|l| {
            l.fields
                .iter()
                .any(|f| f.key == "event" && f.value == "PaymentDeclined")
        })
        .expect("the span's log is in its Jaeger logs");
    assert!(
        declined
            .fields
            .iter()
            .any(|f| f.key == "level" && f.value == "ERROR")
    );
    let process = &trace.processes[&charge.process_id];
    assert_eq!(process.service_name, "payments");
    assert!(
        process
            .tags
            .iter()
            .any(|t| t.key == "host.name" && t.value == "h1")
    );

    // Unknown trace: Jaeger's error envelope.
    let (status, text) = get(format!("/api/traces/{}", "cd".repeat(16)), vec![]).await;
    assert_eq!(status, 404);
    let missing: Envelope<Vec<Trace>> = serde_json::from_str(&text).unwrap();
    assert!(missing.data.is_none());
    let errors = missing.errors.unwrap();
    assert_eq!(errors[0].code, 404);
    assert!(!errors[0].msg.is_empty());
    let _ = (missing.total, missing.limit, missing.offset);

    // Bad parameters get a 400 in the same envelope.
    let (status, text) = get(
        "/api/traces".into(),
        vec![("minDuration".into(), "fast".into())],
    )
    .await;
    assert_eq!(status, 400, "{text}");
    let bad: Envelope<Vec<Trace>> = serde_json::from_str(&text).unwrap();
    assert_eq!(bad.errors.unwrap()[0].code, 400);
    server.stop().await;
}
