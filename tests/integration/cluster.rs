//! Several nodes on one bucket and one PostgreSQL (`role`): ingest nodes publish their splits,
//! and a search node answers over the splits of every node, takes each new one in within
//! a second or so of its publication, and refuses OTLP exports.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::Value;
use weft::config::Config;
use weft::node::Role;

use crate::bad_input::{logs_request, record};
use crate::common::{
    DEADLINE, Node, TestServer, get_json, now_nanos, page_through, s3_bucket, s3_endpoint,
    wait_until_remote,
};
use crate::dataset::resource_spans;
use crate::durability::WeftProcess;
use crate::postgres::PgServer;
use weft::grpc::proto::query_service_client::QueryServiceClient;
use weft::grpc::proto::{GetTraceRequest, SearchLogsRequest, SearchTracesRequest};

const HOUR: u64 = 3_600 * 1_000_000_000;

/// A node of the cluster on `bucket` and `pg`: seals a quiet hour within a second, keeps no
/// local copy of what it published.
fn node(config: &mut Config, bucket: &std::path::Path, pg: &PgServer, id: &str, role: Role) {
    config.storage =
        Some(weft::storage::StorageUrl::parse(&format!("file://{}", bucket.display())).unwrap());
    config.metastore = Some(pg.url());
    config.node_id = Some(id.to_string());
    config.role = role;
    config.seal_interval = Duration::from_secs(1);
    config.cache_bytes = 0;
}

/// A node of the cluster, started on a new data directory.
async fn start_node(bucket: &std::path::Path, pg: &PgServer, id: &str, role: Role) -> TestServer {
    TestServer::start_with(tempfile::tempdir().unwrap(), |c| {
        node(c, bucket, pg, id, role)
    })
    .await
}

/// Logs of an hour that is over, with service `service` and trace `trace`; `bodies` words.
async fn send_logs(server: &impl Node, service: &str, trace: [u8; 16], bodies: &[&str]) {
    send_logs_at(server, now_nanos() - 3 * HOUR, service, trace, bodies).await;
}

/// [`send_logs`] at time `then`.
async fn send_logs_at(
    server: &impl Node,
    then: u64,
    service: &str,
    trace: [u8; 16],
    bodies: &[&str],
) {
    let records = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let mut r = record(body, trace.to_vec());
            r.time_unix_nano = then + i as u64;
            r
        })
        .collect();
    let mut client = LogsServiceClient::connect(format!("http://{}", server.grpc_addr()))
        .await
        .unwrap();
    client.export(logs_request(service, records)).await.unwrap();
}

/// One span of trace `trace`, in the same past hour, from service `service`.
async fn send_span(server: &impl Node, service: &str, trace: [u8; 16]) {
    send_span_at(server, now_nanos() - 3 * HOUR, service, trace).await;
}

/// [`send_span`] starting at `start`.
async fn send_span_at(server: &impl Node, start: u64, service: &str, trace: [u8; 16]) {
    send_span_between(
        server,
        service,
        trace,
        (7, "GET /cart"),
        start,
        start + 1_000_000,
    )
    .await;
}

/// A span of trace `trace` from service `service`, child of the span of eight `parent`
/// bytes; its own ID is eight `id` bytes.
async fn send_child_span(
    server: &impl Node,
    service: &str,
    trace: [u8; 16],
    (id, parent): (u8, u8),
    start: u64,
) {
    let span = Span {
        trace_id: trace.to_vec(),
        span_id: vec![id; 8],
        parent_span_id: vec![parent; 8],
        name: "child".into(),
        kind: 2,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 1_000_000,
        ..Default::default()
    };
    send_spans(server, service, vec![span]).await;
}

/// A span of trace `trace` from `start` to `end`, from service `service`, with a span ID of
/// eight `id` bytes and name `name`.
async fn send_span_between(
    server: &impl Node,
    service: &str,
    trace: [u8; 16],
    (id, name): (u8, &str),
    start: u64,
    end: u64,
) {
    let span = Span {
        trace_id: trace.to_vec(),
        span_id: vec![id; 8],
        name: name.into(),
        kind: 2,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        ..Default::default()
    };
    send_spans(server, service, vec![span]).await;
}

/// `spans` of service `service`, exported to `server`.
async fn send_spans(server: &impl Node, service: &str, spans: Vec<Span>) {
    let request = ExportTraceServiceRequest {
        resource_spans: vec![resource_spans(service, spans)],
    };
    let mut client = TraceServiceClient::connect(format!("http://{}", server.grpc_addr()))
        .await
        .unwrap();
    client.export(request).await.unwrap();
}

