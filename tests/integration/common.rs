//! A real weft on ephemeral ports with a temporary data directory, and helpers to query it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;
use weft::config::Config;
use weft::server::{self, Listeners, Running, StartOptions};
use weft_index::faults::Faults;

/// How long polling helpers wait before failing a test.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct TestServer {
    running: Option<Running>,
    pub dir: TempDir,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub client: reqwest::Client,
}

pub fn test_config(dir: &TempDir) -> Config {
    Config {
        data_dir: dir.path().to_path_buf(),
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        commit_interval: Duration::from_millis(100),
        ..Default::default()
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(tempfile::tempdir().unwrap(), |_| {}).await
    }

    pub async fn start_with(dir: TempDir, tweak: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_with_faults(dir, tweak, None).await
    }

    /// A server whose WAL and index fail when `faults` says so.
    pub async fn start_with_faults(
        dir: TempDir,
        tweak: impl FnOnce(&mut Config),
        faults: Option<Arc<Faults>>,
    ) -> TestServer {
        let mut config = test_config(&dir);
        tweak(&mut config);
        let listeners = Listeners::bind(&config).await.unwrap();
        let options = StartOptions {
            faults,
            ..StartOptions::default()
        };
        let running = server::start_with(config, listeners, options)
            .await
            .unwrap();
        TestServer {
            grpc: running.grpc_addr,
            http: running.http_addr,
            running: Some(running),
            dir,
            client: reqwest::Client::new(),
        }
    }

    /// The running weft (its pipeline, for tests that look inside).
    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running until stopped")
    }

    /// Stops as a crash would (nothing more committed) and hands back the data directory.
    pub async fn crash(mut self) -> TempDir {
        if let Some(running) = self.running.take() {
            running.crash().await;
        }
        self.dir
    }

    /// Stops gracefully and hands back the data directory.
    pub async fn stop(mut self) -> TempDir {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
        self.dir
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(path))
            .query(query)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// Polls a log search until it returns at least `want` records.
    pub async fn wait_for_logs(&self, q: &str, want: usize) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let (status, body) = self
                .get("/api/v1/logs", &[("q", q), ("limit", "1000")])
                .await;
            assert_eq!(status, 200, "{body}");
            let logs = body["logs"].as_array().cloned().unwrap_or_default();
            if logs.len() >= want {
                return logs;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "only {} of {want} records for '{q}' after {DEADLINE:?}",
                logs.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls a trace until it has at least `spans` spans and `logs` logs.
    pub async fn wait_for_trace(&self, trace_id: &str, spans: usize, logs: usize) -> Value {
        let started = Instant::now();
        loop {
            let (status, body) = self.get(&format!("/api/v1/traces/{trace_id}"), &[]).await;
            if status == 200
                && body["spans"].as_array().map_or(0, Vec::len) >= spans
                && body["logs"].as_array().map_or(0, Vec::len) >= logs
            {
                return body;
            }
            assert!(
                status == 200 || status == 404,
                "unexpected status {status}: {body}"
            );
            assert!(
                started.elapsed() < DEADLINE,
                "trace {trace_id} incomplete after {DEADLINE:?}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn metric(&self, name: &str) -> f64 {
        metric_at(&self.client, self.http, name).await
    }
}

/// One sample of weft's `/metrics` at `http`, by its name with labels.
pub async fn metric_at(client: &reqwest::Client, http: SocketAddr, name: &str) -> f64 {
    let text = client
        .get(format!("http://{http}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("metric {name} missing in:\n{text}"))
        .parse()
        .unwrap()
}

/// Polls `GET path` until it answers `status`; returns the body.
pub async fn wait_for_status(server: &TestServer, path: &str, status: u16) -> String {
    let started = Instant::now();
    loop {
        let response = server.client.get(server.url(path)).send().await.unwrap();
        let got = response.status().as_u16();
        let body = response.text().await.unwrap();
        if got == status {
            return body;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{path} still answers {got} after {DEADLINE:?}, not {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}
