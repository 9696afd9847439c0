//! `weft bench --overload`: what weft does when offered more than it can take.
//!
//! First a closed-loop phase measures the rate weft sustains (log records acknowledged per
//! second); then an open-loop phase offers `--overload-factor` times that rate, whatever weft
//! answers, while queries run alongside. Reported: what was accepted, the share refused and
//! that every refusal was retryable (UNAVAILABLE or RESOURCE_EXHAUSTED with RetryInfo), query
//! latency during the overload, and weft's peak memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use serde_json::{Value, json};
use tokio::sync::{Mutex, Semaphore};
use tonic_types::StatusExt;

use super::process::{self, ServerProcess};
use super::traffic::{Generator, TrafficConfig, logs_request, word};
use super::{BenchArgs, percentiles};

/// Requests the open-loop phase lets be in flight at once; beyond that the client itself
/// cannot keep up, which is counted rather than hidden.
const MAX_IN_FLIGHT: usize = 512;

#[derive(Default)]
struct Outcomes {
    acked_requests: AtomicU64,
    acked_records: AtomicU64,
    refused_retryable: AtomicU64,
    refused_other: AtomicU64,
    client_backlog: AtomicU64,
}

/// Builds `count` export requests of `batch` records, stamped now.
fn request_pool(
    batch: usize,
    count: usize,
    services: usize,
    profile: super::traffic::Profile,
) -> (Vec<ExportLogsServiceRequest>, Vec<String>) {
    let mut generator = Generator::new(
        0xdead,
        TrafficConfig {
            services,
            error_rate: 0.02,
            profile,
        },
    );
    let now = process::now_nanos();
    let mut requests = Vec::with_capacity(count);
    let mut trace_ids = Vec::new();
    for _ in 0..count {
        let mut logs = Vec::with_capacity(batch);
        while logs.len() < batch {
            let trace = generator.trace(now);
            trace_ids.push(hex::encode(trace.trace_id));
            logs.extend(trace.logs);
        }
        logs.truncate(batch);
        requests.push(logs_request(logs));
    }
    (requests, trace_ids)
}

