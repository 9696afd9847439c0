//! An ack is a promise, whatever the disk and the threads do. Each test makes one failure
//! happen on purpose (through `weft_index::faults`, which the WAL and every index directory
//! write through) and checks: nothing acknowledged is lost or stored twice, new data is refused
//! with a retryable answer while the fault lasts, `/readyz` says why, and weft recovers by
//! itself when the fault goes away.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use tonic_types::StatusExt;
use weft_index::faults::Fault;

use crate::bad_input::{logs_request, record};
use crate::common::{DEADLINE, TestServer, wait_for_status};

type Client = LogsServiceClient<tonic::transport::Channel>;

async fn client(server: &TestServer) -> Client {
    LogsServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap()
}

/// Exports `n` records with body `tag` over gRPC.
async fn export(client: &mut Client, tag: &str, n: usize) -> Result<(), tonic::Status> {
    let records = (0..n)
        .map(|i| record(&format!("{tag} n{i}"), vec![]))
        .collect();
    client
        .export(logs_request("faulty", records))
        .await
        .map(|_| ())
}

/// A refusal an OTLP exporter retries: UNAVAILABLE with a RetryInfo delay.
fn assert_retryable(status: &tonic::Status) {
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    let delay = status
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo with a delay");
    assert!(delay > Duration::ZERO);
}