/// The bodies a search for `q` finds on `server`, sorted, once there are `want` of them.
async fn bodies_once_there(server: &impl Node, q: &str, want: usize) -> Vec<String> {
    let started = Instant::now();
    loop {
        let (status, body) = get_json(
            server,
            "/api/v1/logs",
            &[("q", q), ("start", "0"), ("limit", "100")],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let mut bodies: Vec<String> = body["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["body"].as_str().unwrap().to_string())
            .collect();
        if bodies.len() >= want {
            bodies.sort();
            return bodies;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "only {bodies:?} of {want} for '{q}'"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_node_answers_over_the_splits_of_every_ingest_node() {
    let Some(pg) = PgServer::start() else {
        return;
    };
    let bucket = tempfile::tempdir().unwrap();
    let trace = [0x3c; 16];
    // Two ingest nodes publish splits of the same hour (both part 0 of it): the trace's span
    // reaches one, its logs the other.
    let a = start_node(bucket.path(), &pg, "ingest-a", Role::Ingest).await;
    let b = start_node(bucket.path(), &pg, "ingest-b", Role::Ingest).await;
    send_span(&a, "cart", trace).await;
    send_logs(&a, "cart", [1; 16], &["from a one", "from a two"]).await;
    send_logs(&b, "pay", trace, &["from b one"]).await;
    wait_until_remote(&a, 2).await;
    wait_until_remote(&b, 1).await;

    let search = start_node(bucket.path(), &pg, "search-1", Role::Search).await;
    assert_eq!(
        bodies_once_there(&search, "from", 3).await,
        ["from a one", "from a two", "from b one"]
    );
    // The splits' trace filters come over, so that a trace lookup opens only the splits
    // that may hold the trace.
    let filters = search.dir.path().join("index").join("filters");
    let started = Instant::now();
    while std::fs::read_dir(&filters).map_or(0, |d| d.count()) < 3 {
        assert!(started.elapsed() < DEADLINE, "no trace filters fetched");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The join: the span published by one node, the log by the other.
    let (status, found) = search
        .get(&format!("/api/v1/traces/{}", hex::encode(trace)), &[])
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["spans"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found["spans"][0]["service"], "cart");
    assert_eq!(found["logs"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found["logs"][0]["body"], "from b one");

    // A split published after the search node started is taken in.
    send_logs(&b, "pay", [2; 16], &["later from b"]).await;
    assert_eq!(
        bodies_once_there(&search, "later", 1).await,
        ["later from b"]
    );
    let body = crate::common::wait_for_status(&search, "/readyz", 200).await;
    assert!(body.contains("storage: ok"), "{body}");

    // Exports to a search node are refused, and not as something to retry.
    let mut client = LogsServiceClient::connect(format!("http://{}", search.grpc))
        .await
        .unwrap();
    let refused = client
        .export(logs_request("cart", vec![record("lost?", vec![])]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused:?}");
    assert!(refused.message().contains("role = search"), "{refused:?}");
    let answer = search
        .client
        .post(search.url("/v1/logs"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 501);
    let answer: Value = answer.json().await.unwrap();
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("role = search"),
        "{answer}"
    );

    // Every node is listed with its role and address, alive; one that stops is not, soon.
    let (status, members) = search.get("/api/v1/cluster", &[]).await;
    assert_eq!(status, 200, "{members}");
    assert_eq!(members["node"], "search-1");
    let listed: Vec<(String, String, bool)> = members["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_string(),
                n["role"].as_str().unwrap().to_string(),
                n["alive"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("ingest-a".to_string(), "ingest".to_string(), true),
            ("ingest-b".to_string(), "ingest".to_string(), true),
            ("search-1".to_string(), "search".to_string(), true),
        ]
    );
    assert_eq!(
        members["nodes"][0]["advertise"],
        format!("http://{}", a.http)
    );
    a.stop().await;
    let started = Instant::now();
    loop {
        let (_, members) = search.get("/api/v1/cluster", &[]).await;
        if members["nodes"][0]["alive"] == false {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "ingest-a still alive: {members}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // PostgreSQL away: the search node says so and answers from the splits it last listed,
    // flagged partial (it cannot tell which ingest nodes are alive); once back, it is whole.
    pg.stop();
    let mut body = crate::common::wait_for_status(&search, "/readyz", 200).await;
    let started = Instant::now();
    while !body.contains("storage: failing") {
        assert!(started.elapsed() < DEADLINE, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        body = crate::common::wait_for_status(&search, "/readyz", 200).await;
    }
    let (status, found) = search
        .get(&format!("/api/v1/traces/{}", hex::encode(trace)), &[])
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["logs"][0]["body"], "from b one");
    assert_eq!(found["partial"], true, "{found}");
    pg.start_again();
    let started = Instant::now();
    while !body.contains("storage: ok") {
        assert!(started.elapsed() < DEADLINE, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        body = crate::common::wait_for_status(&search, "/readyz", 200).await;
    }

    search.stop().await;
    b.stop().await;
}

/// The trace `trace` as `search` answers it, once it has `spans` spans and `logs` logs and
/// its `partial` flag is `partial`.
async fn trace_once(
    search: &impl Node,
    trace: [u8; 16],
    (spans, logs): (usize, usize),
    partial: bool,
) -> Value {
    let started = Instant::now();
    loop {
        let (status, found) = get_json(
            search,
            &format!("/api/v1/traces/{}", hex::encode(trace)),
            &[],
        )
        .await;
        if status == 200
            && found["spans"].as_array().unwrap().len() == spans
            && found["logs"].as_array().unwrap().len() == logs
            && found["partial"] == partial
        {
            return found;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "wanted {spans} spans, {logs} logs, partial {partial}: {status} {found}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The records a histogram over `range` counts on `search`, once its `partial` flag is
/// `partial`.
async fn histogram_total(search: &impl Node, range: &[(&str, String)], partial: bool) -> u64 {
    let range: Vec<(&str, &str)> = range.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let started = Instant::now();
    loop {
        let (status, found) = get_json(search, "/api/v1/logs/histogram", &range).await;
        assert_eq!(status, 200, "{found}");
        if found["partial"] == partial {
            return found["buckets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["total"].as_u64().unwrap())
                .sum();
        }
        assert!(
            started.elapsed() < DEADLINE,
            "partial is not {partial}: {found}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Traces of service `cart` lasting at least 8 ms as `search` finds them, once there are
/// `want` of them.
async fn long_traces(search: &impl Node, want: usize) -> Value {
    let started = Instant::now();
    loop {
        let (status, found) = get_json(
            search,
            "/api/v1/traces",
            &[("service", "cart"), ("min_duration", "8ms"), ("start", "0")],
        )
        .await;
        assert_eq!(status, 200, "{found}");
        if found["traces"].as_array().unwrap().len() == want {
            return found;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "wanted {want} traces: {found}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A live tail (`/api/v1/logs/tail`) read as its events arrive.
struct Tail {
    response: reqwest::Response,
    pending: String,
    /// The data of its `ready` event.
    ready: Value,
}

impl Tail {
    /// The tail of `q` on `node`, once ready.
    async fn open(node: &impl Node, q: &str) -> Tail {
        let response = reqwest::Client::new()
            .get(format!("http://{}/api/v1/logs/tail", node.http_addr()))
            .query(&[("q", q)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut tail = Tail {
            response,
            pending: String::new(),
            ready: Value::Null,
        };
        let (event, data) = tail.next_event().await;
        assert_eq!(event, "ready", "{data}");
        tail.ready = serde_json::from_str(&data).unwrap();
        tail
    }

    /// The next event: its name and data.
    async fn next_event(&mut self) -> (String, String) {
        let started = Instant::now();
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(|v| v.trim_start().to_string())
                };
                if let Some(event) = field("event:") {
                    return (event, field("data:").unwrap_or_default());
                }
                continue;
            }
            let left = DEADLINE.saturating_sub(started.elapsed());
            let chunk = tokio::time::timeout(left, self.response.chunk())
                .await
                .expect("an event within the deadline")
                .unwrap()
                .expect("the tail goes on");
            self.pending.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The body of the next record it streams.
    async fn next_log(&mut self) -> String {
        loop {
            let (event, data) = self.next_event().await;
            if event == "log" {
                let log: Value = serde_json::from_str(&data).unwrap();
                return log["body"].as_str().unwrap().to_string();
            }
            assert_eq!(event, "missed", "{data}");
        }
    }
}

/// Where the nodes of a cluster of processes keep what they share: PostgreSQL, and the
/// S3-compatible server when there is one (required in CI), a directory otherwise.
struct Shared {
    pg: PgServer,
    storage: String,
    storage_env: Vec<(String, String)>,
    _bucket_dir: Option<tempfile::TempDir>,
}

impl Shared {
    async fn start() -> Option<Shared> {
        let pg = PgServer::start()?;
        let (storage, storage_env, bucket_dir) = match s3_endpoint() {
            Some(endpoint) => {
                let (url, env) = s3_bucket(&endpoint).await;
                (url, env, None)
            }
            None => {
                let dir = tempfile::tempdir().unwrap();
                (
                    format!("file://{}", dir.path().display()),
                    Vec::new(),
                    Some(dir),
                )
            }
        };
        Some(Shared {
            pg,
            storage,
            storage_env,
            _bucket_dir: bucket_dir,
        })
    }

    /// Node `id` of role `role` as its own `weft` process on `data_dir`: it seals a quiet
    /// hour within a second and keeps no local copy of what it published.
    fn spawn(&self, data_dir: &std::path::Path, id: &str, role: &str) -> WeftProcess {
        let metastore = self.pg.url();
        let mut env = vec![
            ("WEFT_ROLE", role),
            ("WEFT_NODE_ID", id),
            ("WEFT_STORAGE", self.storage.as_str()),
            ("WEFT_METASTORE", metastore.as_str()),
            ("WEFT_SEAL_INTERVAL", "1s"),
            ("WEFT_CACHE_BYTES", "0"),
        ];
        env.extend(
            self.storage_env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        WeftProcess::spawn_with(data_dir, &env)
    }
}

/// The cluster as it runs in production: PostgreSQL, object storage (the S3-compatible
/// server in CI), two ingest nodes and a search node, each its own process. Rows not yet
/// published are asked of the ingest nodes that hold them: a trace whose span and logs
/// reached different nodes is whole on the search node at once, each row once whether
/// published or not; log search pages across both nodes; a severity rule created on the
/// search node is enforced by both ingest nodes; after `kill -9` of an ingest node the
/// answers are partial and name it, and after its restart whole again; after `kill -9` of
/// the search node, another answers the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_processes_answers_whole_from_its_search_node_and_partial_without_a_node() {
    let Some(shared) = Shared::start().await else {
        return;
    };
    let trace = [0x5d; 16];
    let (a_dir, b_dir, search_dir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let a = shared.spawn(a_dir.path(), "ingest-a", "ingest");
    let b = shared.spawn(b_dir.path(), "ingest-b", "ingest");
    let search = shared.spawn(search_dir.path(), "search-1", "search");
    let (_, members) = get_json(&search, "/api/v1/cluster", &[]).await;
    assert_eq!(members["nodes"].as_array().unwrap().len(), 3, "{members}");

    // This hour's rows stay unpublished while it lasts.
    let now = now_nanos();
    send_span_at(&a, now, "cart", trace).await;
    send_logs_at(&b, now, "pay", trace, &["b now"]).await;
    let acked = Instant::now();
    let found = trace_once(&search, trace, (1, 1), false).await;
    eprintln!(
        "trace whole on the search node {:?} after the acks",
        acked.elapsed()
    );
    assert_eq!(found["spans"][0]["service"], "cart");
    assert_eq!(found["logs"][0]["body"], "b now");
    assert_eq!(found["missing_nodes"], serde_json::json!([]));

    // Log search pages through both nodes' records in one order: interleaved in time, pages
    // of three, each record once.
    let mut expected = Vec::new();
    for (server, name, offset) in [(&a, "a", 0), (&b, "b", 1)] {
        let records: Vec<_> = (0..6u64)
            .map(|i| {
                let body = format!("page {name}{i}");
                let time = now - 1_000 + 2 * i + offset;
                expected.push((time, body.clone()));
                let mut r = record(&body, vec![]);
                r.time_unix_nano = time;
                r
            })
            .collect();
        let mut client = LogsServiceClient::connect(format!("http://{}", server.grpc_addr()))
            .await
            .unwrap();
        client
            .export(logs_request("paging", records))
            .await
            .unwrap();
    }
    expected.sort();
    let newest_first: Vec<String> = expected.into_iter().rev().map(|(_, b)| b).collect();
    bodies_once_there(&search, "service:paging", 12).await;
    assert_eq!(
        page_through(&search, "service:paging", "3").await,
        newest_first
    );
    let histogram_range = [
        ("q", "service:paging".to_string()),
        ("start", (now - 1_000).to_string()),
        ("end", (now + 1_000).to_string()),
        ("buckets", "2".to_string()),
    ];
    assert_eq!(histogram_total(&search, &histogram_range, false).await, 12);
    // Layer peeling counts both nodes' records: facets, the field list, a comparison (against
    // the rest of the range: b's one record of service pay).
    let peel_range = [
        ("start", (now - 1_000).to_string()),
        ("end", (now + 1_000).to_string()),
    ];
    let peel = |path: &'static str, extra: &'static [(&'static str, &'static str)]| {
        let mut params: Vec<(&str, &str)> =
            peel_range.iter().map(|(k, v)| (*k, v.as_str())).collect();
        params.extend_from_slice(extra);
        let search = &search;
        async move {
            let (status, found) = get_json(search, path, &params).await;
            assert_eq!(status, 200, "{path}: {found}");
            assert_eq!(found["partial"], false, "{found}");
            found
        }
    };
    let facets = peel(
        "/api/v1/logs/facets",
        &[("q", "service:paging"), ("fields", "service")],
    )
    .await;
    assert_eq!(facets["total"], 12, "{facets}");
    assert_eq!(
        facets["facets"][0]["values"],
        serde_json::json!([{"value": "paging", "count": 12}])
    );
    let fields = peel("/api/v1/logs/fields", &[("q", "service:paging")]).await;
    let service = fields["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "service")
        .cloned();
    assert_eq!(
        service.map(|f| f["with_field"].clone()),
        Some(serde_json::json!(12)),
        "{fields}"
    );
    let compared = peel("/api/v1/logs/compare", &[("q", "service:paging")]).await;
    assert_eq!(
        (&compared["selection_total"], &compared["baseline_total"]),
        (&serde_json::json!(12), &serde_json::json!(1)),
        "{compared}"
    );

    // Trace search on the whole trace: this one's spans reached both nodes, 1 ms on a and
    // 5 ms on b, 10 ms apart from first start to last end, so only the whole trace passes a
    // minimum of 8 ms; Jaeger's search brings all its spans; the catalogs list what only the
    // nodes' newest rows hold.
    let long = [0x6e; 16];
    send_span_between(&a, "cart", long, (1, "GET /cart"), now, now + 1_000_000).await;
    send_span_between(
        &b,
        "pay",
        long,
        (2, "charge"),
        now + 5_000_000,
        now + 10_000_000,
    )
    .await;
    send_logs_at(&b, now + 6_000_000, "pay", long, &["charged"]).await;
    let found = long_traces(&search, 1).await;
    assert_eq!(found["partial"], false, "{found}");
    let summary = &found["traces"][0];
    assert_eq!(summary["trace_id"], hex::encode(long), "{found}");
    assert_eq!(summary["duration_ns"], "10000000", "{found}");
    assert_eq!(summary["span_count"], 2, "{found}");
    assert_eq!(summary["log_count"], 1, "{found}");
    assert_eq!(summary["services"], serde_json::json!(["cart", "pay"]));
    // Span statistics and the heatmap count the spans of both nodes: the long trace's two
    // and the first trace's one.
    let span_range = [
        ("start", (now - 1_000).to_string()),
        ("end", (now + 20_000_000).to_string()),
        ("group_by", "service".to_string()),
    ];
    let span_range: Vec<(&str, &str)> = span_range.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, stats) = get_json(&search, "/api/v1/spans/stats", &span_range).await;
    assert_eq!(status, 200, "{stats}");
    let groups: Vec<(String, u64)> = stats["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["key"][0].as_str().unwrap().to_string(),
                g["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        [("cart".to_string(), 2), ("pay".to_string(), 1)],
        "{stats}"
    );
    let (status, heatmap) = get_json(&search, "/api/v1/spans/heatmap", &span_range).await;
    assert_eq!(status, 200, "{heatmap}");
    assert_eq!(heatmap["total"], 3, "{heatmap}");
    let slowest = heatmap["cells"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|c| c["l"].as_u64().unwrap())
        .cloned();
    assert_eq!(
        slowest.map(|c| c["exemplar"].clone()),
        Some(serde_json::json!(hex::encode(long))),
        "the 5 ms span of b: {heatmap}"
    );
    // The service map and Jaeger's dependencies sum the calls each node paired: here a call
    // from shop to bank whose two spans both reached node a.
    let call = [0x7f; 16];
    send_span_between(&a, "shop", call, (3, "GET /shop"), now, now + 2_000_000).await;
    send_child_span(&a, "bank", call, (4, 3), now + 100).await;
    let started = Instant::now();
    loop {
        let (status, map) = get_json(&search, "/api/v1/service-map", &[]).await;
        assert_eq!(status, 200, "{map}");
        let calls: Vec<(String, String, u64)> = map["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["parent"].as_str().unwrap().to_string(),
                    c["child"].as_str().unwrap().to_string(),
                    c["calls"].as_u64().unwrap(),
                )
            })
            .collect();
        if !calls.is_empty() {
            assert_eq!(
                calls,
                [("shop".to_string(), "bank".to_string(), 1)],
                "{map}"
            );
            assert_eq!(map["partial"], false, "{map}");
            break;
        }
        assert!(started.elapsed() < DEADLINE, "no call on the map: {map}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // gRPC QueryService on the search node goes through the same paths.
    let mut grpc = QueryServiceClient::connect(format!("http://{}", search.grpc_addr()))
        .await
        .unwrap();
    let traces = grpc
        .search_traces(SearchTracesRequest {
            service: "cart".into(),
            min_duration_ns: 8_000_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(traces.traces.len(), 1, "{traces:?}");
    assert_eq!(traces.traces[0].span_count, 2);
    assert_eq!(traces.missing_nodes, Vec::<String>::new());
    let whole = grpc
        .get_trace(GetTraceRequest {
            trace_id: long.to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((whole.spans.len(), whole.logs.len()), (2, 1));
    let (status, jaeger) = get_json(
        &search,
        "/api/traces",
        &[("service", "pay"), ("lookback", "1h")],
    )
    .await;
    assert_eq!(status, 200, "{jaeger}");
    assert_eq!(jaeger["data"].as_array().unwrap().len(), 1, "{jaeger}");
    assert_eq!(
        jaeger["data"][0]["spans"].as_array().unwrap().len(),
        2,
        "{jaeger}"
    );
    let (_, services) = get_json(&search, "/api/v1/services", &[]).await;
    let counts = |name: &str| {
        services["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"] == name)
            .map(|s| {
                (
                    s["span_count"].as_u64().unwrap(),
                    s["log_count"].as_u64().unwrap(),
                )
            })
    };
    assert_eq!(counts("cart"), Some((2, 0)), "{services}");
    assert_eq!(counts("pay"), Some((1, 2)), "{services}");
    assert_eq!(counts("paging"), Some((0, 12)), "{services}");
    let (_, operations) = get_json(&search, "/api/operations", &[("service", "pay")]).await;
    assert_eq!(
        operations["data"],
        serde_json::json!([{"name": "charge", "spanKind": "server"}]),
        "{operations}"
    );

    // A severity rule created on the search node is enforced by both ingest nodes.
    let created = reqwest::Client::new()
        .post(format!(
            "http://{}/api/v1/severity/rules",
            search.http_addr()
        ))
        .json(&serde_json::json!({
            "selector": {"service": "quiet"}, "action": {"min_severity": "WARN"},
            "ttl": "15m", "reason": "INC-9"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let rule: Value = created.json().await.unwrap();
    for server in [&a, &b] {
        let started = Instant::now();
        loop {
            let (_, rules) = get_json(server, "/api/v1/severity/rules", &[]).await;
            if rules["rules"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["id"] == rule["id"])
            {
                break;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{} lacks the rule",
                server.http_addr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut debug = record("quiet debug", vec![]);
        debug.severity_number = 5;
        let mut error = record(&format!("quiet error on {}", server.http_addr()), vec![]);
        error.severity_number = 17;
        let mut client = LogsServiceClient::connect(format!("http://{}", server.grpc_addr()))
            .await
            .unwrap();
        client
            .export(logs_request("quiet", vec![debug, error]))
            .await
            .unwrap();
    }
    let quiet = bodies_once_there(&search, "service:quiet", 2).await;
    let mut errors = vec![
        format!("quiet error on {}", a.http_addr()),
        format!("quiet error on {}", b.http_addr()),
    ];
    errors.sort();
    assert_eq!(
        quiet, errors,
        "the debug records were dropped on both nodes"
    );

    // Live tail on the search node streams what either ingest node acknowledges.
    let mut tail = Tail::open(&search, "service:tailed").await;
    assert_eq!(tail.ready["partial"], false, "{}", tail.ready);
    for (server, body) in [(&a, "tailed on a"), (&b, "tailed on b")] {
        send_logs_at(server, now_nanos(), "tailed", [9; 16], &[body]).await;
    }
    let mut tailed = vec![tail.next_log().await, tail.next_log().await];
    tailed.sort();
    assert_eq!(tailed, ["tailed on a", "tailed on b"]);

    // A row of a past hour is published (and evicted) by its node: read from its split.
    send_logs(&a, "cart", trace, &["a then"]).await;
    wait_until_remote(&a, 1).await;
    trace_once(&search, trace, (1, 2), false).await;
    // A late row of that hour brings the partition back to node a, unpublished, beside its
    // split: the search node takes the partition from the node and leaves the split out.
    send_logs(&a, "cart", trace, &["a late"]).await;
    let found = trace_once(&search, trace, (1, 3), false).await;
    let mut bodies: Vec<&str> = found["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["body"].as_str().unwrap())
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["a late", "a then", "b now"], "each row once");

    // kill -9 of node b: its unpublished rows are missing, and the answers say so.
    tokio::task::spawn_blocking(move || b.kill()).await.unwrap();
    let found = trace_once(&search, trace, (1, 2), true).await;
    assert_eq!(found["missing_nodes"], serde_json::json!(["ingest-b"]));
    let mut grpc = QueryServiceClient::connect(format!("http://{}", search.grpc_addr()))
        .await
        .unwrap();
    let page = grpc
        .search_logs(SearchLogsRequest {
            query: "service:paging".into(),
            start_unix_nano: 1,
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (page.logs.len(), page.missing_nodes),
        (6, vec!["ingest-b".to_string()])
    );
    let mut tail_without_b = Tail::open(&search, "service:tailed").await;
    assert_eq!(
        tail_without_b.ready["missing_nodes"],
        serde_json::json!(["ingest-b"]),
        "{}",
        tail_without_b.ready
    );
    send_logs_at(&a, now_nanos(), "tailed", [9; 16], &["tailed on a alone"]).await;
    assert_eq!(tail_without_b.next_log().await, "tailed on a alone");
    // The tail opened before the kill goes on with a's records.
    assert_eq!(tail.next_log().await, "tailed on a alone");
    let (status, page) = get_json(
        &search,
        "/api/v1/logs",
        &[("q", "service:paging"), ("start", "0"), ("limit", "100")],
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["partial"], true, "{page}");
    assert_eq!(page["missing_nodes"], serde_json::json!(["ingest-b"]));
    assert_eq!(
        page["logs"].as_array().unwrap().len(),
        6,
        "a's records: {page}"
    );
    assert_eq!(histogram_total(&search, &histogram_range, true).await, 6);
    let mut params: Vec<(&str, &str)> = peel_range.iter().map(|(k, v)| (*k, v.as_str())).collect();
    params.extend([("q", "service:paging"), ("fields", "service")]);
    let (_, facets) = get_json(&search, "/api/v1/logs/facets", &params).await;
    assert_eq!(
        (
            &facets["total"],
            &facets["partial"],
            &facets["missing_nodes"]
        ),
        (
            &serde_json::json!(6),
            &serde_json::json!(true),
            &serde_json::json!(["ingest-b"])
        ),
        "{facets}"
    );
    let found = long_traces(&search, 0).await;
    assert_eq!(found["partial"], true, "{found}");
    assert_eq!(found["missing_nodes"], serde_json::json!(["ingest-b"]));
    // Jaeger's APIs say so too: v1 in its envelope's errors, beside the data; v3, whose
    // answers have no such place, in a header.
    let (status, jaeger) =
        get_json(&search, &format!("/api/traces/{}", hex::encode(trace)), &[]).await;
    assert_eq!(status, 200, "{jaeger}");
    assert_eq!(jaeger["data"][0]["traceID"], hex::encode(trace), "{jaeger}");
    let message = jaeger["errors"][0]["msg"].as_str().unwrap_or_default();
    assert!(
        message.contains("partial answer: ingest nodes ingest-b"),
        "{jaeger}"
    );
    let v3 = reqwest::get(format!(
        "http://{}/api/v3/traces/{}",
        search.http_addr(),
        hex::encode(trace)
    ))
    .await
    .unwrap();
    assert_eq!(v3.status(), 200);
    assert_eq!(
        v3.headers()
            .get("weft-missing-nodes")
            .map(|v| v.to_str().unwrap()),
        Some("ingest-b")
    );

    // Restarted on its data directory: whole again, nothing lost or doubled.
    let b = shared.spawn(b_dir.path(), "ingest-b", "ingest");
    trace_once(&search, trace, (1, 3), false).await;
    let (_, jaeger) = get_json(&search, &format!("/api/traces/{}", hex::encode(trace)), &[]).await;
    assert!(jaeger["errors"].is_null(), "whole again: {jaeger}");
    assert_eq!(
        page_through(&search, "service:paging", "5").await,
        newest_first
    );
    assert_eq!(histogram_total(&search, &histogram_range, false).await, 12);
    // The tail opened before the kill follows b again, at its new address. (Records b takes
    // before the tail is back are not streamed: a tail shows what arrives while it is open.)
    let started = Instant::now();
    loop {
        send_logs_at(&b, now_nanos(), "tailed", [9; 16], &["tailed on b again"]).await;
        let next = tokio::time::timeout(Duration::from_millis(500), tail.next_log()).await;
        if let Ok(body) = next {
            assert_eq!(body, "tailed on b again");
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the tail never followed b again"
        );
    }
    let found = long_traces(&search, 1).await;
    assert_eq!(found["traces"][0]["span_count"], 2, "{found}");
    assert_eq!(found["traces"][0]["log_count"], 1, "{found}");

    // A search node down: another, started on an empty directory, answers the same; a search
    // node held nothing of its own to lose.
    let other_dir = tempfile::tempdir().unwrap();
    let other = shared.spawn(other_dir.path(), "search-2", "search");
    tokio::task::spawn_blocking(move || search.kill())
        .await
        .unwrap();
    trace_once(&other, trace, (1, 3), false).await;
    assert_eq!(
        page_through(&other, "service:paging", "4").await,
        newest_first
    );
    assert_eq!(histogram_total(&other, &histogram_range, false).await, 12);

    for node in [other, a, b] {
        let status = node.terminate().await;
        assert!(status.success(), "{status}");
    }
}

/// Live tails, fan-outs and the cluster page all ask for the node list; callers at once share
/// one read of PostgreSQL instead of each making their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_at_once_share_one_read_of_the_node_list() {
    let Some(pg) = PgServer::start() else {
        return;
    };
    let postgres = weft::metastore::postgres::PostgresMetastore::connect(&pg.url())
        .await
        .unwrap();
    let cluster = weft::cluster::Cluster::new(
        std::sync::Arc::new(postgres),
        "search-1".into(),
        Role::Search,
        "http://127.0.0.1:1".into(),
    );
    cluster.register().await;
    let lists = futures_util::future::join_all((0..50).map(|_| cluster.members())).await;
    for list in &lists {
        let ids: Vec<&str> = list
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.id.as_str())
            .collect();
        assert_eq!(ids, ["search-1"]);
    }
    // Exactly one: the other 49 wait for the first read and take its answer, which stays
    // fresh for 500 ms (MEMBERS_FRESH) — the margin for the waiters to be scheduled.
    let reads = cluster.membership_reads();
    assert_eq!(reads, 1, "50 callers at once made {reads} reads");
}

/// Log patterns through a search node: each ingest node holds part of the records (and of one
/// template only the lines that leave a word constant, `region eu` on one node and `region
/// us`/`ap` on the other), and the search node's answer is the whole data set's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_node_finds_the_patterns_of_every_ingest_nodes_records() {
    use crate::patterns::{NEW, counts, expected, patterns_once, records};
    let Some(pg) = PgServer::start() else {
        return;
    };
    let bucket = tempfile::tempdir().unwrap();
    let a = start_node(bucket.path(), &pg, "ingest-a", Role::Ingest).await;
    let b = start_node(bucket.path(), &pg, "ingest-b", Role::Ingest).await;
    // Twenty minutes inside one hour that is over: one partition per node.
    let base = (now_nanos() - 3 * HOUR) / HOUR * HOUR + 5 * 60 * 1_000_000_000;
    let all = records(base);
    let total = all.len() as u64;
    let (mut to_a, mut to_b) = (Vec::new(), Vec::new());
    for (i, r) in all.into_iter().enumerate() {
        let body = format!("{:?}", r.body);
        let first = if body.contains("cache miss") {
            body.contains("region eu")
        } else {
            i % 2 == 0
        };
        if first { to_a.push(r) } else { to_b.push(r) }
    }
    a.export_logs("shop", to_a).await;
    b.export_logs("shop", to_b).await;
    wait_until_remote(&a, 1).await;
    wait_until_remote(&b, 1).await;

    let search = start_node(bucket.path(), &pg, "search-1", Role::Search).await;
    let start = (base - 60 * 1_000_000_000).to_string();
    let end = (base + 21 * 60 * 1_000_000_000).to_string();
    let range = [
        ("q", "service:shop"),
        ("start", start.as_str()),
        ("end", end.as_str()),
    ];
    let answer = patterns_once(&search, &range, total).await;
    assert_eq!(counts(&answer), expected(), "{answer}");
    assert_eq!(answer["partial"], false);

    let middle = (base + 10 * 60 * 1_000_000_000).to_string();
    let mut since = range.to_vec();
    since.push(("new_since", middle.as_str()));
    let (status, new) = get_json(&search, "/api/v1/logs/patterns", &since).await;
    assert_eq!(status, 200, "{new}");
    assert_eq!(counts(&new), [(NEW.to_string(), 12)], "{new}");

    // Peeling by a pattern on the search node reads both nodes' records.
    let only = format!("service:shop pattern:\"{NEW}\"");
    assert_eq!(page_through(&search, &only, "100").await.len(), 12);
}
