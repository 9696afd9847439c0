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

/// Posts an OTLP/HTTP protobuf export of `body` to the weft at `http`; it must be acknowledged.
async fn post_batch(client: &reqwest::Client, http: SocketAddr, body: Vec<u8>) {
    let response = client
        .post(format!("http://{http}/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
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
        post_batch(&client, server.http, tagged_batch(1, 0, batch, 10)).await;
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

    post_batch(&client, server.http, tagged_batch(1, 0, 99, 10)).await;
    let logs = server.wait_for_logs("service:crashtest", 60).await;
    assert_eq!(logs.len(), 60);
    server.stop().await;
}

/// The `weft` binary as a child process, killed when dropped so a failing test leaves none.
pub(crate) struct WeftProcess {
    pub(crate) child: Child,
    pub(crate) http: SocketAddr,
    pub(crate) grpc: SocketAddr,
    /// What weft logged, line by line, when spawned with [`WeftProcess::spawn_logging`].
    pub(crate) log: Arc<Mutex<Vec<String>>>,
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
        Self::spawn_inner(data_dir, env, None)
    }

    /// [`WeftProcess::spawn_with`] logging at `level` into [`WeftProcess::log`].
    pub(crate) fn spawn_logging(
        data_dir: &std::path::Path,
        env: &[(&str, &str)],
        level: &str,
    ) -> WeftProcess {
        Self::spawn_inner(data_dir, env, Some(level))
    }

    fn spawn_inner(
        data_dir: &std::path::Path,
        env: &[(&str, &str)],
        log_level: Option<&str>,
    ) -> WeftProcess {
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
            .arg(log_level.unwrap_or("warn"))
            .env("WEFT_COMMIT_INTERVAL", "200ms")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(match log_level {
                Some(_) => Stdio::piped(),
                None => Stdio::inherit(),
            })
            .spawn()
            .expect("weft binary starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("{line}");
                    log.lock().unwrap().push(line);
                }
            });
        }
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
        WeftProcess {
            child,
            http,
            grpc,
            log,
        }
    }

    /// Sends SIGTERM and waits for weft to exit.
    pub(crate) async fn terminate(self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM).await
    }

    /// Sends `signal` and waits for weft to exit.
    pub(crate) async fn signal(self, signal: libc::c_int) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child with a standard signal.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
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

/// What the clients of one crash run did: the (client, batch) pairs acknowledged, and the
/// pairs sent whatever came back (refused, or cut off by the kill).
struct Sent {
    acked: Vec<(i64, i64)>,
    sent: Vec<(i64, i64)>,
}

