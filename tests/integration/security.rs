//! TLS and tokens: real OTLP exporters (Rust over gRPC, Python over HTTP) exporting over TLS
//! with an ingest token; each role's allowed and refused calls on both listeners; a scoped admin
//! token inside and outside its scope; mutual TLS; certificates reloaded while exporting.
//! The certificates are made at test time (a CA and the certificates it signs, with rcgen).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry_otlp::{LogExporter, WithExportConfig, WithTonicConfig};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use serde_json::{Value, json};
use tempfile::TempDir;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use weft::auth::{Role, Tokens};
use weft::grpc::proto::SearchLogsRequest;
use weft::grpc::proto::query_service_client::QueryServiceClient;
use weft::tls::TlsFiles;

use crate::common::{DEADLINE, TestServer, now_nanos};

const INGEST: &str = "ingest-secret-0123456789";
const READ: &str = "read-secret-0123456789";
const ADMIN: &str = "admin-secret-0123456789";
const TEAM_A: &str = "team-a-secret-0123456789";

/// A test CA, and the certificates it signs, as PEM files in a temporary directory.
struct Pki {
    dir: TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "weft test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::CrlSign,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Pki { dir, ca }
    }

    fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A certificate for `localhost` and 127.0.0.1 with `common_name`: (cert PEM, key PEM).
    fn issue(&self, common_name: &str) -> (String, String) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes a server certificate to `server.pem` / `server.key` (replacing any before it);
    /// returns the files and the certificate (DER).
    fn write_server(&self, common_name: &str) -> (TlsFiles, Vec<u8>) {
        let (cert, key) = self.issue(common_name);
        let files = TlsFiles {
            cert: self.dir.path().join("server.pem"),
            key: self.dir.path().join("server.key"),
            client_ca: None,
        };
        // Each file replaced whole (write then rename), as certificate tooling does.
        replace(&files.key, &key);
        replace(&files.cert, &cert);
        (files, der(&cert))
    }
}

fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn tokens() -> Tokens {
    let mut tokens = Tokens::default();
    let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect()
    };
    tokens
        .add_role(Role::Ingest, &map(&[("collector", INGEST)]))
        .unwrap();
    tokens
        .add_role(Role::Read, &map(&[("grafana", READ)]))
        .unwrap();
    let scoped = format!("{TEAM_A}:checkout*|cart");
    tokens
        .add_role(Role::Admin, &map(&[("root", ADMIN), ("team-a", &scoped)]))
        .unwrap();
    tokens
}

async fn secure_server(pki: &Pki, client_ca: bool) -> TestServer {
    let (mut files, _) = pki.write_server("weft-1");
    if client_ca {
        files.client_ca = Some(pki.ca_path());
    }
    TestServer::start_with(tempfile::tempdir().unwrap(), |c| {
        c.tls = Some(files);
        c.tokens = tokens();
    })
    .await
}

fn https_client(pki: &Pki) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem().as_bytes()).unwrap())
        .build()
        .unwrap()
}

async fn call(request: reqwest::RequestBuilder, token: Option<&str>) -> (u16, Value) {
    let request = match token {
        Some(t) => request.bearer_auth(t),
        None => request,
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn log_body(service: &str, body: &str) -> Value {
    json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeLogs": [{"logRecords": [{
            "timeUnixNano": now_nanos().to_string(),
            "severityNumber": 17,
            "body": {"stringValue": body},
        }]}],
    }]})
}

