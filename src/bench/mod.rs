//! `weft bench`: drives a weft (one it starts, or `--target`) through its public protocols only
//! — OTLP/gRPC in, the HTTP query API and `/metrics` out — and measures ingest rate, weft's CPU
//! per record (from /proc, so it holds on a shared machine), ack-to-searchable delay, query
//! latencies at the loaded size, and footprint.

mod kill_loop;
mod overload;
mod process;
pub mod traffic;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use process::ServerProcess;
use traffic::{Generator, TrafficConfig, logs_request, spans_request};

/// Options of `weft bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// gRPC address of a running weft (host:port); without it, bench starts its own. Several,
    /// comma-separated (the ingest nodes of a cluster): the exporting clients take them in
    /// turn.
    #[arg(long, requires = "target_http", value_delimiter = ',')]
    pub target_grpc: Vec<String>,
    /// HTTP address of that weft (host:port): freshness probes and queries go there (a
    /// cluster's search node).
    #[arg(long, requires = "target_grpc")]
    pub target_http: Option<String>,
    /// Process IDs of the wefts, to read their CPU time and memory from /proc; with several
    /// `--target-grpc`, one per address in the same order.
    #[arg(long, value_delimiter = ',')]
    pub target_pid: Vec<u32>,
    /// Concurrent exporting clients.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Log records per export request.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// How long to send.
    #[arg(long, default_value = "20s", value_parser = crate::config::parse_duration)]
    pub duration: Duration,
    /// Stop after this many log records instead (whichever comes first).
    #[arg(long)]
    pub records: Option<u64>,
    /// Stamp the traffic as if sent over this long, up to now: timestamps move from now minus
    /// this to now as the --records are sent (`--history 7d --records 10000000` fills a week of
    /// hour partitions). The weft bench starts then keeps a day more than this.
    #[arg(long, requires = "records", value_parser = crate::config::parse_duration)]
    pub history: Option<Duration>,
    /// Services in the generated traffic.
    #[arg(long, default_value_t = 8)]
    pub services: usize,
    /// Fraction of traces that end in an error.
    #[arg(long, default_value_t = 0.02)]
    pub error_rate: f64,
    /// Freshness probes per second.
    #[arg(long, default_value_t = 5.0)]
    pub probes_per_sec: f64,
    /// Runs of each query.
    #[arg(long, default_value_t = 200)]
    pub queries: usize,
    /// Data directory for the weft bench starts (default: a temporary one).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The shape of the traffic: `default` (weft's own) or `peer` (the Quickwit comparison's).
    #[arg(long, value_enum, default_value_t = traffic::Profile::Default)]
    pub profile: traffic::Profile,
    /// Send log records only (no spans), to measure the cost of a log record alone.
    #[arg(long, conflicts_with = "spans_only")]
    pub logs_only: bool,
    /// Send spans only (no log records but the freshness probes), to measure the cost of a
    /// span alone; `--batch` then counts spans.
    #[arg(long)]
    pub spans_only: bool,
    /// Export over OTLP/HTTP (protobuf) instead of gRPC.
    #[arg(long)]
    pub http: bool,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// A few seconds end to end, to check the tool works; fails only if something is broken.
    #[arg(long)]
    pub smoke: bool,
    /// Overload: measure the rate weft sustains, then offer --overload-factor times it for
    /// --duration (log records only, open loop) with queries alongside.
    #[arg(long, conflicts_with_all = ["target_grpc", "kill_loop"])]
    pub overload: bool,
    /// How many times the sustained rate --overload offers.
    #[arg(long, default_value_t = 2.0)]
    pub overload_factor: f64,
    /// SIGKILL weft at random moments under load this many times on one data directory, then
    /// check that every acknowledged batch is there exactly once.
    #[arg(long, conflicts_with = "target_grpc")]
    pub kill_loop: Option<usize>,
}

#[derive(Default)]
struct Counters {
    logs: AtomicU64,
    spans: AtomicU64,
    otlp_bytes: AtomicU64,
    log_bytes: AtomicU64,
    refusals: AtomicU64,
    failures: AtomicU64,
}

/// Runs the benchmark.
pub fn run(mut args: BenchArgs) -> anyhow::Result<()> {
    if args.smoke {
        args.clients = args.clients.min(2);
        args.batch = args.batch.min(200);
        args.duration = args.duration.min(Duration::from_secs(3));
        args.queries = args.queries.min(5);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let special = if args.overload {
            Some(overload::run(&args).await?)
        } else if let Some(rounds) = args.kill_loop {
            Some(kill_loop::run(&args, rounds).await?)
        } else {
            None
        };
        match special {
            Some(report) => {
                if let Some(path) = &args.json {
                    std::fs::write(path, serde_json::to_string_pretty(&report)?)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                }
                Ok(())
            }
            None => run_async(args).await,
        }
    })
}