async fn count(server: &TestServer, tag: &str) -> usize {
    let (status, body) = server
        .get(
            "/api/v1/logs",
            &[("q", &format!("\"{tag}\"")), ("limit", "1000")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["logs"].as_array().unwrap().len()
}

/// Polls until `tag` has `want` records, then checks it stays at exactly `want`.
async fn assert_exactly(server: &TestServer, tag: &str, want: usize) {
    let started = Instant::now();
    loop {
        let found = count(server, tag).await;
        assert!(found <= want, "{tag}: {found} records, {want} acknowledged");
        if found == want {
            return;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{tag}: {found} of {want} acknowledged records after {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metric(server: &TestServer, line_prefix: &str) -> f64 {
    server.metric(line_prefix).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_wal_fsync_refuses_retryably_and_recovers_by_itself() {
    let (server, faults) = TestServer::faulty(|_| {}).await;
    let mut client = client(&server).await;
    export(&mut client, "before", 10).await.unwrap();

    faults.set(Fault::WalSyncError, true);
    let refused = export(&mut client, "during", 10).await.unwrap_err();
    assert_retryable(&refused);
    let ready = wait_for_status(&server, "/readyz", 503).await;
    assert!(ready.contains("wal_failing"), "{ready}");
    // While the condition holds, requests are refused before they reach the log.
    let refused = export(&mut client, "during", 10).await.unwrap_err();
    assert_retryable(&refused);
    assert!(refused.message().contains("fsync"), "{}", refused.message());
    // Over HTTP the refusal comes before the body is read.
    let body = serde_json::json!({"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"during http"}}]}]}]});
    let response = server
        .client
        .post(server.url("/v1/logs"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(
        metric(&server, "weft_condition{condition=\"wal_failing\"}").await,
        1.0
    );

    // The fault goes away: the WAL thread's next fsync succeeds without any new request.
    faults.set(Fault::WalSyncError, false);
    wait_for_status(&server, "/readyz", 200).await;
    export(&mut client, "after", 10).await.unwrap();
    assert!(metric(&server, "weft_wal_errors_total").await >= 1.0);

    // A crash, so that the next start replays the WAL rather than finding it all committed.
    let dir = server.crash().await;
    let server = TestServer::start_with(dir, |_| {}).await;
    assert_exactly(&server, "before", 10).await;
    assert_exactly(&server, "after", 10).await;
    assert_eq!(count(&server, "during").await, 0);
    server.stop().await;
}

/// Regression: an indexing error advanced the checkpoint anyway, and the WAL segment holding
/// acknowledged rows could be deleted. Now the index is rolled back and the rows are added
/// again from the WAL once the fault is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_failure_refuses_new_data_then_replays_every_acknowledged_row_once() {
    let (server, faults) = TestServer::faulty(|c| c.wal_segment_bytes = 4096).await;
    let mut client = client(&server).await;
    export(&mut client, "committed", 20).await.unwrap();
    assert_exactly(&server, "committed", 20).await;

    faults.set(Fault::IndexWriteError, true);
    // Acknowledged: the WAL is fine. Indexing it fails at the next commit.
    export(&mut client, "pending", 20).await.unwrap();
    let ready = wait_for_status(&server, "/readyz", 503).await;
    assert!(ready.contains("index_failing"), "{ready}");
    let refused = export(&mut client, "refused", 5).await.unwrap_err();
    assert_retryable(&refused);
    assert!(metric(&server, "weft_index_errors_total").await >= 1.0);
    assert_eq!(count(&server, "pending").await, 0);

    faults.set(Fault::IndexWriteError, false);
    wait_for_status(&server, "/readyz", 200).await;
    assert_exactly(&server, "pending", 20).await;
    export(&mut client, "later", 20).await.unwrap();
    assert_exactly(&server, "later", 20).await;

    // And across a crash and the replay that follows nothing comes back twice.
    let dir = server.crash().await;
    let server = TestServer::start_with(dir, |_| {}).await;
    assert_exactly(&server, "committed", 20).await;
    assert_exactly(&server, "pending", 20).await;
    assert_exactly(&server, "later", 20).await;
    assert_eq!(count(&server, "refused").await, 0);
    // Rows replayed from the WAL, where a run of rows holds its service and resource once,
    // come back each with its own, in the answer and in the columns filters read.
    let (status, body) = server
        .get(
            "/api/v1/logs",
            &[
                (
                    "q",
                    "service:faulty AND resource.service.name:faulty AND \"pending\"",
                ),
                ("limit", "1000"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let rows = body["logs"].as_array().unwrap();
    assert_eq!(rows.len(), 20, "{body}");
    for row in rows {
        assert_eq!(row["resource"]["service.name"], "faulty", "{row}");
    }
    server.stop().await;
}

/// A full disk, emulated so it happens at an exact byte: appends fail midway. Regression: the
/// batches acknowledged after space came back sat behind a torn frame and were cut off at the
/// next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_midway_through_an_append_loses_nothing_acknowledged() {
    let (server, faults) = TestServer::faulty(
        // The watermark would refuse before the disk is full; this test is about the writes.
        |c| c.min_free_disk_bytes = 0,
    )
    .await;
    let mut client = client(&server).await;
    export(&mut client, "early", 50).await.unwrap();
    assert_exactly(&server, "early", 50).await;
    faults.set_space_left(Some(3_000));
    let mut acked_while_filling = 0;
    let mut refused = 0;
    for i in 0..20 {
        match export(&mut client, &format!("filling{i}"), 20).await {
            Ok(()) => acked_while_filling += 1,
            Err(status) => {
                assert_retryable(&status);
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "the emulated disk never filled");
    faults.set_space_left(None);
    wait_for_status(&server, "/readyz", 200).await;
    for i in 0..5 {
        export(&mut client, &format!("freed{i}"), 20).await.unwrap();
    }
    // A crash: the next start replays the WAL, torn frames and all.
    let dir = server.crash().await;
    let server = TestServer::start_with(dir, |_| {}).await;
    assert_exactly(&server, "early", 50).await;
    for i in 0..5 {
        assert_exactly(&server, &format!("freed{i}"), 20).await;
    }
    let mut stored = 0;
    for i in 0..20 {
        let found = count(&server, &format!("filling{i}")).await;
        assert!(found == 0 || found == 20, "filling{i}: a partial batch");
        stored += found / 20;
    }
    // Acknowledged batches are all there; refused ones were cut back out of the log.
    assert_eq!(
        stored, acked_while_filling,
        "acknowledged {acked_while_filling} batches while the disk filled, found {stored}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_free_space_watermark_data_is_refused_until_space_returns() {
    let (server, faults) = TestServer::faulty(|c| c.min_free_disk_bytes = 1 << 20).await;
    let mut client = client(&server).await;
    export(&mut client, "roomy", 10).await.unwrap();
    faults.set_space_left(Some(512 << 10));
    let ready = wait_for_status(&server, "/readyz", 503).await;
    assert!(ready.contains("disk_low"), "{ready}");
    assert!(ready.contains("min_free_disk_bytes"), "{ready}");
    let refused = export(&mut client, "cramped", 10).await.unwrap_err();
    assert_retryable(&refused);
    assert!(refused.message().contains("free"), "{}", refused.message());
    assert!(
        metric(
            &server,
            "weft_requests_refused_by_condition_total{condition=\"disk_low\"}"
        )
        .await
            >= 1.0
    );
    faults.set_space_left(None);
    wait_for_status(&server, "/readyz", 200).await;
    export(&mut client, "roomy again", 10).await.unwrap();
    assert_exactly(&server, "roomy", 20).await;
    assert_eq!(count(&server, "cramped").await, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_indexer_is_survived_without_losing_rows() {
    let (server, faults) = TestServer::faulty(|_| {}).await;
    let mut client = client(&server).await;
    faults.set(Fault::IndexerPanic, true);
    export(&mut client, "through a panic", 30).await.unwrap();
    assert_exactly(&server, "through a panic", 30).await;
    assert!(metric(&server, "weft_index_errors_total").await >= 1.0);
    wait_for_status(&server, "/readyz", 200).await;
    export(&mut client, "after the panic", 30).await.unwrap();
    assert_exactly(&server, "after the panic", 30).await;
    server.stop().await;
}

/// Regression: with the indexer gone, the WAL thread kept acknowledging and `/readyz` stayed
/// 200. A dead WAL thread now stops acknowledgement, readiness and liveness alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_wal_thread_stops_acks_readiness_and_liveness() {
    let (server, faults) = TestServer::faulty(|_| {}).await;
    let mut client = client(&server).await;
    export(&mut client, "alive", 10).await.unwrap();
    faults.set(Fault::WalPanic, true);
    // The request that meets the panic and every one after it are refused, retryably.
    for _ in 0..3 {
        let refused = export(&mut client, "dead", 10).await.unwrap_err();
        assert_retryable(&refused);
    }
    let ready = wait_for_status(&server, "/readyz", 503).await;
    assert!(ready.contains("wal_thread_dead"), "{ready}");
    let live = wait_for_status(&server, "/healthz", 503).await;
    assert!(live.contains("restart weft"), "{live}");
    // Queries still work.
    assert_exactly(&server, "alive", 10).await;
    let dir = server.crash().await;
    let server = TestServer::start_with(dir, |_| {}).await;
    assert_exactly(&server, "alive", 10).await;
    assert_eq!(count(&server, "dead").await, 0);
    export(&mut self::client(&server).await, "reborn", 10)
        .await
        .unwrap();
    assert_exactly(&server, "reborn", 10).await;
    server.stop().await;
}

/// Regression: weft sometimes ignored SIGTERM for good, its indexer blocked inside tantivy and
/// the WAL thread blocked handing it the next batch. A stop now finishes within
/// `shutdown_timeout` whatever the threads do; the stalled indexer is reported first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_is_bounded_even_with_a_stalled_indexer() {
    const SHUTDOWN: Duration = Duration::from_secs(2);
    let (server, faults) = TestServer::faulty(|c| {
        c.shutdown_timeout = SHUTDOWN;
        c.indexer_stall_timeout = Duration::from_millis(500);
    })
    .await;
    let mut client = client(&server).await;
    faults.set(Fault::IndexerStall, true);
    export(&mut client, "stalled", 10).await.unwrap();
    let ready = wait_for_status(&server, "/readyz", 503).await;
    assert!(ready.contains("no progress"), "{ready}");
    let refused = export(&mut client, "refused", 10).await.unwrap_err();
    assert_retryable(&refused);
    // More entries queue behind the stalled one until the WAL thread is blocked too.
    let pipeline = Arc::clone(server.running().pipeline());
    let stopping = Instant::now();
    let stop = tokio::time::timeout(DEADLINE, server.stop()).await;
    let took = stopping.elapsed();
    let dir = stop.expect("stop returned while the indexer was stalled");
    // Bounded by the setting itself: `shutdown_timeout`, plus a second of margin for the
    // scheduling of a loaded test machine (the pipeline checks its deadline every 5 ms).
    assert!(
        took <= SHUTDOWN + Duration::from_secs(1),
        "the stop took {took:?} with shutdown_timeout {SHUTDOWN:?}"
    );
    assert!(
        !pipeline.is_stopped(),
        "the stalled indexer is still inside its batch"
    );
    // Let the old indexer go, and wait for it, before the data directory is opened again.
    faults.set(Fault::IndexerStall, false);
    let waiter = pipeline.clone();
    tokio::task::spawn_blocking(move || waiter.shutdown_blocking(DEADLINE))
        .await
        .unwrap();
    assert!(pipeline.is_stopped());
    let server = TestServer::start_with(dir, |_| {}).await;
    assert_exactly(&server, "stalled", 10).await;
    assert_eq!(count(&server, "refused").await, 0);
    server.stop().await;
}

/// Regression: requests queued behind a WAL thread that was waiting to hand entries to a
/// failing indexer waited with it (in the real full-disk test, for ever). They are refused
/// now, and the acknowledged ones are all there once the indexer moves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_behind_a_stuck_indexer_are_refused_not_left_waiting() {
    let (server, faults) =
        TestServer::faulty(|c| c.indexer_stall_timeout = Duration::from_millis(300)).await;
    faults.set(Fault::IndexerStall, true);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let mut client = client(&server).await;
        tasks.push(tokio::spawn(async move {
            let tag = format!("queued{i}");
            (tag.clone(), export(&mut client, &tag, 5).await)
        }));
    }
    // Every export is answered while the indexer is still stuck.
    let answered = tokio::time::timeout(DEADLINE, futures_util::future::join_all(tasks))
        .await
        .expect("every export answered while the indexer is stuck");
    let mut acked = Vec::new();
    for result in answered {
        let (tag, outcome) = result.unwrap();
        match outcome {
            Ok(()) => acked.push(tag),
            Err(status) => assert_retryable(&status),
        }
    }
    assert!(
        acked.len() < 40,
        "the indexer was stuck, yet nothing was refused"
    );
    faults.set(Fault::IndexerStall, false);
    for tag in &acked {
        assert_exactly(&server, tag, 5).await;
    }
    server.stop().await;
}

/// An entry whose checksum is right but whose rows do not decode (written by a newer weft, or
/// bytes that went bad before they were checksummed) is copied to `wal-quarantine/` at replay
/// and skipped; the entries around it are indexed, and the next start does not meet it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_that_does_not_decode_is_quarantined_and_the_rest_replayed() {
    use weft::pipeline::wal::Wal;
    use weft_index::RowBatch;
    let server = TestServer::start().await;
    let mut client = client(&server).await;
    export(&mut client, "before", 10).await.unwrap();
    assert_exactly(&server, "before", 10).await;
    let dir = server.crash().await;

    // Appended as weft's WAL thread would: a garbage entry, then a good one behind it.
    let garbage = b"\xffthese bytes are no row batch".to_vec();
    let records = (0..10)
        .map(|i| record(&format!("behind n{i}"), vec![]))
        .collect();
    let rows = weft::normalize::logs(logs_request("faulty", records), crate::common::now_nanos());
    let good = RowBatch {
        logs: rows.rows,
        spans: vec![],
    }
    .encode_packed();
    {
        let mut wal = Wal::open(&dir.path().join("wal"), 1 << 20, 0).unwrap();
        wal.append(&garbage).unwrap();
        wal.append(&good).unwrap();
        wal.sync().unwrap();
    }

    let server = TestServer::start_with(dir, |_| {}).await;
    assert_exactly(&server, "before", 10).await;
    assert_exactly(&server, "behind", 10).await;
    assert_eq!(
        metric(&server, "weft_wal_entries_quarantined_total").await,
        1.0
    );
    let quarantine = server.dir.path().join("wal-quarantine");
    let kept: Vec<_> = std::fs::read_dir(&quarantine)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), garbage);

    // Once skipped it stays behind the checkpoint: the next start does not quarantine it again.
    let dir = server.crash().await;
    let server = TestServer::start_with(dir, |_| {}).await;
    assert_exactly(&server, "behind", 10).await;
    assert_eq!(
        metric(&server, "weft_wal_entries_quarantined_total").await,
        0.0
    );
    assert_eq!(std::fs::read_dir(&quarantine).unwrap().count(), 1);
    server.stop().await;
}

/// While the index keeps failing, the indexer retries after 100 ms, doubling each time up to
/// 5 s (the waits are recorded, and shortened, by `Fault::FastRetries`), then recovers by
/// itself once the fault is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_back_off_from_100ms_doubling_to_5s() {
    let (server, faults) = TestServer::faulty(|_| {}).await;
    let mut client = client(&server).await;
    faults.set(Fault::FastRetries, true);
    faults.set(Fault::IndexWriteError, true);
    export(&mut client, "retried", 10).await.unwrap();
    let started = Instant::now();
    while faults.pauses().len() < 9 {
        assert!(
            started.elapsed() < DEADLINE,
            "retries so far: {:?}",
            faults.pauses()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let millis: Vec<u128> = faults.pauses()[..9]
        .iter()
        .map(Duration::as_millis)
        .collect();
    assert_eq!(
        millis,
        [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000],
        "the waits between retries"
    );
    faults.set(Fault::IndexWriteError, false);
    wait_for_status(&server, "/readyz", 200).await;
    assert_exactly(&server, "retried", 10).await;
    server.stop().await;
}