/// Sends batches from several clients until the server dies.
async fn load_until_killed(
    http: SocketAddr,
    run: i64,
    clients: i64,
    kill_after: Duration,
    process: WeftProcess,
) -> Sent {
    const BATCH: usize = 20;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let sent_all = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for client in 0..clients {
        let acked = acked.clone();
        let sent_all = sent_all.clone();
        tasks.push(tokio::spawn(async move {
            let http_client = reqwest::Client::new();
            for batch in 0..10_000 {
                sent_all.lock().unwrap().push((client, batch));
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
    Sent {
        acked: Arc::try_unwrap(acked).unwrap().into_inner().unwrap(),
        sent: Arc::try_unwrap(sent_all).unwrap().into_inner().unwrap(),
    }
}

/// How many stored log records match `q`, exactly: the histogram counts every matching row
/// of the index (a page of records stops at 1000, which would hide a batch stored twice).
pub(crate) async fn count(client: &reqwest::Client, http: SocketAddr, q: &str) -> usize {
    let body: serde_json::Value = client
        .get(format!("http://{http}/api/v1/logs/histogram"))
        .query(&[("q", q), ("buckets", "1")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let buckets = body["buckets"].as_array().expect("histogram buckets");
    buckets
        .iter()
        .map(|b| b["total"].as_u64().expect("a bucket total") as usize)
        .sum()
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
        let load = load_until_killed(http, run, 4, kill_after, process).await;
        assert!(
            !load.acked.is_empty(),
            "run {run}: nothing acknowledged before the kill"
        );
        eprintln!(
            "crash run {run}: {} batches acknowledged of {} sent",
            load.acked.len(),
            load.sent.len()
        );
        runs.push(load);

        let process = WeftProcess::spawn(dir.path());
        let started = Instant::now();
        for (r, load) in runs.iter().enumerate() {
            for &(c, b) in &load.sent {
                let q = format!("attr.run:{r} attr.client:{c} attr.batch:{b}");
                let found = count(&client, process.http, &q).await;
                if load.acked.contains(&(c, b)) {
                    assert_eq!(
                        found, 20,
                        "run {r} client {c} batch {b}: acknowledged 20, found {found}"
                    );
                } else {
                    // Batches are atomic: one refused or cut off by the kill is whole or
                    // absent, never partial, never twice.
                    assert!(
                        found == 0 || found == 20,
                        "run {r} client {c} batch {b}: not acknowledged, found {found} of 20"
                    );
                }
            }
            // And nothing else: every stored record belongs to a batch that was sent.
            for c in 0..4 {
                let sent = load.sent.iter().filter(|(client, _)| *client == c).count();
                let acked = load.acked.iter().filter(|(client, _)| *client == c).count();
                let total = count(
                    &client,
                    process.http,
                    &format!("attr.run:{r} attr.client:{c}"),
                )
                .await;
                assert!(
                    total % 20 == 0 && (acked * 20..=sent * 20).contains(&total),
                    "run {r} client {c}: {total} records for {acked} acknowledged and {sent} sent batches"
                );
            }
            assert!(started.elapsed() < DEADLINE * 6);
        }
        process.kill();
    }
}

/// SIGTERM (an orchestrator) and SIGINT (Ctrl-C in a terminal): the same orderly stop, with
/// everything acknowledged committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sigint_commit_and_exit_cleanly() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        a_stop_signal_commits_and_exits_cleanly(signal).await;
    }
}

async fn a_stop_signal_commits_and_exits_cleanly(signal: libc::c_int) {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let process = WeftProcess::spawn(dir.path());
    for batch in 0..3 {
        post_batch(&client, process.http, tagged_batch(7, 0, batch, 20)).await;
    }
    let status = process.signal(signal).await;
    assert!(status.success(), "weft exited with {status}");

    // Everything was committed before exit: the restarted weft has nothing to replay.
    let process = WeftProcess::spawn(dir.path());
    assert_eq!(count(&client, process.http, "attr.run:7").await, 60);
    let replayed = crate::common::metric_at(&client, process.http, "weft_rows_indexed_total").await;
    assert_eq!(replayed, 0.0, "rows indexed again at the restart");
    process.kill();
}

/// A request already being received when the stop begins is finished, acknowledged and kept:
/// weft stops accepting connections first, then lets requests in flight complete before it
/// commits and exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_when_the_stop_begins_is_finished_and_kept() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start().await;
    let http = server.http;
    let body = tagged_batch(8, 0, 0, 20);
    let mut stream = tokio::net::TcpStream::connect(http).await.unwrap();
    // `expect: 100-continue` makes weft say when its handler starts reading the body: only
    // then is the request in flight (a connection still in the listen queue is not, and is
    // reset when the listener closes).
    let head = format!(
        "POST /v1/logs HTTP/1.1\r\nhost: weft\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\nexpect: 100-continue\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut byte))
            .await
            .expect("100 Continue")
            .unwrap();
        assert_eq!(n, 1, "closed before 100 Continue: {interim:?}");
        interim.push(byte[0]);
    }
    let interim = String::from_utf8_lossy(&interim);
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    let (first, rest) = body.split_at(body.len() / 2);
    stream.write_all(first).await.unwrap();
    stream.flush().await.unwrap();

    let stopping = tokio::spawn(server.stop());
    // The stop has begun once weft no longer says it is ready (or no longer accepts).
    let started = Instant::now();
    loop {
        let answer = reqwest::Client::new()
            .get(format!("http://{http}/readyz"))
            .send()
            .await;
        match answer {
            Ok(response) if response.status() == 200 => {}
            _ => break,
        }
        assert!(started.elapsed() < DEADLINE, "the stop never began");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stream.write_all(rest).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(DEADLINE, stream.read(&mut answer))
        .await
        .expect("an answer to the request in flight")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let dir = tokio::time::timeout(DEADLINE, stopping)
        .await
        .expect("the stop finished")
        .unwrap();

    let server = TestServer::start_with(dir, |_| {}).await;
    let found = count(&server.client, server.http, "attr.run:8").await;
    assert_eq!(found, 20, "the batch acknowledged during the stop, once");
    server.stop().await;
}