async fn run_async(args: BenchArgs) -> anyhow::Result<()> {
    let (server, targets, http, pids) = match (args.target_grpc.as_slice(), &args.target_http) {
        ([_, ..], Some(h)) => (
            None,
            args.target_grpc.clone(),
            h.clone(),
            args.target_pid.clone(),
        ),
        _ => {
            // Records older than the retention are refused, so a history needs a longer one.
            let env: Vec<(&str, String)> = match args.history {
                Some(history) => {
                    vec![("WEFT_RETENTION", format!("{}s", history.as_secs() + 86_400))]
                }
                None => Vec::new(),
            };
            let server = ServerProcess::start_with(args.data_dir.clone(), &env)?;
            let (g, h, p) = (server.grpc.clone(), server.http.clone(), vec![server.pid]);
            (Some(server), vec![g], h, p)
        }
    };
    if !pids.is_empty() && pids.len() != targets.len() {
        bail!(
            "--target-pid names {} processes for {} --target-grpc addresses: one per address",
            pids.len(),
            targets.len()
        );
    }
    if args.clients < targets.len() {
        bail!(
            "{} --clients cannot send to {} --target-grpc addresses",
            args.clients,
            targets.len()
        );
    }
    let grpc = targets[0].clone();
    eprintln!(
        "bench: weft at grpc={grpc} http={http}; sending for {:?} with {} clients, {} records per batch",
        args.duration, args.clients, args.batch
    );
    let http_client = reqwest::Client::new();
    let cpu_before: Vec<Option<f64>> = pids.iter().map(|p| process::cpu_seconds(*p)).collect();
    // Log records and spans each target acknowledged.
    let per_target: Vec<Arc<AtomicU64>> = targets.iter().map(|_| Arc::default()).collect();

    // Ingest with freshness probes alongside.
    let counters = Arc::new(Counters::default());
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let trace_sample = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    // Through the load, the queries and the settled searches.
    let sampling_done = Arc::new(AtomicBool::new(false));
    let anon_peak = process::sample_peak_anon_rss(pids.clone(), sampling_done.clone());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..args.clients {
        let target = client % targets.len();
        tasks.push(tokio::spawn(export_loop(
            client as u64,
            targets[target].clone(),
            args.clone(),
            (counters.clone(), per_target[target].clone()),
            latencies.clone(),
            trace_sample.clone(),
            stop.clone(),
        )));
    }
    let probes = tokio::spawn(probe_loop(
        grpc.clone(),
        http.clone(),
        args.probes_per_sec,
        stop.clone(),
    ));
    let deadline = started + args.duration;
    // Until the duration ends or every client has sent its share of --records.
    while Instant::now() < deadline && !tasks.iter().all(|t| t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await??;
    }
    let send_seconds = started.elapsed().as_secs_f64();
    let freshness = probes.await??;
    wait_for_index(&http_client, &http).await?;
    let cpu_after: Vec<Option<f64>> = pids.iter().map(|p| process::cpu_seconds(*p)).collect();

    let logs = counters.logs.load(Ordering::Relaxed);
    let spans = counters.spans.load(Ordering::Relaxed);
    let otlp_bytes = counters.otlp_bytes.load(Ordering::Relaxed);
    if logs + spans == 0 {
        bail!("no record was acknowledged");
    }
    let mut export_latencies = latencies.lock().await.clone();

    // Queries at the loaded size.
    let sample = trace_sample.lock().await.clone();
    let query_results =
        run_queries(&http_client, &http, &sample, args.queries, args.profile).await?;

    // Merges go on after the load stops; the figure users compare is the settled one.
    let settled = match &server {
        Some(s) => Some(settled_footprint(&s.data_dir.join("index")).await?),
        None => None,
    };
    // The searches whose tail the load's merges lengthen, again on the store at rest.
    let settled_searches = match &server {
        Some(_) => {
            Some(settled_log_searches(&http_client, &http, args.queries, args.profile).await?)
        }
        None => None,
    };
    let (logs_bytes, spans_bytes, wal_bytes) = match &server {
        Some(s) => (
            process::dir_bytes(&s.data_dir.join("index").join("logs")),
            process::dir_bytes(&s.data_dir.join("index").join("spans")),
            process::dir_bytes(&s.data_dir.join("wal")),
        ),
        None => (0, 0, 0),
    };
    let cpus: Vec<Option<f64>> = cpu_before
        .iter()
        .zip(&cpu_after)
        .map(|(a, b)| Some((*b)? - (*a)?))
        .collect();
    // Every process's CPU together; unknown if any is.
    let cpu: Option<f64> = match cpus.as_slice() {
        [] => None,
        all => all.iter().copied().sum(),
    };
    // Both peaks over the same stretch: the load, the queries and the settled searches.
    sampling_done.store(true, Ordering::Relaxed);
    let anon_peak = anon_peak.await?;
    let peak_rss = pids
        .iter()
        .filter_map(|p| process::peak_rss_bytes(*p))
        .max();
    let records = logs + spans;
    // With several processes: each one's records, CPU and memory.
    let nodes: Vec<Value> = if pids.len() > 1 {
        pids.iter()
            .enumerate()
            .map(|(i, pid)| {
                let acked = per_target[i].load(Ordering::Relaxed);
                json!({
                    "grpc": targets[i],
                    "pid": pid,
                    "records": acked,
                    "cpu_seconds": cpus[i],
                    "records_per_cpu_second": cpus[i].map(|c| acked as f64 / c),
                    "peak_rss_bytes": process::peak_rss_bytes(*pid),
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let report = json!({
        "machine": process::machine_description(),
        "settings": {
            "clients": args.clients, "batch": args.batch, "seconds": send_seconds,
            "services": args.services, "error_rate": args.error_rate,
            "profile": format!("{:?}", args.profile).to_lowercase(),
            "logs_only": args.logs_only, "spans_only": args.spans_only, "transport": if args.http { "http/protobuf" } else { "grpc" },
        },
        "ingest": {
            "log_records": logs,
            "spans": spans,
            "log_records_per_sec": logs as f64 / send_seconds,
            "records_per_sec": records as f64 / send_seconds,
            "otlp_mb_per_sec": otlp_bytes as f64 / send_seconds / 1e6,
            "otlp_bytes_per_log_record": counters.log_bytes.load(Ordering::Relaxed) as f64 / logs as f64,
            "weft_cpu_seconds": cpu,
            "weft_cpu_seconds_per_million_records": cpu.map(|c| c / records as f64 * 1e6),
            "records_per_weft_cpu_second": cpu.map(|c| records as f64 / c),
            "log_records_per_weft_cpu_second": cpu.map(|c| logs as f64 / c),
            "export_latency_ms": percentiles(&mut export_latencies),
            "refusals": counters.refusals.load(Ordering::Relaxed),
            "failures": counters.failures.load(Ordering::Relaxed),
            "nodes": nodes,
        },
        "freshness_ms": freshness,
        "queries_ms": query_results,
        "queries_ms_settled": settled_searches,
        "footprint": {
            "index_bytes_logs": logs_bytes,
            "index_bytes_spans": spans_bytes,
            "bytes_per_log_record": (server.is_some()).then(|| logs_bytes as f64 / logs as f64),
            "bytes_per_span": (server.is_some() && spans > 0).then(|| spans_bytes as f64 / spans as f64),
            "wal_bytes_after": wal_bytes,
            "settled": settled.as_ref().map(|(l, s)| json!({
                "index_bytes_per_log_record": per_record(l.on_disk, logs),
                "index_bytes_per_span": per_record(s.on_disk, spans),
                "log_bytes_per_record_by_part": by_part(l, logs),
                "span_bytes_per_record_by_part": by_part(s, spans),
            })),
            "weft_peak_rss_bytes": peak_rss,
            // Heap and stacks only: the peak above also counts mapped index pages, which the
            // kernel drops and rereads at will.
            "weft_peak_anonymous_rss_bytes": anon_peak,
        },
    });
    print_table(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.smoke {
        let found = report["freshness_ms"]["count"].as_u64().unwrap_or(0);
        if found == 0 {
            bail!("smoke: no freshness probe became searchable");
        }
    }
    if let Some(server) = server {
        server.stop()?;
    }
    Ok(())
}

async fn export_loop(
    client: u64,
    grpc: String,
    args: BenchArgs,
    (counters, target_records): (Arc<Counters>, Arc<AtomicU64>),
    latencies: Arc<Mutex<Vec<f64>>>,
    trace_sample: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let endpoint = format!("http://{grpc}");
    let http_client = reqwest::Client::new();
    let http_logs_url = format!(
        "http://{}/v1/logs",
        args.target_http.clone().unwrap_or_default()
    );
    let logs_client = LogsServiceClient::connect(endpoint.clone())
        .await
        .context("cannot connect to weft's gRPC port")?
        .max_encoding_message_size(usize::MAX);
    let traces_client = TraceServiceClient::connect(endpoint)
        .await?
        .max_encoding_message_size(usize::MAX);
    let mut generator = Generator::new(
        0x5eed + client,
        TrafficConfig {
            services: args.services,
            error_rate: args.error_rate,
            profile: args.profile,
        },
    );
    let per_client_quota = args.records.map(|r| r / args.clients as u64);
    // What the quota and the batch size count: log records, or spans with `--spans-only`.
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if per_client_quota.is_some_and(|q| sent >= q) {
            break;
        }
        let now = match (args.history, per_client_quota) {
            // As far into the history as this client is into its quota.
            (Some(history), Some(quota)) => {
                let history = history.as_nanos() as u64;
                let progress = sent.min(quota) as f64 / quota.max(1) as f64;
                process::now_nanos().saturating_sub(history) + (history as f64 * progress) as u64
            }
            _ => process::now_nanos(),
        };
        let mut logs = Vec::with_capacity(args.batch);
        let mut spans = Vec::new();
        while (if args.spans_only {
            spans.len()
        } else {
            logs.len()
        }) < args.batch
        {
            let trace = generator.trace(now);
            {
                let mut sample = trace_sample.lock().await;
                // A trace ID that is sent: with log records alone, one of theirs (in the peer
                // profile they carry IDs of their own).
                let id = match (args.logs_only, trace.logs.first()) {
                    (true, Some((_, log))) => hex::encode(&log.trace_id),
                    (true, None) => String::new(),
                    (false, _) => hex::encode(trace.trace_id),
                };
                if sample.len() < 1000 && !id.is_empty() {
                    sample.push(id);
                }
            }
            if !args.spans_only {
                logs.extend(trace.logs);
            }
            spans.extend(trace.spans);
        }
        let log_count = logs.len() as u64;
        let span_count = spans.len() as u64;
        let logs_req = logs_request(logs);
        let spans_req = spans_request(spans);
        let log_bytes = logs_req.encoded_len() as u64;
        let span_bytes = spans_req.encoded_len() as u64;
        if !args.spans_only {
            let latency = until_accepted(&counters, "log", || {
                // Clients are handles to one connection; each attempt owns a clone.
                let mut grpc = logs_client.clone();
                let http = args
                    .http
                    .then(|| (http_client.clone(), http_logs_url.clone()));
                let request = logs_req.clone();
                async move {
                    match http {
                        Some((client, url)) => send_http(&client, &url, &request).await,
                        None => grpc.export(request).await.map(|_| ()),
                    }
                }
            })
            .await?;
            latencies.lock().await.push(latency.as_secs_f64() * 1e3);
            counters.logs.fetch_add(log_count, Ordering::Relaxed);
            target_records.fetch_add(log_count, Ordering::Relaxed);
            counters.otlp_bytes.fetch_add(log_bytes, Ordering::Relaxed);
            counters.log_bytes.fetch_add(log_bytes, Ordering::Relaxed);
        }
        if !args.logs_only {
            let latency = until_accepted(&counters, "span", || {
                let mut grpc = traces_client.clone();
                let request = spans_req.clone();
                async move { grpc.export(request).await.map(|_| ()) }
            })
            .await?;
            if args.spans_only {
                latencies.lock().await.push(latency.as_secs_f64() * 1e3);
            }
            counters.spans.fetch_add(span_count, Ordering::Relaxed);
            target_records.fetch_add(span_count, Ordering::Relaxed);
            counters.otlp_bytes.fetch_add(span_bytes, Ordering::Relaxed);
        }
        sent += if args.spans_only {
            span_count
        } else {
            log_count
        };
    }
    Ok(())
}

/// Sends until weft accepts, backing off while it answers UNAVAILABLE (counted as refusals).
/// Returns how long the accepted attempt took.
async fn until_accepted<F, Fut>(
    counters: &Counters,
    what: &str,
    mut send: F,
) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    loop {
        let started = Instant::now();
        match send().await {
            Ok(()) => return Ok(started.elapsed()),
            Err(status) if status.code() == tonic::Code::Unavailable => {
                counters.refusals.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => {
                counters.failures.fetch_add(1, Ordering::Relaxed);
                bail!("{what} export failed: {status}");
            }
        }
    }
}

/// One OTLP/HTTP protobuf export, with HTTP answers mapped onto the gRPC codes the loop
/// understands (503 is "retry").
async fn send_http(
    client: &reqwest::Client,
    url: &str,
    request: &opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest,
) -> Result<(), tonic::Status> {
    let response = client
        .post(url)
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .await
        .map_err(|e| tonic::Status::unknown(e.to_string()))?;
    match response.status().as_u16() {
        200 => Ok(()),
        503 => Err(tonic::Status::unavailable("503")),
        code => Err(tonic::Status::unknown(format!("HTTP {code}"))),
    }
}

/// Sends single-record probes and measures ack → found by search.
async fn probe_loop(
    grpc: String,
    http: String,
    per_sec: f64,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Value> {
    let mut client = LogsServiceClient::connect(format!("http://{grpc}")).await?;
    let http_client = reqwest::Client::new();
    let interval = Duration::from_secs_f64(1.0 / per_sec.max(0.1));
    let mut delays = Vec::new();
    let mut missed = 0u64;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(process::now_nanos());
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let next = Instant::now() + interval;
        n += 1;
        let token = format!("probe{n}q{}", rng.random::<u32>());
        let record = LogRecord {
            time_unix_nano: process::now_nanos(),
            severity_number: 9,
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(token.clone())),
            }),
            ..Default::default()
        };
        client
            .export(logs_request(vec![(
                traffic::Origin {
                    service: 0,
                    host: 0,
                },
                record,
            )]))
            .await?;
        let acked = Instant::now();
        loop {
            let body: Value = http_client
                .get(format!("http://{http}/api/v1/logs"))
                .query(&[("q", token.as_str()), ("limit", "1")])
                .send()
                .await?
                .json()
                .await?;
            if body["logs"].as_array().is_some_and(|l| !l.is_empty()) {
                delays.push(acked.elapsed().as_secs_f64() * 1e3);
                break;
            }
            if acked.elapsed() > Duration::from_secs(30) {
                missed += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep_until(next.into()).await;
    }
    let mut result = percentiles(&mut delays);
    result["missed"] = json!(missed);
    Ok(result)
}

fn per_record(bytes: u64, records: u64) -> Option<f64> {
    (records > 0).then(|| bytes as f64 / records as f64)
}

fn by_part(f: &weft_index::footprint::Footprint, records: u64) -> Value {
    f.by_part()
        .into_iter()
        .map(|(part, bytes)| (part.to_string(), json!(per_record(bytes, records))))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The index's footprint once merges have settled: its size unchanged for 3 s in a row (at
/// most 120 s of waiting), then measured per part and field.
async fn settled_footprint(
    index: &std::path::Path,
) -> anyhow::Result<(
    weft_index::footprint::Footprint,
    weft_index::footprint::Footprint,
)> {
    let started = Instant::now();
    let mut last = None;
    let mut steady = 0;
    while steady < 3 && started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let size = process::dir_bytes(index);
        steady = if last == Some(size) { steady + 1 } else { 0 };
        last = Some(size);
    }
    let index = index.to_path_buf();
    Ok(tokio::task::spawn_blocking(move || {
        Ok::<_, weft_index::IndexError>((
            weft_index::footprint::footprint(&index, weft_index::Signal::Logs)?,
            weft_index::footprint::footprint(&index, weft_index::Signal::Spans)?,
        ))
    })
    .await??)
}

async fn wait_for_index(client: &reqwest::Client, http: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let text = client
            .get(format!("http://{http}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let lag = text
            .lines()
            .find_map(|l| l.strip_prefix("weft_index_lag_bytes "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if lag == Some(0.0) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("weft did not catch up with indexing within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn timed_get(
    client: &reqwest::Client,
    url: &str,
    query: &[(&str, &str)],
) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let response = client.get(url).query(query).send().await?;
    let status = response.status();
    let _ = response.bytes().await?;
    if !status.is_success() {
        bail!("{url} answered {status}");
    }
    Ok(t0.elapsed().as_secs_f64() * 1e3)
}

async fn run_queries(
    client: &reqwest::Client,
    http: &str,
    traces: &[String],
    runs: usize,
    profile: traffic::Profile,
) -> anyhow::Result<Value> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    // The words of this profile's bodies: the most common, its follower (for a phrase of the
    // two), and rare ones.
    let common = traffic::body_word(profile, 0);
    let phrase = format!("\"{common} {}\"", traffic::body_word(profile, 1));
    let logs_url = format!("http://{http}/api/v1/logs");
    let all_time = [("start", "0")];
    let mut by_id = Vec::new();
    let mut selective = Vec::new();
    let mut broad = Vec::new();
    let mut phrases = Vec::new();
    let mut trace_search = Vec::new();
    let mut dependencies = Vec::new();
    let mut service_map = Vec::new();
    let traces_url = format!("http://{http}/api/v1/traces");
    // Calls between services over a week, as Jaeger's System Architecture page and weft's
    // service map ask for them.
    const WEEK_MS: u64 = 7 * 86_400 * 1000;
    let now_ms = process::now_nanos() / 1_000_000;
    let dependencies_url = format!("http://{http}/api/dependencies");
    let (end_ms, lookback_ms) = (now_ms.to_string(), WEEK_MS.to_string());
    let dependencies_query = [
        ("endTs", end_ms.as_str()),
        ("lookback", lookback_ms.as_str()),
    ];
    let map_url = format!("http://{http}/api/v1/service-map");
    let (map_start, map_end) = (
        ((now_ms - WEEK_MS) * 1_000_000).to_string(),
        (now_ms * 1_000_000).to_string(),
    );
    let map_query = [("start", map_start.as_str()), ("end", map_end.as_str())];
    for _ in 0..runs {
        let id = &traces[rng
            .random_range(0..traces.len().max(1))
            .min(traces.len() - 1)];
        by_id.push(timed_get(client, &format!("http://{http}/api/v1/traces/{id}"), &[]).await?);
        let rare = traffic::body_word(profile, rng.random_range(1000..traffic::VOCABULARY));
        selective.push(
            timed_get(
                client,
                &logs_url,
                &[("q", rare.as_str()), ("limit", "100"), all_time[0]],
            )
            .await?,
        );
        broad.push(
            timed_get(
                client,
                &logs_url,
                &[("q", common.as_str()), ("limit", "100"), all_time[0]],
            )
            .await?,
        );
        phrases.push(
            timed_get(
                client,
                &logs_url,
                &[("q", phrase.as_str()), ("limit", "100"), all_time[0]],
            )
            .await?,
        );
        trace_search.push(
            timed_get(
                client,
                &traces_url,
                &[
                    ("service", "frontend"),
                    ("status", "error"),
                    ("min_duration", "100ms"),
                    ("limit", "20"),
                    all_time[0],
                ],
            )
            .await?,
        );
    }
    // Apart from the others, so that the service map's scan of every service column does not
    // stand between their runs.
    for _ in 0..runs {
        dependencies.push(timed_get(client, &dependencies_url, &dependencies_query).await?);
        service_map.push(timed_get(client, &map_url, &map_query).await?);
    }
    // Layer peeling over the last hour, as the UI's facet sidebar, service health view, heatmap
    // and comparison ask for it.
    let now = process::now_nanos();
    let peel = run_peel_queries(client, http, now - 3_600_000_000_000, now, runs).await?;
    // And over everything sent (with --history, many hours), fewer times: the cost per row.
    let peel_all = run_peel_queries(client, http, 0, now, runs.div_ceil(10)).await?;
    // What the week's answer holds, so that a fast answer is seen to be a full one.
    let links: Value = client
        .get(&dependencies_url)
        .query(&dependencies_query)
        .send()
        .await?
        .json()
        .await?;
    let links = links["data"].as_array().cloned().unwrap_or_default();
    let calls: u64 = links.iter().filter_map(|l| l["callCount"].as_u64()).sum();
    // What the log searches find, so that a fast answer is seen not to be an empty one.
    let mut found = serde_json::Map::new();
    for (key, q) in [("broad", common.as_str()), ("phrase", phrase.as_str())] {
        let answer: Value = client
            .get(&logs_url)
            .query(&[("q", q), ("limit", "100"), all_time[0]])
            .send()
            .await?
            .json()
            .await?;
        let rows = answer["logs"].as_array().map_or(0, Vec::len);
        found.insert(key.to_string(), json!(rows));
    }
    Ok(json!({
        "log_search_rows": found,
        "phrase_log_search_newest_100": percentiles(&mut phrases),
        "dependencies_7d": percentiles(&mut dependencies),
        "service_map_7d": percentiles(&mut service_map),
        "dependency_links_7d": links.len(),
        "calls_7d": calls,
        "trace_by_id": percentiles(&mut by_id),
        "selective_log_search": percentiles(&mut selective),
        "broad_log_search_newest_100": percentiles(&mut broad),
        "trace_search_service_errors_min_duration": percentiles(&mut trace_search),
        "peel_1h": peel,
        "peel_all": peel_all,
    }))
}

/// The broad and phrase log searches of [`run_queries`], `runs` times each, once merges have
/// settled: the same store with no merge competing for the cores.
async fn settled_log_searches(
    client: &reqwest::Client,
    http: &str,
    runs: usize,
    profile: traffic::Profile,
) -> anyhow::Result<Value> {
    let common = traffic::body_word(profile, 0);
    let phrase = format!("\"{common} {}\"", traffic::body_word(profile, 1));
    let logs_url = format!("http://{http}/api/v1/logs");
    let (mut broad, mut phrases) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        for (q, times) in [(&common, &mut broad), (&phrase, &mut phrases)] {
            let query = [("q", q.as_str()), ("limit", "100"), ("start", "0")];
            times.push(timed_get(client, &logs_url, &query).await?);
        }
    }
    Ok(json!({
        "broad_log_search_newest_100": percentiles(&mut broad),
        "phrase_log_search_newest_100": percentiles(&mut phrases),
    }))
}

/// The layer-peeling queries over `[start, end)`; each entry's percentiles, and how many rows
/// the range held (so a fast answer is seen to be over all of them).
async fn run_peel_queries(
    client: &reqwest::Client,
    http: &str,
    start: u64,
    end: u64,
    runs: usize,
) -> anyhow::Result<Value> {
    let (start, end) = (start.to_string(), end.to_string());
    let range = [("start", start.as_str()), ("end", end.as_str())];
    let url = |path: &str| format!("http://{http}{path}");
    // (name in the report, URL, parameters besides the range)
    type PeelQuery<'a> = (&'a str, String, Vec<(&'a str, &'a str)>);
    let queries: [PeelQuery; 8] = [
        (
            "log_facets_3_fields",
            url("/api/v1/logs/facets"),
            vec![("fields", "service,severity,resource.host.name")],
        ),
        (
            "span_facets_3_fields",
            url("/api/v1/spans/facets"),
            vec![("fields", "service,name,attr.http.route")],
        ),
        (
            "span_stats_by_service_and_name",
            url("/api/v1/spans/stats"),
            vec![("group_by", "service,name")],
        ),
        ("span_heatmap", url("/api/v1/spans/heatmap"), vec![]),
        (
            "span_compare_slow",
            url("/api/v1/spans/compare"),
            vec![("q", "duration>=15ms")],
        ),
        (
            "log_compare_errors",
            url("/api/v1/logs/compare"),
            vec![("q", "severity>=error")],
        ),
        ("log_patterns", url("/api/v1/logs/patterns"), vec![]),
        (
            "log_patterns_errors",
            url("/api/v1/logs/patterns"),
            vec![("q", "severity>=error")],
        ),
    ];
    let mut report = serde_json::Map::new();
    for (name, url, params) in &queries {
        let mut query = params.clone();
        query.extend_from_slice(&range);
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            times.push(timed_get(client, url, &query).await?);
        }
        report.insert(name.to_string(), percentiles(&mut times));
    }
    for (name, path) in [
        ("logs_in_range", "/api/v1/logs/facets"),
        ("spans_in_range", "/api/v1/spans/facets"),
    ] {
        let mut query = vec![("fields", "service")];
        query.extend_from_slice(&range);
        let answer: Value = client
            .get(url(path))
            .query(&query)
            .send()
            .await?
            .json()
            .await?;
        report.insert(name.to_string(), answer["total"].clone());
    }
    Ok(Value::Object(report))
}

pub(crate) fn percentiles(values: &mut [f64]) -> Value {
    if values.is_empty() {
        return json!({"count": 0});
    }
    values.sort_by(f64::total_cmp);
    let at = |p: f64| values[((values.len() as f64 - 1.0) * p).round() as usize];
    json!({"count": values.len(), "p50": at(0.5), "p99": at(0.99), "max": values[values.len() - 1]})
}

fn print_table(report: &Value) {
    let f = |v: &Value| match v.as_f64() {
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.2}"),
        None => "n/a".to_string(),
    };
    let ingest = &report["ingest"];
    let fresh = &report["freshness_ms"];
    let q = &report["queries_ms"];
    let fp = &report["footprint"];
    println!("weft bench — {}", report["machine"].as_str().unwrap_or(""));
    println!("| measure | value |");
    println!("|---|---|");
    println!("| log records acknowledged | {} |", ingest["log_records"]);
    println!("| spans acknowledged | {} |", ingest["spans"]);
    println!("| log records/s | {} |", f(&ingest["log_records_per_sec"]));
    println!(
        "| records/s (logs + spans) | {} |",
        f(&ingest["records_per_sec"])
    );
    println!("| OTLP MB/s | {} |", f(&ingest["otlp_mb_per_sec"]));
    println!(
        "| OTLP bytes per log record | {} |",
        f(&ingest["otlp_bytes_per_log_record"])
    );
    println!(
        "| weft CPU s per million records | {} |",
        f(&ingest["weft_cpu_seconds_per_million_records"])
    );
    println!(
        "| records per weft CPU second | {} |",
        f(&ingest["records_per_weft_cpu_second"])
    );
    for node in ingest["nodes"].as_array().into_iter().flatten() {
        println!(
            "| node {} (pid {}): records, per CPU second, peak RSS MiB | {}, {}, {} |",
            node["grpc"].as_str().unwrap_or(""),
            node["pid"],
            node["records"],
            f(&node["records_per_cpu_second"]),
            f(&Value::from(
                node["peak_rss_bytes"].as_f64().unwrap_or(0.0) / 1048576.0
            ))
        );
    }
    println!(
        "| export latency p50 / p99 ms | {} / {} |",
        f(&ingest["export_latency_ms"]["p50"]),
        f(&ingest["export_latency_ms"]["p99"])
    );
    println!(
        "| ack → searchable p50 / p99 ms ({} probes) | {} / {} |",
        fresh["count"],
        f(&fresh["p50"]),
        f(&fresh["p99"])
    );
    for (name, key) in [
        ("trace by ID", "trace_by_id"),
        ("selective log search", "selective_log_search"),
        (
            "broad log search (newest 100)",
            "broad_log_search_newest_100",
        ),
        (
            "phrase log search, two common words (newest 100)",
            "phrase_log_search_newest_100",
        ),
        (
            "trace search (service + errors + min duration)",
            "trace_search_service_errors_min_duration",
        ),
        ("dependencies over 7 days", "dependencies_7d"),
        ("service map over 7 days", "service_map_7d"),
    ] {
        println!(
            "| {name} p50 / p99 ms | {} / {} |",
            f(&q[key]["p50"]),
            f(&q[key]["p99"])
        );
    }
    println!(
        "| log rows the broad / phrase searches return (of 100) | {} / {} |",
        q["log_search_rows"]["broad"], q["log_search_rows"]["phrase"]
    );
    for (range, peel) in [("last hour", &q["peel_1h"]), ("all data", &q["peel_all"])] {
        for (name, key) in [
            ("log facets, 3 fields", "log_facets_3_fields"),
            ("span facets, 3 fields", "span_facets_3_fields"),
            (
                "span stats by service and name",
                "span_stats_by_service_and_name",
            ),
            ("span latency heatmap", "span_heatmap"),
            ("compare slow spans with the rest", "span_compare_slow"),
            ("compare error logs with the rest", "log_compare_errors"),
            ("log patterns, every record", "log_patterns"),
            ("log patterns of the errors", "log_patterns_errors"),
        ] {
            println!(
                "| {name}, {range} ({} logs, {} spans), p50 / p99 ms | {} / {} |",
                peel["logs_in_range"],
                peel["spans_in_range"],
                f(&peel[key]["p50"]),
                f(&peel[key]["p99"])
            );
        }
    }
    println!(
        "| calls between services over 7 days (links) | {} ({}) |",
        q["calls_7d"], q["dependency_links_7d"]
    );
    println!(
        "| disk bytes per log record (index + store) | {} |",
        f(&fp["bytes_per_log_record"])
    );
    println!("| disk bytes per span | {} |", f(&fp["bytes_per_span"]));
    let settled = &fp["settled"];
    if settled.is_object() {
        println!(
            "| index bytes per log record, merges settled | {} |",
            f(&settled["index_bytes_per_log_record"])
        );
        println!(
            "| index bytes per span, merges settled | {} |",
            f(&settled["index_bytes_per_span"])
        );
        for (signal, key) in [
            ("log record", "log_bytes_per_record_by_part"),
            ("span", "span_bytes_per_record_by_part"),
        ] {
            if let Some(parts) = settled[key].as_object() {
                let parts: Vec<String> = parts
                    .iter()
                    .map(|(part, v)| format!("{part} {}", f(v)))
                    .collect();
                println!("| bytes per {signal} by part | {} |", parts.join(", "));
            }
        }
    }
    let settled = &report["queries_ms_settled"];
    if !settled.is_null() {
        println!(
            "| broad / phrase log search once merges settled, p50 / p99 ms | {} / {}, {} / {} |",
            f(&settled["broad_log_search_newest_100"]["p50"]),
            f(&settled["broad_log_search_newest_100"]["p99"]),
            f(&settled["phrase_log_search_newest_100"]["p50"]),
            f(&settled["phrase_log_search_newest_100"]["p99"])
        );
    }
    let mib = |v: &Value| {
        v.as_f64()
            .map_or("n/a".into(), |b| format!("{:.0}", b / 1048576.0))
    };
    println!(
        "| weft peak RSS MiB (all / anonymous, without mapped index files) | {} / {} |",
        mib(&fp["weft_peak_rss_bytes"]),
        mib(&fp["weft_peak_anonymous_rss_bytes"])
    );
}
