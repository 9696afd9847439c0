//! Retention runs on its timer and deletes whole partitions that fell out of the window.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;

use crate::bad_input::{logs_request, record};
use crate::common::{DEADLINE, TestServer, now_nanos};

/// Data taken under a long retention, then weft restarted with a shorter one (records older
/// than the retention are refused at ingest, so this is how old partitions come to exist).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_partitions_are_deleted_and_recent_ones_kept() {
    let server = TestServer::start_with(tempfile::tempdir().unwrap(), |c| {
        c.retention = Duration::from_secs(6 * 3600);
    })
    .await;
    let mut old = record("from five hours ago", vec![]);
    old.time_unix_nano = now_nanos() - 5 * 3600 * 1_000_000_000;
    let recent = record("from just now", vec![]);
    let mut client = LogsServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap();
    let answer = client
        .export(logs_request("retained", vec![old, recent]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.partial_success, None, "both within six hours");
    let everything = [("q", "service:retained"), ("start", "0")];
    let started = Instant::now();
    while server.get("/api/v1/logs", &everything).await.1["logs"]
        .as_array()
        .unwrap()
        .len()
        < 2
    {
        assert!(started.elapsed() < DEADLINE, "records not searchable");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dir = server.stop().await;

    let server = TestServer::start_with(dir, |c| {
        c.retention = Duration::from_secs(2 * 3600);
        c.retention_interval = Duration::from_millis(100);
    })
    .await;
    let started = Instant::now();
    loop {
        let (_, body) = server.get("/api/v1/logs", &everything).await;
        let bodies: Vec<&str> = body["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["body"].as_str().unwrap())
            .collect();
        if bodies == ["from just now"]
            && server.metric("weft_partitions_deleted_total").await >= 1.0
        {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "old partition still there: {bodies:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs_dir = server.dir.path().join("index").join("logs");
    assert_eq!(std::fs::read_dir(logs_dir).unwrap().count(), 1);
    server.stop().await;
}

/// While free space is below the watermark, retention runs every few seconds instead of every
/// `retention_interval` (here an hour, so only the low-disk schedule can delete anything): the
/// disk cap then frees the oldest partition without waiting the hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_runs_sooner_while_the_disk_is_low() {
    use weft_index::faults::Faults;
    let faults = Faults::none();
    let server = TestServer::start_with_faults(
        tempfile::tempdir().unwrap(),
        |c| {
            c.retention = Duration::from_secs(24 * 3600);
            c.retention_interval = Duration::from_secs(3600);
            // Any two partitions are over the cap; retention keeps the newest of each signal.
            c.max_disk_bytes = Some(1);
            c.min_free_disk_bytes = 1 << 20;
        },
        Some(faults.clone()),
    )
    .await;
    let mut old = record("from two hours ago", vec![]);
    old.time_unix_nano = now_nanos() - 2 * 3600 * 1_000_000_000;
    let recent = record("from just now", vec![]);
    let mut client = LogsServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap();
    // Retention first runs as the indexer takes its first entry: the recent record first, so
    // that run has passed (and the next is an hour away) before the old hour exists.
    client
        .export(logs_request("cramped", vec![recent]))
        .await
        .unwrap();
    server.wait_for_logs("service:cramped", 1).await;
    client
        .export(logs_request("cramped", vec![old]))
        .await
        .unwrap();
    let everything = [("q", "service:cramped"), ("start", "0")];
    let bodies = |body: &serde_json::Value| -> Vec<String> {
        body["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["body"].as_str().unwrap().to_string())
            .collect()
    };
    let started = Instant::now();
    loop {
        let (_, body) = server.get("/api/v1/logs", &everything).await;
        if bodies(&body).len() == 2 {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "records not searchable: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The old hour exists and nothing deleted it: retention's next turn is an hour away.
    assert_eq!(server.metric("weft_partitions_deleted_total").await, 0.0);

    faults.set_space_left(Some(512 << 10));
    crate::common::wait_for_status(&server, "/readyz", 503).await;
    let started = Instant::now();
    loop {
        let (_, body) = server.get("/api/v1/logs", &everything).await;
        if bodies(&body) == ["from just now"] {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the old partition is still there while the disk is low: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.metric("weft_partitions_deleted_total").await, 1.0);
    faults.set_space_left(None);
    server.stop().await;
}
