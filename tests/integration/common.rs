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

/// A weft under test, in this process or in its own: where it listens.
pub trait Node {
    fn http_addr(&self) -> SocketAddr;
    fn grpc_addr(&self) -> SocketAddr;
}

impl Node for TestServer {
    fn http_addr(&self) -> SocketAddr {
        self.http
    }
    fn grpc_addr(&self) -> SocketAddr {
        self.grpc
    }
}

/// `GET path?query` on `node`: the status and the body, as JSON when it is.
pub async fn get_json(node: &impl Node, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
    get_with(&reqwest::Client::new(), node, path, query).await
}

/// [`get_json`] with `client`.
async fn get_with(
    client: &reqwest::Client,
    node: &impl Node,
    path: &str,
    query: &[(&str, &str)],
) -> (u16, Value) {
    let response = client
        .get(format!("http://{}{path}", node.http_addr()))
        .query(query)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

pub struct TestServer {
    running: Option<Running>,
    pub dir: TempDir,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub client: reqwest::Client,
    /// The PostgreSQL metastore's server, when the test has one; stopped with the test.
    pub postgres: Option<crate::postgres::PgServer>,
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
            postgres: None,
        }
    }

    /// A server in a new directory whose faults the test switches on and off.
    pub async fn faulty(tweak: impl FnOnce(&mut Config)) -> (TestServer, Arc<Faults>) {
        let faults = Faults::none();
        let server =
            Self::start_with_faults(tempfile::tempdir().unwrap(), tweak, Some(faults.clone()))
                .await;
        (server, faults)
    }

    /// Exports `records` of `service` over OTLP/gRPC and returns weft's answer.
    pub async fn export_logs(
        &self,
        service: &str,
        records: Vec<opentelemetry_proto::tonic::logs::v1::LogRecord>,
    ) -> opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse {
        use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
        LogsServiceClient::connect(format!("http://{}", self.grpc))
            .await
            .unwrap()
            .export(crate::bad_input::logs_request(service, records))
            .await
            .unwrap()
            .into_inner()
    }

    /// Polls `/api/v1/logs?{query}` until the bodies found, newest first, are `want`.
    pub async fn wait_for_bodies(&self, query: &[(&str, &str)], want: &[&str]) {
        let started = Instant::now();
        loop {
            let (status, body) = self.get("/api/v1/logs", query).await;
            assert_eq!(status, 200, "{body}");
            if bodies(&body["logs"]) == want {
                return;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{query:?}: wanted {want:?}, found {body}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
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
        get_with(&self.client, self, path, query).await
    }

    /// Polls a log search (of the default range, the last hour) until it returns at least
    /// `want` records.
    pub async fn wait_for_logs(&self, q: &str, want: usize) -> Vec<Value> {
        self.wait_for_logs_in(&[("q", q), ("limit", "1000")], want)
            .await
    }

    /// Polls a log search over all time until it returns at least `want` records.
    pub async fn wait_for_all_logs(&self, q: &str, want: usize) -> Vec<Value> {
        self.wait_for_logs_in(&[("q", q), ("start", "0"), ("limit", "1000")], want)
            .await
    }

    async fn wait_for_logs_in(&self, params: &[(&str, &str)], want: usize) -> Vec<Value> {
        let q = params[0].1;
        let started = Instant::now();
        loop {
            let (status, body) = self.get("/api/v1/logs", params).await;
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

/// The bodies of a list of log records, in order.
pub fn bodies(logs: &Value) -> Vec<String> {
    logs.as_array()
        .unwrap()
        .iter()
        .map(|l| l["body"].as_str().unwrap().to_string())
        .collect()
}

pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Where the query-API tests keep their data: `STORAGE_UNDER_TEST` is unset or `local` (all
/// local, as by default), `file` (sealed into a directory as object storage, every local copy
/// evicted), `s3` (the same on the S3-compatible server at `S3_TEST_ENDPOINT`), `azure`
/// (Azurite at `AZURE_TEST_ENDPOINT`) or `gcs` (the GCS stand-in at `GCS_TEST_ENDPOINT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageUnderTest {
    Local,
    File,
    S3,
    Azure,
    Gcs,
}

pub fn storage_under_test() -> StorageUnderTest {
    match std::env::var("STORAGE_UNDER_TEST").as_deref() {
        Err(_) | Ok("") | Ok("local") => StorageUnderTest::Local,
        Ok("file") => StorageUnderTest::File,
        Ok("s3") => StorageUnderTest::S3,
        Ok("azure") => StorageUnderTest::Azure,
        Ok("gcs") => StorageUnderTest::Gcs,
        Ok(other) => panic!("STORAGE_UNDER_TEST={other}: expected local, file, s3, azure or gcs"),
    }
}

/// Records that the calling test, or a part of it, is skipped because `what` is missing
/// (`why` says how to get it): a failure when `required_var=required` (as in CI, which must
/// run everything); otherwise a marker line `skipped: TEST: WHAT: WHY`, appended to the file
/// named by `TEST_SKIPS_FILE`. `scripts/test` prints those lines after each group of tests and
/// `.ci/run` counts them, so a skip is never counted as a pass (cargo hides a passing test's
/// own output).
pub fn skip(required_var: &str, what: &str, why: &str) {
    assert_ne!(
        std::env::var(required_var).as_deref(),
        Ok("required"),
        "{what} tests are required ({required_var}=required), but: {why}"
    );
    let test = std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_string();
    let line = format!("skipped: {test}: {what}: {why}\n");
    eprint!("{line}");
    if let Ok(path) = std::env::var("TEST_SKIPS_FILE") {
        use std::io::Write;
        // One short append per line: tests running at once do not interleave their lines.
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("TEST_SKIPS_FILE={path}: {e}"));
        file.write_all(line.as_bytes()).unwrap();
    }
}

/// The server named by the variable `var`, when set; otherwise `None` with a skip marker
/// saying how to set it (`hint`), or a failure when `required_var=required` (as in CI).
fn test_server_endpoint(var: &str, required_var: &str, what: &str, hint: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(endpoint) if !endpoint.is_empty() => Some(endpoint),
        _ => {
            skip(required_var, what, &format!("set {var} to {hint}"));
            None
        }
    }
}

/// The S3-compatible server the tests may use; `None` (with a message) when there is none,
/// and a failure when `S3_TESTS=required` (as in CI).
pub fn s3_endpoint() -> Option<String> {
    test_server_endpoint(
        "S3_TEST_ENDPOINT",
        "S3_TESTS",
        "S3",
        "an S3-compatible server (scripts/test starts moto_server when installed)",
    )
}

/// A fresh bucket on the S3-compatible server at `endpoint`; returns the `storage` URL and
/// the `AWS_*` settings that reach it.
pub async fn s3_bucket(endpoint: &str) -> (String, Vec<(String, String)>) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let bucket = format!(
        "weft-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(
        created.status().is_success(),
        "cannot create bucket {bucket} at {endpoint}: {}",
        created.status()
    );
    let env = [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "weft-test"),
        ("AWS_SECRET_ACCESS_KEY", "weft-test"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    (format!("s3://{bucket}/weft"), env)
}

/// Azurite's account and its published key (the same in every Azurite).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The Azure Blob emulator (Azurite) the tests may use, as its account URL
/// (`http://127.0.0.1:10000/devstoreaccount1`); `None` (with a message) when there is none,
/// and a failure when `AZURE_TESTS=required` (as in CI).
pub fn azure_endpoint() -> Option<String> {
    test_server_endpoint(
        "AZURE_TEST_ENDPOINT",
        "AZURE_TESTS",
        "Azure",
        "Azurite's account URL (scripts/test starts Azurite when installed)",
    )
}

/// A fresh container in the Azurite at `endpoint`; returns the `storage` URL and the
/// `AZURE_*` settings that reach it. Azure has no anonymous "create container": the request
/// is signed with the account key (Shared Key), as Azure's SDKs do.
pub async fn azure_container(endpoint: &str) -> (String, Vec<(String, String)>) {
    use base64::Engine;
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let container = format!(
        "weft-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let date = time::OffsetDateTime::now_utc()
        .format(
            &time::format_description::parse_borrowed::<1>(
                "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT",
            )
            .unwrap(),
        )
        .unwrap();
    let version = "2021-08-06";
    let path = format!("/{AZURITE_ACCOUNT}/{container}");
    // Verb, eleven standard headers (all empty here), the x-ms-* headers, the resource.
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}{path}\nrestype:container"
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(AZURITE_KEY)
        .unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let signature = base64::engine::general_purpose::STANDARD
        .encode(ring::hmac::sign(&key, to_sign.as_bytes()).as_ref());
    let origin = endpoint
        .trim_end_matches('/')
        .trim_end_matches(AZURITE_ACCOUNT);
    let created = reqwest::Client::new()
        .put(format!(
            "{}{path}?restype=container",
            origin.trim_end_matches('/')
        ))
        .header("x-ms-date", &date)
        .header("x-ms-version", version)
        .header("Content-Length", "0")
        .header(
            "Authorization",
            format!("SharedKey {AZURITE_ACCOUNT}:{signature}"),
        )
        .send()
        .await
        .unwrap();
    let status = created.status();
    assert!(
        status.is_success(),
        "cannot create container {container} at {endpoint}: {status} {}",
        created.text().await.unwrap_or_default()
    );
    let env = [
        ("AZURE_STORAGE_ACCOUNT_NAME", AZURITE_ACCOUNT),
        ("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY),
        ("AZURE_STORAGE_ENDPOINT", endpoint),
        ("AZURE_ALLOW_HTTP", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    (format!("az://{container}/weft"), env)
}

/// The GCS stand-in (`tests/gcs/emulator.py`: the XML API `object_store` calls) the tests
/// may use, as its base URL; `None` (with a message) when there is none, and a failure when
/// `GCS_TESTS=required` (as in CI).
pub fn gcs_endpoint() -> Option<String> {
    test_server_endpoint(
        "GCS_TEST_ENDPOINT",
        "GCS_TESTS",
        "GCS",
        "tests/gcs/emulator.py's URL (scripts/test starts it)",
    )
}

/// A fresh bucket on the GCS stand-in at `endpoint` (buckets exist on first use there); the
/// `storage` URL and the `GOOGLE_*` settings that reach it.
pub fn gcs_bucket(endpoint: &str) -> (String, Vec<(String, String)>) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let bucket = format!(
        "weft-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let env = [
        ("GOOGLE_BASE_URL", endpoint),
        ("GOOGLE_BEARER_TOKEN", "weft-test"),
        ("GOOGLE_ALLOW_HTTP", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    (format!("gs://{bucket}/weft"), env)
}

/// Sets `config` to seal partitions one second after their hour and keep no local copy of
/// published ones, on `storage` (the S3 bucket, or a directory under the data dir). With S3,
/// splits are listed in a PostgreSQL of the test's own when PostgreSQL is installed; the
/// server is returned, to live as long as the test.
pub async fn use_object_storage(
    config: &mut Config,
    storage: StorageUnderTest,
) -> Option<crate::postgres::PgServer> {
    let mut postgres = None;
    let (url, env) = match storage {
        StorageUnderTest::Local => return None,
        StorageUnderTest::File => (
            format!("file://{}", config.data_dir.join("bucket").display()),
            Vec::new(),
        ),
        StorageUnderTest::S3 => {
            let endpoint = s3_endpoint().expect("STORAGE_UNDER_TEST=s3 needs S3_TEST_ENDPOINT");
            postgres = crate::postgres::PgServer::start();
            config.metastore = postgres.as_ref().map(|pg| pg.url());
            s3_bucket(&endpoint).await
        }
        StorageUnderTest::Azure => {
            let endpoint =
                azure_endpoint().expect("STORAGE_UNDER_TEST=azure needs AZURE_TEST_ENDPOINT");
            azure_container(&endpoint).await
        }
        StorageUnderTest::Gcs => {
            gcs_bucket(&gcs_endpoint().expect("STORAGE_UNDER_TEST=gcs needs GCS_TEST_ENDPOINT"))
        }
    };
    config.storage = Some(weft::storage::StorageUrl::parse(&url).unwrap());
    config.storage_env = env;
    config.seal_interval = Duration::from_secs(1);
    config.cache_bytes = 0;
    postgres
}

/// Waits until `partitions` partitions are published and kept only in object storage.
pub async fn wait_until_remote(server: &impl Node, partitions: usize) {
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let metric = |name| metric_at(&client, server.http_addr(), name);
        let remote = metric("weft_storage_remote_partitions").await;
        let pending = metric("weft_storage_pending_uploads").await;
        if remote >= partitions as f64 && pending == 0.0 {
            return;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "only {remote} of {partitions} partitions remote ({pending} uploads pending)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every record `q` finds on `server`, a page of `limit` at a time, in the order given.
pub async fn page_through(server: &impl Node, q: &str, limit: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let mut params = vec![("q", q), ("limit", limit), ("start", "0")];
        if !cursor.is_empty() {
            params.push(("cursor", cursor.as_str()));
        }
        let (status, body) = get_json(server, "/api/v1/logs", &params).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["partial"], false, "{body}");
        for log in body["logs"].as_array().unwrap() {
            seen.push(log["body"].as_str().unwrap().to_string());
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => return seen,
        }
        assert!(seen.len() < 1_000, "paging does not end");
    }
}