/// Sends batches in a closed loop from `clients` clients for `duration`; returns acknowledged
/// log records per second.
async fn sustained_rate(
    grpc: &str,
    pool: &Arc<Vec<ExportLogsServiceRequest>>,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let acked = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = LogsServiceClient::connect(format!("http://{grpc}")).await?;
        let pool = pool.clone();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = client;
            let mut i = c;
            while started.elapsed() < duration {
                let request = pool[i % pool.len()].clone();
                let records: usize = request
                    .resource_logs
                    .iter()
                    .flat_map(|r| &r.scope_logs)
                    .map(|s| s.log_records.len())
                    .sum();
                match client.export(request).await {
                    Ok(_) => {
                        acked.fetch_add(records as u64, Ordering::Relaxed);
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
                i += clients;
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    Ok(acked.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// Runs queries every 100 ms until `stop`; returns latencies and how many failed.
async fn query_loop(http: String, trace_ids: Arc<Vec<String>>, stop: Arc<AtomicBool>) -> Value {
    let client = reqwest::Client::new();
    let mut by_id = Vec::new();
    let mut broad = Vec::new();
    let mut refused = 0u64;
    let mut failed = 0u64;
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let id = &trace_ids[(n * 7919) % trace_ids.len()];
        n += 1;
        for (url, query, into) in [
            (
                format!("http://{http}/api/v1/traces/{id}"),
                vec![],
                &mut by_id,
            ),
            (
                format!("http://{http}/api/v1/logs"),
                vec![("q", word(0)), ("limit", "100".into())],
                &mut broad,
            ),
        ] {
            let started = Instant::now();
            match client.get(&url).query(&query).send().await {
                Ok(r) if r.status().is_success() || r.status() == 404 => {
                    let _ = r.bytes().await;
                    into.push(started.elapsed().as_secs_f64() * 1e3);
                }
                Ok(r) if r.status() == 503 || r.status() == 429 => refused += 1,
                _ => failed += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    json!({
        "trace_by_id_ms": percentiles(&mut by_id),
        "broad_log_search_ms": percentiles(&mut broad),
        "refused": refused,
        "failed": failed,
    })
}

/// Runs the overload benchmark and prints (and optionally writes) its report.
pub async fn run(args: &BenchArgs) -> anyhow::Result<Value> {
    let server = ServerProcess::start(args.data_dir.clone())?;
    let (grpc, http, pid) = (server.grpc.clone(), server.http.clone(), server.pid);
    let (pool, trace_ids) = request_pool(args.batch, 64, args.services, args.profile);
    let pool = Arc::new(pool);
    let trace_ids = Arc::new(trace_ids);
    let warmup = args.duration.min(Duration::from_secs(20));
    eprintln!("bench --overload: measuring the sustained rate for {warmup:?}");
    let sustained = sustained_rate(&grpc, &pool, args.clients, warmup).await?;
    let offered = sustained * args.overload_factor;
    eprintln!(
        "bench --overload: weft sustains {sustained:.0} log records/s; offering {offered:.0}/s for {:?}",
        args.duration
    );
    let cpu_before = process::cpu_seconds(pid);

    let outcomes = Arc::new(Outcomes::default());
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let queries = tokio::spawn(query_loop(http.clone(), trace_ids, stop.clone()));
    // Peak anonymous memory, sampled: the process's peak RSS also counts index pages it maps.
    let anon_peak = process::sample_peak_anon_rss(vec![pid], stop.clone());
    let client = LogsServiceClient::connect(format!("http://{grpc}")).await?;
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let interval = Duration::from_secs_f64(args.batch as f64 / offered.max(1.0));
    let started = Instant::now();
    let mut next = started;
    let mut i = 0usize;
    let mut tasks = Vec::new();
    while started.elapsed() < args.duration {
        next += interval;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            outcomes.client_backlog.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep_until(next.into()).await;
            continue;
        };
        let request = pool[i % pool.len()].clone();
        i += 1;
        let mut client = client.clone();
        let outcomes = outcomes.clone();
        let latencies = latencies.clone();
        let records = args.batch as u64;
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let t0 = Instant::now();
            match client.export(request).await {
                Ok(_) => {
                    outcomes.acked_requests.fetch_add(1, Ordering::Relaxed);
                    outcomes.acked_records.fetch_add(records, Ordering::Relaxed);
                    latencies
                        .lock()
                        .await
                        .push(t0.elapsed().as_secs_f64() * 1e3);
                }
                Err(status) => {
                    let retryable = matches!(
                        status.code(),
                        tonic::Code::Unavailable | tonic::Code::ResourceExhausted
                    ) && status.get_details_retry_info().is_some();
                    if retryable {
                        outcomes.refused_retryable.fetch_add(1, Ordering::Relaxed);
                    } else {
                        eprintln!("bench --overload: a refusal that is not retryable: {status:?}");
                        outcomes.refused_other.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
        tasks.retain(|t| !t.is_finished());
        tokio::time::sleep_until(next.into()).await;
    }
    for task in tasks {
        task.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let queries = queries.await?;
    let anon_peak = anon_peak.await?;
    let cpu = match (cpu_before, process::cpu_seconds(pid)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let peak_rss = process::peak_rss_bytes(pid);
    server.stop()?;

    let acked = outcomes.acked_requests.load(Ordering::Relaxed);
    let retryable = outcomes.refused_retryable.load(Ordering::Relaxed);
    let other = outcomes.refused_other.load(Ordering::Relaxed);
    let sent = acked + retryable + other;
    let mut latencies = latencies.lock().await.clone();
    let report = json!({
        "machine": process::machine_description(),
        "settings": {"batch": args.batch, "seconds": seconds, "factor": args.overload_factor},
        "sustained_log_records_per_sec": sustained,
        "offered_log_records_per_sec": offered,
        "accepted_log_records_per_sec": outcomes.acked_records.load(Ordering::Relaxed) as f64 / seconds,
        "requests_sent": sent,
        "requests_acked": acked,
        "requests_refused_retryable": retryable,
        "requests_refused_not_retryable": other,
        "refused_share": if sent == 0 { 0.0 } else { (retryable + other) as f64 / sent as f64 },
        "client_could_not_send": outcomes.client_backlog.load(Ordering::Relaxed),
        "acked_export_latency_ms": percentiles(&mut latencies),
        "queries_during_overload": queries,
        "weft_cpu_seconds": cpu,
        "weft_peak_rss_bytes": peak_rss,
        "weft_peak_anonymous_rss_bytes": anon_peak,
    });
    print_table(&report);
    if other > 0 {
        bail!("{other} refusals were not retryable");
    }
    Ok(report)
}

fn print_table(r: &Value) {
    let f = |v: &Value| v.as_f64().map_or("n/a".into(), |x| format!("{x:.0}"));
    let q = &r["queries_during_overload"];
    println!(
        "weft bench --overload — {}",
        r["machine"].as_str().unwrap_or("")
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| sustained log records/s | {} |",
        f(&r["sustained_log_records_per_sec"])
    );
    println!(
        "| offered log records/s | {} |",
        f(&r["offered_log_records_per_sec"])
    );
    println!(
        "| accepted log records/s | {} |",
        f(&r["accepted_log_records_per_sec"])
    );
    println!(
        "| requests sent / acked / refused (retryable) / refused (other) | {} / {} / {} / {} |",
        r["requests_sent"],
        r["requests_acked"],
        r["requests_refused_retryable"],
        r["requests_refused_not_retryable"]
    );
    println!(
        "| refused share | {:.1} % |",
        r["refused_share"].as_f64().unwrap_or(0.0) * 100.0
    );
    println!(
        "| acked export latency p50 / p99 ms | {} / {} |",
        f(&r["acked_export_latency_ms"]["p50"]),
        f(&r["acked_export_latency_ms"]["p99"])
    );
    println!(
        "| trace by ID during overload p50 / p99 ms | {} / {} |",
        f(&q["trace_by_id_ms"]["p50"]),
        f(&q["trace_by_id_ms"]["p99"])
    );
    println!(
        "| broad log search during overload p50 / p99 ms | {} / {} |",
        f(&q["broad_log_search_ms"]["p50"]),
        f(&q["broad_log_search_ms"]["p99"])
    );
    println!(
        "| queries refused / failed | {} / {} |",
        q["refused"], q["failed"]
    );
    let mib = |v: &Value| {
        v.as_f64()
            .map_or("n/a".into(), |b| format!("{:.0}", b / 1048576.0))
    };
    println!(
        "| weft peak RSS MiB (all / anonymous, without mapped index files) | {} / {} |",
        mib(&r["weft_peak_rss_bytes"]),
        mib(&r["weft_peak_anonymous_rss_bytes"])
    );
}
