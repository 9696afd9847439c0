//! Acknowledged means durable: across graceful restarts and across `SIGKILL` at random moments.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;

use crate::bad_input::{logs_request, record};
use crate::common::{DEADLINE, TestServer};

fn attr(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// One batch of `size` records tagged with run, client and batch numbers.
pub(crate) fn tagged_batch(run: i64, client: i64, batch: i64, size: usize) -> Vec<u8> {
    let records = (0..size)
        .map(|i| {
            let mut r = record(&format!("crashtest record {i}"), vec![]);
            r.attributes = vec![
                attr("run", run),
                attr("client", client),
                attr("batch", batch),
            ];
            r
        })
        .collect();
    logs_request("crashtest", records).encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_keeps_data_and_commit_position() {
    let server = TestServer::start().await;
    let client = server.client.clone();
    for batch in 0..5 {
        let response = client
            .post(server.url("/v1/logs"))
            .header("content-type", "application/x-protobuf")
            .body(tagged_batch(1, 0, batch, 10))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    server.wait_for_logs("service:crashtest", 50).await;
    let dir = server.stop().await;

    let server = TestServer::start_with(dir, |_| {}).await;
    // Searchable at once: nothing needed replaying, nothing was indexed twice.
    let (_, body) = server
        .get(
            "/api/v1/logs",
            &[("q", "service:crashtest"), ("limit", "1000")],
        )
        .await;
    assert_eq!(body["logs"].as_array().unwrap().len(), 50);
    assert_eq!(server.metric("weft_index_lag_bytes").await, 0.0);
    assert_eq!(server.metric("weft_rows_indexed_total").await, 0.0);

    let response = client
        .post(server.url("/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .body(tagged_batch(1, 0, 99, 10))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let logs = server.wait_for_logs("service:crashtest", 60).await;
    assert_eq!(logs.len(), 60);
    server.stop().await;
}

/// The `weft` binary as a child process, killed when dropped so a failing test leaves none.
pub(crate) struct WeftProcess {
    pub(crate) child: Child,
    pub(crate) http: SocketAddr,
    pub(crate) grpc: SocketAddr,
}

impl crate::common::Node for WeftProcess {
    fn http_addr(&self) -> SocketAddr {
        self.http
    }
    fn grpc_addr(&self) -> SocketAddr {
        self.grpc
    }
}

impl Drop for WeftProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl WeftProcess {
    fn spawn(data_dir: &std::path::Path) -> WeftProcess {
        Self::spawn_with(data_dir, &[])
    }

    /// The binary with extra `WEFT_*` settings.
    pub(crate) fn spawn_with(data_dir: &std::path::Path, env: &[(&str, &str)]) -> WeftProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args([
                "serve",
                "--grpc-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--log-level")
            .arg("warn")
            .env("WEFT_COMMIT_INTERVAL", "200ms")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("weft binary starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("weft listening ") {
                    let addr = |key: &str| {
                        rest.split(' ')
                            .find_map(|kv| kv.strip_prefix(key))
                            .and_then(|a| a.parse::<SocketAddr>().ok())
                            .expect("an address in the listening line")
                    };
                    let _ = tx.send((addr("http="), addr("grpc=")));
                }
            }
        });
        let (http, grpc) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("weft printed its listening line");
        WeftProcess { child, http, grpc }
    }

    /// Sends SIGTERM and waits for weft to exit.
    pub(crate) async fn terminate(self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child with a standard signal.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        tokio::task::spawn_blocking(move || {
            let mut process = self;
            process.child.wait().unwrap()
        })
        .await
        .unwrap()
    }

    pub(crate) fn kill(mut self) {
        // `Child::kill` is SIGKILL on Unix: no handler runs, nothing is flushed.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// Sends batches from several clients until the server dies; returns the acknowledged
/// (client, batch) pairs.
async fn load_until_killed(
    http: SocketAddr,
    run: i64,
    clients: i64,
    kill_after: Duration,
    process: WeftProcess,
) -> Vec<(i64, i64)> {
    const BATCH: usize = 20;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for client in 0..clients {
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let http_client = reqwest::Client::new();
            for batch in 0..10_000 {
                let sent = http_client
                    .post(format!("http://{http}/v1/logs"))
                    .header("content-type", "application/x-protobuf")
                    .body(tagged_batch(run, client, batch, BATCH))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => acked.lock().unwrap().push((client, batch)),
                    Ok(r) if r.status() == 503 => continue,
                    _ => break,
                }
            }
        }));
    }
    tokio::time::sleep(kill_after).await;
    tokio::task::spawn_blocking(move || process.kill())
        .await
        .unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    Arc::try_unwrap(acked).unwrap().into_inner().unwrap()
}

pub(crate) async fn count(client: &reqwest::Client, http: SocketAddr, q: &str) -> usize {
    let body: serde_json::Value = client
        .get(format!("http://{http}/api/v1/logs"))
        .query(&[("q", q), ("limit", "1000")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["logs"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_no_acknowledged_record_and_duplicates_none() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut runs = Vec::new();
    // Several kill points on one data directory: each restart must also keep earlier runs.
    let seed = crate::common::now_nanos();
    for run in 0..3i64 {
        let kill_after = Duration::from_millis(150 + (seed >> (run * 8)) % 1200);
        eprintln!("crash run {run}: SIGKILL after {kill_after:?}");
        let process = WeftProcess::spawn(dir.path());
        let http = process.http;
        let acked = load_until_killed(http, run, 4, kill_after, process).await;
        assert!(
            !acked.is_empty(),
            "run {run}: nothing acknowledged before the kill"
        );
        eprintln!("crash run {run}: {} batches acknowledged", acked.len());
        runs.push(acked);

        let process = WeftProcess::spawn(dir.path());
        let started = Instant::now();
        for (r, acked) in runs.iter().enumerate() {
            for &(c, b) in acked {
                let q = format!("attr.run:{r} attr.client:{c} attr.batch:{b}");
                let found = count(&client, process.http, &q).await;
                assert_eq!(
                    found, 20,
                    "run {r} client {c} batch {b}: acknowledged 20, found {found}"
                );
            }
            // Batches are atomic: unacknowledged ones are whole or absent, never partial.
            let total = count(
                &client,
                process.http,
                &format!("attr.run:{r} attr.client:0"),
            )
            .await;
            assert_eq!(total % 20, 0, "run {r}: a partial batch was stored");
            assert!(started.elapsed() < DEADLINE * 6);
        }
        process.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_commits_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let process = WeftProcess::spawn(dir.path());
    for batch in 0..3 {
        let response = client
            .post(format!("http://{}/v1/logs", process.http))
            .header("content-type", "application/x-protobuf")
            .body(tagged_batch(7, 0, batch, 20))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let status = process.terminate().await;
    assert!(status.success(), "weft exited with {status}");

    // Everything was committed before exit: the restarted weft has nothing to replay.
    let process = WeftProcess::spawn(dir.path());
    assert_eq!(count(&client, process.http, "attr.run:7").await, 60);
    let metrics = client
        .get(format!("http://{}/metrics", process.http))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("\nweft_rows_indexed_total 0\n"),
        "{metrics}"
    );
    process.kill();
}
