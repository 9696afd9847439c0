//! Retention runs on its timer and deletes whole partitions that fell out of the window.

use std::time::Duration;

use crate::bad_input::record;
use crate::common::{TestServer, now_nanos};

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
    let answer = server.export_logs("retained", vec![old, recent]).await;
    assert_eq!(answer.partial_success, None, "both within six hours");
    let everything = [("q", "service:retained"), ("start", "0")];
    server
        .wait_for_bodies(&everything, &["from just now", "from five hours ago"])
        .await;
    let dir = server.stop().await;

    let server = TestServer::start_with(dir, |c| {
        c.retention = Duration::from_secs(2 * 3600);
        c.retention_interval = Duration::from_millis(100);
    })
    .await;
    server
        .wait_for_bodies(&everything, &["from just now"])
        .await;
    // The old partition leaves searches before its directory is removed and counted.
    let started = std::time::Instant::now();
    while server.metric("weft_partitions_deleted_total").await < 1.0 {
        assert!(started.elapsed() < crate::common::DEADLINE, "never counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
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
    let (server, faults) = TestServer::faulty(|c| {
        c.retention = Duration::from_secs(24 * 3600);
        c.retention_interval = Duration::from_secs(3600);
        // Any two partitions are over the cap; retention keeps the newest of each signal.
        c.max_disk_bytes = Some(1);
        c.min_free_disk_bytes = 1 << 20;
    })
    .await;
    let mut old = record("from two hours ago", vec![]);
    old.time_unix_nano = now_nanos() - 2 * 3600 * 1_000_000_000;
    let recent = record("from just now", vec![]);
    // Retention first runs as the indexer takes its first entry: the recent record first, so
    // that run has passed (and the next is an hour away) before the old hour exists.
    server.export_logs("cramped", vec![recent]).await;
    server.wait_for_logs("service:cramped", 1).await;
    server.export_logs("cramped", vec![old]).await;
    let everything = [("q", "service:cramped"), ("start", "0")];
    server
        .wait_for_bodies(&everything, &["from just now", "from two hours ago"])
        .await;
    // The old hour exists and nothing deleted it: retention's next turn is an hour away.
    assert_eq!(server.metric("weft_partitions_deleted_total").await, 0.0);

    faults.set_space_left(Some(512 << 10));
    crate::common::wait_for_status(&server, "/readyz", 503).await;
    // Within the deadline, so only the low-disk schedule (every 5 s) can have run.
    server
        .wait_for_bodies(&everything, &["from just now"])
        .await;
    assert_eq!(server.metric("weft_partitions_deleted_total").await, 1.0);
    faults.set_space_left(None);
    server.stop().await;
}