async fn tls_channel(server: &TestServer, pki: &Pki, identity: Option<Identity>) -> Channel {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pki.ca_pem()))
        .domain_name("localhost");
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    Channel::from_shared(format!("https://127.0.0.1:{}", server.grpc.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(t) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    request
}

/// Polls an HTTPS log search (with the read token) until `want` records match.
async fn wait_for_logs(
    client: &reqwest::Client,
    server: &TestServer,
    q: &str,
    want: usize,
) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let url = format!("https://127.0.0.1:{}/api/v1/logs", server.http.port());
        let (status, body) = call(
            client.get(url).query(&[("q", q), ("limit", "1000")]),
            Some(READ),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let logs = body["logs"].as_array().cloned().unwrap_or_default();
        if logs.len() >= want {
            return logs;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "only {} of {want} records for '{q}'",
            logs.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metric(client: &reqwest::Client, server: &TestServer, name: &str) -> f64 {
    let url = format!("https://127.0.0.1:{}/metrics", server.http.port());
    let text = client.get(url).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("metric {name} missing"))
        .parse()
        .unwrap()
}

/// The Rust SDK's OTLP/gRPC log exporter over TLS, with `token` in its metadata (as
/// `OTEL_EXPORTER_OTLP_HEADERS` would set it).
fn rust_logger(server: &TestServer, pki: &Pki, token: Option<&str>) -> SdkLoggerProvider {
    let mut metadata = tonic::metadata::MetadataMap::new();
    if let Some(t) = token {
        metadata.insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let exporter = LogExporter::builder()
        .with_tonic()
        .with_endpoint(format!("https://127.0.0.1:{}", server.grpc.port()))
        .with_tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(pki.ca_pem()))
                .domain_name("localhost"),
        )
        .with_metadata(metadata)
        .build()
        .unwrap();
    SdkLoggerProvider::builder()
        .with_resource(
            Resource::builder_empty()
                .with_attributes([opentelemetry::KeyValue::new("service.name", "checkout")])
                .build(),
        )
        .with_simple_exporter(exporter)
        .build()
}

fn emit(provider: SdkLoggerProvider, body: String) {
    let logger = provider.logger("security-test");
    let mut record = logger.create_log_record();
    record.set_severity_number(Severity::Error);
    record.set_timestamp(std::time::SystemTime::now());
    record.set_body(AnyValue::from(body));
    logger.emit(record);
    let _ = provider.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_exporter_exports_over_tls_with_an_ingest_token_and_is_refused_without() {
    let pki = Pki::new();
    let server = secure_server(&pki, false).await;
    let client = https_client(&pki);

    let provider = rust_logger(&server, &pki, Some(INGEST));
    tokio::task::spawn_blocking(move || emit(provider, "rust over tls accepted".into()))
        .await
        .unwrap();
    let logs = wait_for_logs(&client, &server, "\"rust over tls accepted\"", 1).await;
    assert_eq!(logs[0]["service"], "checkout");

    // Without a token and with a read token the SDK's export arrives and is refused.
    let missing = "weft_auth_refused_total{role=\"ingest\",reason=\"missing_token\"}";
    let wrong = "weft_auth_refused_total{role=\"ingest\",reason=\"wrong_role\"}";
    assert_eq!(metric(&client, &server, missing).await, 0.0);
    let provider = rust_logger(&server, &pki, None);
    tokio::task::spawn_blocking(move || emit(provider, "rust without token".into()))
        .await
        .unwrap();
    assert_eq!(metric(&client, &server, missing).await, 1.0);
    let provider = rust_logger(&server, &pki, Some(READ));
    tokio::task::spawn_blocking(move || emit(provider, "rust with read token".into()))
        .await
        .unwrap();
    assert_eq!(metric(&client, &server, wrong).await, 1.0);
    let (_, all) = call(
        client
            .get(format!(
                "https://127.0.0.1:{}/api/v1/logs",
                server.http.port()
            ))
            .query(&[("q", "rust")]),
        Some(READ),
    )
    .await;
    assert_eq!(all["logs"].as_array().unwrap().len(), 1, "{all}");

    // Plain text to a TLS listener gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/readyz", server.http.port()))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_may_do_its_part_on_both_listeners_and_nothing_else() {
    let pki = Pki::new();
    let server = secure_server(&pki, false).await;
    let client = https_client(&pki);
    let base = format!("https://127.0.0.1:{}", server.http.port());

    // OTLP/HTTP export: ingest only; the refusal is a google.rpc.Status in the request's format.
    let export = |token| {
        call(
            client
                .post(format!("{base}/v1/logs"))
                .json(&log_body("checkout", "http export")),
            token,
        )
    };
    let (status, body) = export(None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], 16, "UNAUTHENTICATED: {body}");
    assert!(body["message"].as_str().unwrap().contains("ingest token"));
    assert_eq!(export(Some("not-a-token-at-all")).await.0, 401);
    let (status, body) = export(Some(READ)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], 7, "PERMISSION_DENIED: {body}");
    assert_eq!(export(Some(ADMIN)).await.0, 403);
    assert_eq!(export(Some(INGEST)).await.0, 200);

    // The query and Jaeger APIs: read or admin.
    for path in [
        "/api/v1/logs?q=export",
        "/api/v1/services",
        "/api/v1/severity/rules",
        "/api/v1/severity/audit",
        "/api/services",
        "/api/traces?service=checkout",
        "/api/v1/logs/histogram",
    ] {
        let get = |token| call(client.get(format!("{base}{path}")), token);
        let (status, body) = get(None).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("read token"),
            "{body}"
        );
        assert_eq!(get(Some(INGEST)).await.0, 403, "{path}");
        assert_eq!(get(Some(READ)).await.0, 200, "{path}");
        assert_eq!(get(Some(ADMIN)).await.0, 200, "{path}");
    }
    let response = client
        .get(format!("{base}/api/v1/logs/tail"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"weft\""
    );
    // A service filtering at the source reads its effective rules with its ingest token.
    let effective = format!("{base}/api/v1/severity/effective?service=checkout");
    assert_eq!(call(client.get(&effective), None).await.0, 401);
    assert_eq!(call(client.get(&effective), Some(INGEST)).await.0, 200);
    // Open to all: health, readiness, metrics, the UI's files.
    for path in ["/healthz", "/readyz", "/metrics", "/", "/ui/app.js"] {
        assert_eq!(
            call(client.get(format!("{base}{path}")), None).await.0,
            200,
            "{path}"
        );
    }

    // gRPC: export needs the ingest token, queries the read (or admin) token.
    let channel = tls_channel(&server, &pki, None).await;
    let mut logs = LogsServiceClient::new(channel.clone());
    let request = || ExportLogsServiceRequest::default();
    let refused = logs.export(with_token(request(), None)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let refused = logs
        .export(with_token(request(), Some(READ)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("'grafana' is a read token"));
    logs.export(with_token(request(), Some(INGEST)))
        .await
        .unwrap();
    let mut query = QueryServiceClient::new(channel);
    let search = || SearchLogsRequest {
        query: "export".into(),
        limit: 10,
        ..Default::default()
    };
    let refused = query
        .search_logs(with_token(search(), None))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let refused = query
        .search_logs(with_token(search(), Some(INGEST)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    query
        .search_logs(with_token(search(), Some(READ)))
        .await
        .unwrap();
    query
        .search_logs(with_token(search(), Some(ADMIN)))
        .await
        .unwrap();

    // Every refusal is counted by role and reason.
    let counted = |role: &'static str, reason: &'static str| {
        let name = format!("weft_auth_refused_total{{role=\"{role}\",reason=\"{reason}\"}}");
        let (client, server) = (&client, &server);
        async move { metric(client, server, &name).await }
    };
    assert_eq!(counted("ingest", "missing_token").await, 2.0);
    assert_eq!(counted("ingest", "unknown_token").await, 1.0);
    assert_eq!(counted("ingest", "wrong_role").await, 3.0);
    assert_eq!(counted("read", "missing_token").await, 10.0);
    assert_eq!(counted("read", "wrong_role").await, 8.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_admin_token_changes_rules_inside_its_scope_only() {
    let pki = Pki::new();
    let server = secure_server(&pki, false).await;
    let client = https_client(&pki);
    let rules = format!(
        "https://127.0.0.1:{}/api/v1/severity/rules",
        server.http.port()
    );
    let rule = |service: Option<&str>| {
        json!({"selector": {"service": service}, "action": {"min_severity": "DEBUG"},
               "ttl": "15m", "reason": "INC-7", "force": true})
    };
    let create = |body: Value, token| call(client.post(&rules).json(&body), token);

    assert_eq!(create(rule(Some("checkout")), None).await.0, 401);
    assert_eq!(create(rule(Some("checkout")), Some(READ)).await.0, 403);
    let (status, inside) = create(rule(Some("checkout-api")), Some(TEAM_A)).await;
    assert_eq!(status, 201, "{inside}");
    assert_eq!(inside["created_by"], "team-a");
    assert_eq!(create(rule(Some("cart")), Some(TEAM_A)).await.0, 201);
    for outside in [Some("payments"), Some("*"), Some("c*"), None] {
        let (status, body) = create(rule(outside), Some(TEAM_A)).await;
        assert_eq!(status, 403, "{outside:?}: {body}");
        let message = body["error"].as_str().unwrap();
        assert!(message.contains("checkout*|cart"), "{message}");
    }
    // An unscoped admin token may select anything; team-a may not delete its rule.
    let (status, theirs) = create(rule(Some("payments")), Some(ADMIN)).await;
    assert_eq!(status, 201, "{theirs}");
    let delete = |id: &str, token| {
        call(
            client
                .delete(format!("{rules}/{id}"))
                .query(&[("reason", "done")]),
            token,
        )
    };
    let (status, body) = delete(theirs["id"].as_str().unwrap(), Some(TEAM_A)).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = delete(inside["id"].as_str().unwrap(), Some(TEAM_A)).await;
    assert_eq!(status, 200, "{body}");

    // The audit log names the token of every change, and holds no secret.
    let (status, audit) = call(
        client.get(format!(
            "https://127.0.0.1:{}/api/v1/severity/audit",
            server.http.port()
        )),
        Some(READ),
    )
    .await;
    assert_eq!(status, 200);
    let by: Vec<(&str, &str)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["by"].as_str().unwrap()))
        .collect();
    assert_eq!(
        by,
        [
            ("delete", "team-a"),
            ("create", "root"),
            ("create", "team-a"),
            ("create", "team-a")
        ]
    );
    let text = audit.to_string();
    for secret in [INGEST, READ, ADMIN, TEAM_A] {
        assert!(!text.contains(secret));
    }
    assert_eq!(
        metric(
            &client,
            &server,
            "weft_auth_refused_total{role=\"admin\",reason=\"out_of_scope\"}"
        )
        .await,
        5.0
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_a_certificate_from_the_ca() {
    let pki = Pki::new();
    let server = secure_server(&pki, true).await;
    let readyz = format!("https://127.0.0.1:{}/readyz", server.http.port());
    let anonymous = https_client(&pki).get(&readyz).send().await;
    assert!(anonymous.is_err(), "answered without a client certificate");

    let (cert, key) = pki.issue("exporter-7");
    let identity = reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem().as_bytes()).unwrap())
        .identity(identity)
        .build()
        .unwrap();
    assert_eq!(client.get(&readyz).send().await.unwrap().status(), 200);

    // A certificate from another CA is refused too; gRPC with a good one works.
    let stranger = Pki::new();
    let (cert, key) = stranger.issue("stranger");
    let identity = reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap();
    let strange = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem().as_bytes()).unwrap())
        .identity(identity)
        .build()
        .unwrap();
    assert!(strange.get(&readyz).send().await.is_err());
    let (cert, key) = pki.issue("exporter-8");
    let channel = tls_channel(&server, &pki, Some(Identity::from_pem(cert, key))).await;
    LogsServiceClient::new(channel)
        .export(with_token(
            ExportLogsServiceRequest::default(),
            Some(INGEST),
        ))
        .await
        .unwrap();
    server.stop().await;
}

/// The certificate (DER) a new TLS connection to `addr` is served.
async fn served_certificate(pki: &Pki, addr: std::net::SocketAddr) -> Vec<u8> {
    use rustls::pki_types::ServerName;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_certificate_is_served_without_a_restart_or_a_lost_export() {
    let pki = Pki::new();
    let server = secure_server(&pki, false).await;
    let client = https_client(&pki);
    let first = served_certificate(&pki, server.http).await;

    // One exporter keeps one connection and exports throughout the change.
    let channel = tls_channel(&server, &pki, None).await;
    let mut logs = LogsServiceClient::new(channel);
    let export = |n: usize| {
        let body = log_body("reload", &format!("reload batch {n}"));
        let request: ExportLogsServiceRequest = serde_json::from_value(body).unwrap();
        with_token(request, Some(INGEST))
    };
    let mut acked = 0;
    for _ in 0..5 {
        logs.export(export(acked)).await.unwrap();
        acked += 1;
    }
    let (_, second) = pki.write_server("weft-2");
    assert_ne!(first, second);
    let started = Instant::now();
    while served_certificate(&pki, server.http).await != second {
        logs.export(export(acked)).await.unwrap();
        acked += 1;
        assert!(
            started.elapsed() < DEADLINE,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served_certificate(&pki, server.grpc).await, second);
    // At least one: the SIGHUP test in this process reloads every TLS server in it.
    assert!(metric(&client, &server, "weft_tls_reloads_total").await >= 1.0);
    for _ in 0..5 {
        logs.export(export(acked)).await.unwrap();
        acked += 1;
    }
    // A key that does not match the certificate is not taken; the last good pair stays.
    replace(
        &pki.dir.path().join("server.key"),
        &KeyPair::generate().unwrap().serialize_pem(),
    );
    let started = Instant::now();
    while metric(&client, &server, "weft_tls_reload_errors_total").await < 1.0 {
        assert!(
            started.elapsed() < DEADLINE,
            "the bad key was never looked at"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served_certificate(&pki, server.http).await, second);
    logs.export(export(acked)).await.unwrap();
    acked += 1;
    let found = wait_for_logs(&client, &server, "service:reload", acked).await;
    assert_eq!(found.len(), acked, "every acknowledged export once");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_even_when_the_files_look_unchanged() {
    let pki = Pki::new();
    let server = secure_server(&pki, false).await;
    let first = served_certificate(&pki, server.http).await;
    let cert_path = pki.dir.path().join("server.pem");
    let key_path = pki.dir.path().join("server.key");
    let stamp = |path: &Path| {
        let meta = std::fs::metadata(path).unwrap();
        (meta.modified().unwrap(), meta.len())
    };
    let (old_cert, old_key) = (stamp(&cert_path), stamp(&key_path));
    // A new pair of exactly the same sizes, given the old modification times: the change
    // cannot be seen by looking at the files, so only SIGHUP can bring it in.
    // (Signatures and serial numbers vary in length by a few bytes; blank lines after the PEM
    // block, which parsers skip, make up the difference.)
    let (mut cert, key) = (0..200)
        .map(|_| pki.issue("weft-2"))
        .find(|(c, k)| c.len() as u64 <= old_cert.1 && k.len() as u64 == old_key.1)
        .expect("a certificate no larger");
    while (cert.len() as u64) < old_cert.1 {
        cert.push('\n');
    }
    for (path, text, (modified, _)) in [(&cert_path, &cert, old_cert), (&key_path, &key, old_key)] {
        std::fs::write(path, text).unwrap();
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(modified)
            .unwrap();
    }
    assert_eq!((stamp(&cert_path), stamp(&key_path)), (old_cert, old_key));
    assert_eq!(served_certificate(&pki, server.http).await, first);
    // SAFETY: kill(2) on our own pid; weft's handler turns SIGHUP into a reload.
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGHUP) }, 0);
    let started = Instant::now();
    while served_certificate(&pki, server.http).await != der(&cert) {
        assert!(
            started.elapsed() < DEADLINE,
            "SIGHUP did not reload the certificate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

/// The OpenTelemetry Python SDK's OTLP/HTTP exporters, configured by the standard environment
/// variables only, over TLS. Skips when the SDK is not installed, unless PYTHON_TESTS=required
/// (as in CI, where `.ci/run` installs it from PyPI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_exporter_exports_over_tls_with_an_ingest_token() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/export_otlp.py");
    let available = std::process::Command::new("python3")
        .args(["-c", "import opentelemetry.exporter.otlp.proto.http"])
        .status()
        .is_ok_and(|s| s.success());
    if !available {
        crate::common::skip(
            "PYTHON_TESTS",
            "the OpenTelemetry Python SDK",
            "pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http to run",
        );
        return;
    }
    let pki = Pki::new();
    let server = secure_server(&pki, false).await;
    let client = https_client(&pki);
    let run = |headers: Option<String>, marker: &'static str| {
        let mut command = std::process::Command::new("python3");
        command
            .arg(&script)
            .arg(marker)
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("https://127.0.0.1:{}", server.http.port()),
            )
            .env("OTEL_EXPORTER_OTLP_CERTIFICATE", pki.ca_path())
            .env_remove("OTEL_EXPORTER_OTLP_HEADERS")
            // `requests` lets these override the exporter's own CA file (psf/requests#3829).
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE");
        if let Some(h) = headers {
            command.env("OTEL_EXPORTER_OTLP_HEADERS", h);
        }
        async move {
            let output = tokio::task::spawn_blocking(move || command.output().unwrap())
                .await
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout).to_string();
            assert!(
                output.status.success(),
                "{stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let stderr = String::from_utf8_lossy(&output.stderr).to_string();
            (stdout.trim().to_string(), stderr)
        }
    };
    let header = format!("authorization=Bearer%20{INGEST}");
    let (outcome, stderr) = run(Some(header), "pyaccepted").await;
    assert_eq!(outcome, "exported", "{stderr}");
    let logs = wait_for_logs(&client, &server, "pyaccepted", 1).await;
    assert_eq!(logs[0]["service"], "python-checkout");
    assert_eq!(logs[0]["body"], "python over tls pyaccepted");
    // The log was written inside the span: the join finds the trace over HTTPS too.
    let trace_id = logs[0]["trace_id"].as_str().unwrap();
    let (status, trace) = call(
        client.get(format!(
            "https://127.0.0.1:{}/api/v1/traces/{trace_id}",
            server.http.port()
        )),
        Some(READ),
    )
    .await;
    assert!(status == 200 || status == 404, "{trace}");

    assert_eq!(run(None, "pyrefused").await.0, "refused");
    let header = format!("authorization=Bearer%20{READ}");
    assert_eq!(run(Some(header), "pyrefused").await.0, "refused");
    assert_eq!(
        metric(
            &client,
            &server,
            "weft_auth_refused_total{role=\"ingest\",reason=\"wrong_role\"}"
        )
        .await,
        2.0,
        "a log and a span export with the read token"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_weft_client_speak_tls_with_tokens() {
    let pki = Pki::new();
    let server = secure_server(&pki, false).await;
    let client = https_client(&pki);
    let url = format!("https://127.0.0.1:{}", server.http.port());
    let ca = pki.ca_path();
    let cli = move |args: Vec<String>| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
            .arg("severity")
            .args(args)
            .env_remove("WEFT_TOKEN")
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).to_string(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let args = |extra: &[&str], token: Option<&str>| -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        v.extend(["--url".into(), url.clone(), "--ca-file".into()]);
        v.push(ca.display().to_string());
        if let Some(t) = token {
            v.extend(["--token".into(), t.into()]);
        }
        v
    };
    let set = [
        "set",
        "--service",
        "checkout",
        "--min",
        "debug",
        "--ttl",
        "10m",
    ];
    let run = |a: Vec<String>| tokio::task::spawn_blocking(move || cli(a));
    let (ok, _, stderr) = run(args(&set, None)).await.unwrap();
    assert!(!ok && stderr.contains("401"), "{stderr}");
    let (ok, _, stderr) = run(args(&set, Some(READ))).await.unwrap();
    assert!(!ok && stderr.contains("403"), "{stderr}");
    let (ok, stdout, stderr) = run(args(&set, Some(ADMIN))).await.unwrap();
    assert!(ok, "{stderr}");
    assert!(stdout.contains("by root"), "{stdout}");
    let (ok, stdout, stderr) = run(args(&["list"], Some(READ))).await.unwrap();
    assert!(
        ok && stdout.contains("service=checkout"),
        "{stdout}{stderr}"
    );

    // weft-client, with the service's ingest token and the CA, picks the rule up: DEBUG events
    // of `checkout` now pass its filter.
    let (filter, _watch) = weft_client::SeverityFilter::builder(&url, "checkout")
        .token(INGEST)
        .ca_file(pki.ca_path())
        .unwrap()
        .poll_wait(Duration::from_secs(1))
        .start();
    let started = Instant::now();
    while !filter.enabled_for(tracing::Level::DEBUG, "checkout::orders") {
        assert!(
            started.elapsed() < DEADLINE,
            "the filter never saw the rule"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Without a token its requests are refused, and counted.
    let refused = "weft_auth_refused_total{role=\"read\",reason=\"missing_token\"}";
    let before = metric(&client, &server, refused).await;
    let (_filter, _watch) = weft_client::SeverityFilter::builder(&url, "checkout")
        .ca_file(pki.ca_path())
        .unwrap()
        .start();
    let started = Instant::now();
    while metric(&client, &server, refused).await <= before {
        assert!(
            started.elapsed() < DEADLINE,
            "the tokenless watcher never asked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}
