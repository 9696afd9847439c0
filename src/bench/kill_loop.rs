//! `weft bench --kill-loop N`: SIGKILL at random moments under load, N times on one data
//! directory, then one count of everything.
//!
//! Every batch carries a unique tag (`bench.batch = r<round>c<client>b<n>`). After the last
//! restart each tag is searched: an acknowledged batch must be there exactly once (all its
//! records, no more); a batch sent but not acknowledged may be there or not, but whole.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::BenchArgs;
use super::process::{self, ServerProcess};
use super::traffic::{Generator, TrafficConfig, logs_request};

/// Records per tagged batch (a search page holds a whole batch and shows a duplicate).
const BATCH: usize = 200;
/// Concurrent exporting clients.
const CLIENTS: usize = 4;

/// What happened to one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sent {
    Acked,
    Unacked,
}

fn tag(round: usize, client: usize, n: usize) -> String {
    format!("r{round}c{client}b{n}")
}

/// Sends tagged batches until the server goes away; records what each send got.
async fn load(grpc: String, round: usize, client: usize, sent: Arc<Mutex<BTreeMap<String, Sent>>>) {
    let Ok(mut connection) = LogsServiceClient::connect(format!("http://{grpc}")).await else {
        return;
    };
    let mut generator = Generator::new(
        (round * CLIENTS + client) as u64,
        TrafficConfig {
            services: 8,
            error_rate: 0.02,
            profile: super::traffic::Profile::Default,
        },
    );
    for n in 0.. {
        let name = tag(round, client, n);
        let mut logs = Vec::with_capacity(BATCH);
        while logs.len() < BATCH {
            logs.extend(generator.trace(process::now_nanos()).logs);
        }
        logs.truncate(BATCH);
        for (_, record) in &mut logs {
            record.attributes.push(KeyValue {
                key: "bench.batch".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(name.clone())),
                }),
                ..Default::default()
            });
        }
        sent.lock().await.insert(name.clone(), Sent::Unacked);
        match connection.export(logs_request(logs)).await {
            Ok(_) => {
                sent.lock().await.insert(name, Sent::Acked);
            }
            Err(status) if status.code() == tonic::Code::Unavailable => {
                // Refused (or the connection broke as weft died): not acknowledged.
                if status.message().contains("transport") || status.message().contains("connect") {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => return,
        }
    }
}

/// Counts the records carrying `tag`.
async fn count(client: &reqwest::Client, http: &str, tag: &str) -> anyhow::Result<usize> {
    let body: Value = client
        .get(format!("http://{http}/api/v1/logs"))
        .query(&[
            ("q", format!("attr.bench.batch:{tag}").as_str()),
            ("limit", "1000"),
            ("start", "0"),
        ])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(body["logs"].as_array().map_or(0, Vec::len))
}

/// Runs the kill loop and returns its report; fails if anything acknowledged was lost or any
/// batch was stored twice or in part.
pub async fn run(args: &BenchArgs, rounds: usize) -> anyhow::Result<Value> {
    let temp = tempfile::tempdir()?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let sent = Arc::new(Mutex::new(BTreeMap::<String, Sent>::new()));
    let mut rng = rand::rngs::SmallRng::seed_from_u64(process::now_nanos());
    let started = Instant::now();
    for round in 0..rounds {
        let server = ServerProcess::start(Some(data_dir.clone()))?;
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| tokio::spawn(load(server.grpc.clone(), round, c, sent.clone())))
            .collect();
        let kill_after = Duration::from_millis(rng.random_range(300..2500));
        tokio::time::sleep(kill_after).await;
        server.kill()?;
        for client in clients {
            client.await?;
        }
        let acked = sent
            .lock()
            .await
            .keys()
            .filter(|k| k.starts_with(&format!("r{round}c")))
            .count();
        eprintln!("kill loop: round {round}: SIGKILL after {kill_after:?}, {acked} batches sent");
    }
    let server = ServerProcess::start(Some(data_dir.clone()))?;
    let client = reqwest::Client::new();
    let sent = sent.lock().await.clone();
    let (mut lost, mut duplicated, mut partial, mut unacked_stored) = (0, 0, 0, 0);
    let mut acked_batches = 0;
    for (tag, outcome) in &sent {
        let found = count(&client, &server.http, tag).await?;
        match (outcome, found) {
            (Sent::Acked, n) if n == BATCH => acked_batches += 1,
            (Sent::Acked, 0) => {
                eprintln!("kill loop: {tag} was acknowledged and is gone");
                lost += 1;
            }
            (_, n) if n > BATCH => {
                eprintln!("kill loop: {tag} is stored {n} times over {BATCH} records");
                duplicated += 1;
            }
            (Sent::Unacked, 0) => {}
            (Sent::Unacked, n) if n == BATCH => unacked_stored += 1,
            (_, n) => {
                eprintln!("kill loop: {tag} has {n} of {BATCH} records");
                partial += 1;
            }
        }
    }
    server.stop()?;
    let report = json!({
        "machine": process::machine_description(),
        "restarts": rounds,
        "seconds": started.elapsed().as_secs_f64(),
        "batches_sent": sent.len(),
        "batches_acked": sent.values().filter(|s| **s == Sent::Acked).count(),
        "acked_found_exactly_once": acked_batches,
        "records_per_batch": BATCH,
        "lost": lost,
        "duplicated": duplicated,
        "partial": partial,
        "unacked_but_stored": unacked_stored,
    });
    println!(
        "weft bench --kill-loop — {}",
        report["machine"].as_str().unwrap_or("")
    );
    println!("| measure | value |");
    println!("|---|---|");
    for key in [
        "restarts",
        "batches_sent",
        "batches_acked",
        "acked_found_exactly_once",
        "lost",
        "duplicated",
        "partial",
        "unacked_but_stored",
    ] {
        println!("| {key} | {} |", report[key]);
    }
    if lost + duplicated + partial > 0 {
        bail!("kill loop: {lost} lost, {duplicated} duplicated, {partial} partial batches");
    }
    Ok(report)
}
