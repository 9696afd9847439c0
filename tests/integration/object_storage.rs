//! Sealed partitions in object storage: uploaded, published, evicted from the local disk and
//! read in place by queries; across a restart; while the store is away; after a crash between
//! upload and publish. Each runs on a directory as object storage, and the first also on the
//! S3-compatible server when one is given (required in CI).

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use serde_json::Value;

use crate::bad_input::{logs_request, record};
use crate::common::{
    DEADLINE, StorageUnderTest, TestServer, now_nanos, page_through, s3_endpoint,
    use_object_storage, wait_for_status, wait_until_remote,
};

const HOUR: u64 = 3_600 * 1_000_000_000;

/// Records of an hour that is over (three hours ago), each with its own trace ID, and one of
/// now; returns the old records' trace IDs.
async fn send_old_and_new(server: &TestServer, service: &str, old: usize) -> Vec<String> {
    let then = now_nanos() - 3 * HOUR;
    let mut records = Vec::new();
    let mut traces = Vec::new();
    for i in 0..old {
        let trace: Vec<u8> = (0..16).map(|b| (b as u8) ^ (i as u8) ^ 0x5a).collect();
        traces.push(hex::encode(&trace));
        let mut r = record(&format!("sealed record {i}"), trace);
        r.time_unix_nano = then + i as u64;
        records.push(r);
    }
    records.push(record("fresh record", vec![]));
    let mut client = LogsServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap();
    let answer = client
        .export(logs_request(service, records))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.partial_success, None);
    traces
}

/// Polls `/metrics` until `name` reaches `at_least`; `what` says what did not happen.
async fn wait_for_metric(server: &TestServer, name: &str, at_least: f64, what: &str) {
    let started = Instant::now();
    while server.metric(name).await < at_least {
        assert!(started.elapsed() < DEADLINE, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The published splits the embedded metastore lists, and any in another state.
fn metastore_states(server: &TestServer) -> Vec<(String, String, u64, Value)> {
    let text =
        std::fs::read_to_string(server.dir.path().join("metastore").join("splits.json")).unwrap();
    let file: Value = serde_json::from_str(&text).unwrap();
    file["splits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["state"].as_str().unwrap().to_string(),
                s["docs"].as_u64().unwrap(),
                s["services"].clone(),
            )
        })
        .collect()
}

fn sealed_bodies(logs: &[Value]) -> Vec<String> {
    let mut bodies: Vec<String> = logs
        .iter()
        .map(|l| l["body"].as_str().unwrap().to_string())
        .filter(|b| b.starts_with("sealed record"))
        .collect();
    bodies.sort();
    bodies
}

async fn evicted_partitions_answer_from_storage_and_survive_a_restart(storage: StorageUnderTest) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::common::test_config(&dir);
    // Listed in the embedded metastore, which the checks below read.
    let postgres = use_object_storage(&mut config, storage).await;
    drop(postgres);
    config.metastore = None;
    let restart_config = config.clone();
    let server = TestServer::start_with(dir, |c| *c = config).await;
    let traces = send_old_and_new(&server, "sealed", 5).await;
    server.wait_for_all_logs("service:sealed", 6).await;
    wait_until_remote(&server, 1).await;
    assert!(server.metric("weft_storage_uploads_total").await >= 1.0);
    assert_eq!(
        std::fs::read_dir(server.dir.path().join("index").join("logs"))
            .unwrap()
            .count(),
        1,
        "only the current hour is kept locally"
    );

    // Every answer about the old hour now comes from the split, read in place.
    let reads_before = server.metric("weft_storage_reads_total").await;
    let logs = server.wait_for_all_logs("service:sealed", 6).await;
    let expected: Vec<String> = (0..5).map(|i| format!("sealed record {i}")).collect();
    assert_eq!(sealed_bodies(&logs), expected, "each record once");
    assert!(server.metric("weft_storage_reads_total").await > reads_before);
    let (status, trace) = server
        .get(&format!("/api/v1/traces/{}", traces[3]), &[])
        .await;
    assert_eq!(status, 200, "{trace}");
    assert_eq!(trace["logs"][0]["body"], "sealed record 3");
    let published: Vec<_> = metastore_states(&server)
        .into_iter()
        .filter(|(_, state, _, _)| state == "published")
        .collect();
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0].2, 5, "the split holds the five sealed records");
    assert_eq!(
        published[0].3,
        serde_json::json!(["sealed"]),
        "and lists its service"
    );
    if storage == StorageUnderTest::File {
        let splits = server.dir.path().join("bucket").join("splits");
        let names: Vec<String> = std::fs::read_dir(&splits)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [format!("{}.split", published[0].0)]);
    }

    // After a restart the published split is taken in as it was: nothing is uploaded again,
    // and the old hour still answers.
    let dir = server.stop().await;
    let server = TestServer::start_with(dir, |c| *c = restart_config).await;
    let body = wait_for_status(&server, "/readyz", 200).await;
    assert!(body.contains("storage: ok"), "{body}");
    let logs = server.wait_for_all_logs("service:sealed", 6).await;
    assert_eq!(sealed_bodies(&logs), expected);
    let states = metastore_states(&server);
    assert_eq!(
        states.len(),
        1,
        "no second split of the same rows: {states:?}"
    );
    assert_eq!(states[0].0, published[0].0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_partitions_answer_from_a_directory_store() {
    evicted_partitions_answer_from_storage_and_survive_a_restart(StorageUnderTest::File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_partitions_answer_from_s3() {
    if s3_endpoint().is_none() {
        return;
    }
    evicted_partitions_answer_from_storage_and_survive_a_restart(StorageUnderTest::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_partitions_answer_from_azure_blob() {
    if crate::common::azure_endpoint().is_none() {
        return;
    }
    evicted_partitions_answer_from_storage_and_survive_a_restart(StorageUnderTest::Azure).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_partitions_answer_from_gcs() {
    if crate::common::gcs_endpoint().is_none() {
        return;
    }
    evicted_partitions_answer_from_storage_and_survive_a_restart(StorageUnderTest::Gcs).await;
}

/// The store refuses every upload (its `splits` directory is a plain file): ingest goes on,
/// the old hour stays local and searchable, `/readyz` and `/metrics` say what fails. Once the
/// store is back, the partition is published and evicted, with every record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_wait_out_an_unreachable_store_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::common::test_config(&dir);
    let _ = use_object_storage(&mut config, StorageUnderTest::File).await;
    let server = TestServer::start_with(dir, |c| *c = config).await;
    let blocker = server.dir.path().join("bucket").join("splits");
    std::fs::write(&blocker, b"not a directory").unwrap();

    send_old_and_new(&server, "waiting", 4).await;
    server.wait_for_all_logs("service:waiting", 5).await;
    wait_for_metric(
        &server,
        "weft_storage_upload_errors_total",
        1.0,
        "no upload was attempted",
    )
    .await;
    let body = wait_for_status(&server, "/readyz", 200).await;
    assert!(body.contains("storage: failing"), "{body}");
    assert_eq!(server.metric("weft_storage_pending_uploads").await, 1.0);
    assert_eq!(server.metric("weft_storage_remote_partitions").await, 0.0);
    // Ingest goes on meanwhile, and the unpublished hour answers from the local disk.
    send_old_and_new(&server, "waiting-more", 2).await;
    let logs = server.wait_for_all_logs("service:waiting", 5).await;
    assert_eq!(sealed_bodies(&logs).len(), 4);

    std::fs::remove_file(&blocker).unwrap();
    wait_until_remote(&server, 1).await;
    let started = Instant::now();
    loop {
        let response = server.client.get(server.url("/readyz")).send().await;
        let body = response.unwrap().text().await.unwrap();
        if body.contains("storage: ok") {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = server.wait_for_all_logs("service:waiting", 5).await;
    assert_eq!(
        sealed_bodies(&logs),
        (0..4)
            .map(|i| format!("sealed record {i}"))
            .collect::<Vec<_>>()
    );
    let logs = server.wait_for_all_logs("service:waiting-more", 3).await;
    assert_eq!(sealed_bodies(&logs).len(), 2);
    server.stop().await;
}

/// A crash after the upload and before the publish leaves a staged split. The next start
/// deletes it (object and record) and uploads the partition again under a new name: the rows
/// end up published once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_staged_but_never_published_is_replaced_not_duplicated() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::common::test_config(&dir);
    let _ = use_object_storage(&mut config, StorageUnderTest::File).await;
    // The local copy stays, as it would have: only published partitions are evicted.
    config.cache_bytes = u64::MAX;
    let restart_config = weft::config::Config {
        cache_bytes: 0,
        ..config.clone()
    };
    let server = TestServer::start_with(dir, |c| *c = config).await;
    send_old_and_new(&server, "staged", 3).await;
    wait_for_metric(
        &server,
        "weft_storage_uploads_total",
        1.0,
        "the sealed hour was not uploaded",
    )
    .await;
    let dir = server.stop().await;

    // Turn the published split back into a staged one, as a crash before publishing leaves it.
    let path = dir.path().join("metastore").join("splits.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let first_id = {
        let file: Value = serde_json::from_str(&text).unwrap();
        file["splits"][0]["id"].as_str().unwrap().to_string()
    };
    std::fs::write(&path, text.replace("\"published\"", "\"staged\"")).unwrap();

    let server = TestServer::start_with(dir, |c| *c = restart_config).await;
    wait_until_remote(&server, 1).await;
    let started = Instant::now();
    let states = loop {
        let states = metastore_states(&server);
        if states.len() == 1 && states[0].0 != first_id {
            break states;
        }
        assert!(started.elapsed() < DEADLINE, "{states:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(states[0].1, "published");
    assert_eq!(states[0].2, 3);
    let splits = server.dir.path().join("bucket").join("splits");
    let names: Vec<String> = std::fs::read_dir(&splits)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [format!("{}.split", states[0].0)],
        "the staged object is gone"
    );
    let logs = server.wait_for_all_logs("service:staged", 4).await;
    assert_eq!(
        sealed_bodies(&logs),
        (0..3)
            .map(|i| format!("sealed record {i}"))
            .collect::<Vec<_>>()
    );
    server.stop().await;
}

/// Splits listed in PostgreSQL: published there, taken in again after a restart; while
/// PostgreSQL is away, sealed hours wait (ingest and local queries go on) and are published
/// once it is back, each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splits_listed_in_postgres_wait_out_its_absence() {
    let Some(pg) = crate::postgres::PgServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::common::test_config(&dir);
    let _ = use_object_storage(&mut config, StorageUnderTest::File).await;
    config.metastore = Some(pg.url());
    let restart_config = config.clone();
    let server = TestServer::start_with(dir, |c| *c = config).await;
    send_old_and_new(&server, "pg", 3).await;
    wait_until_remote(&server, 1).await;
    let states = pg.split_states();
    assert_eq!(states.len(), 1, "{states:?}");
    assert_eq!(states[0].1, "published");
    assert_eq!(states[0].2, "pg", "the split lists its services");
    assert!(
        !server.dir.path().join("metastore").exists(),
        "nothing is listed in the embedded metastore"
    );

    // A restart takes in what PostgreSQL lists; the evicted hour answers from its split.
    let dir = server.stop().await;
    let server = TestServer::start_with(dir, |c| *c = restart_config).await;
    let logs = server.wait_for_all_logs("service:pg", 4).await;
    assert_eq!(sealed_bodies(&logs).len(), 3);

    // PostgreSQL goes away: an hour sealed meanwhile cannot be published.
    pg.stop();
    let then = now_nanos() - 5 * HOUR;
    let mut records = Vec::new();
    for i in 0..2 {
        let mut r = record(&format!("sealed record {i}"), vec![]);
        r.time_unix_nano = then + i;
        records.push(r);
    }
    let mut client = LogsServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap();
    client
        .export(logs_request("pg-away", records))
        .await
        .expect("ingest goes on while PostgreSQL is away");
    wait_for_metric(
        &server,
        "weft_storage_upload_errors_total",
        1.0,
        "no publish was attempted",
    )
    .await;
    let body = wait_for_status(&server, "/readyz", 200).await;
    assert!(
        body.contains("storage: failing") && body.contains("PostgreSQL"),
        "{body}"
    );
    let logs = server.wait_for_all_logs("service:pg-away", 2).await;
    assert_eq!(
        sealed_bodies(&logs).len(),
        2,
        "the unpublished hour answers locally"
    );

    // Back: published, every record once.
    pg.start_again();
    wait_until_remote(&server, 2).await;
    let states = pg.split_states();
    assert_eq!(
        states.iter().filter(|(_, s, _)| s == "published").count(),
        2,
        "{states:?}"
    );
    assert_eq!(states.len(), 2, "no staged leftovers: {states:?}");
    let logs = server.wait_for_all_logs("service:pg-away", 2).await;
    assert_eq!(sealed_bodies(&logs).len(), 2);
    let logs = server.wait_for_all_logs("service:pg", 4).await;
    assert_eq!(sealed_bodies(&logs).len(), 3);
    server.stop().await;
}

/// Retention deletes an expired hour everywhere: its split from object storage (marked for
/// deletion first) and from the metastore, though no local copy is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_expired_splits_from_object_storage() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::common::test_config(&dir);
    let _ = use_object_storage(&mut config, StorageUnderTest::File).await;
    config.retention = Duration::from_secs(6 * 3600);
    let mut shorter = config.clone();
    shorter.retention = Duration::from_secs(2 * 3600);
    shorter.retention_interval = Duration::from_millis(100);
    // A split marked for deletion stays readable for a query's time limit (and a second):
    // a short limit makes that short.
    shorter.query_timeout = Duration::from_secs(1);
    let server = TestServer::start_with(dir, |c| *c = config).await;
    send_old_and_new(&server, "expiring", 2).await;
    wait_until_remote(&server, 1).await;
    let splits = server.dir.path().join("bucket").join("splits");
    assert_eq!(std::fs::read_dir(&splits).unwrap().count(), 1);
    let dir = server.stop().await;

    // Three hours old is past a two-hour retention.
    let server = TestServer::start_with(dir, |c| *c = shorter).await;
    let started = Instant::now();
    loop {
        let objects = std::fs::read_dir(&splits).unwrap().count();
        let listed = metastore_states(&server).len();
        let deleted = server.metric("weft_storage_deletes_total").await;
        if objects == 0 && listed == 0 && deleted >= 1.0 {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{objects} objects and {listed} splits still there"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = server.wait_for_all_logs("service:expiring", 1).await;
    assert_eq!(
        sealed_bodies(&logs),
        Vec::<String>::new(),
        "only the fresh record is left"
    );
    server.stop().await;
}

/// Two nodes on one PostgreSQL metastore and one bucket: each split carries the name of the
/// node that published it, and at start a node takes in, and cleans up after, only its own:
/// it neither reads another node's hours as its own nor deletes another node's split in
/// flight (staged) as a leftover of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sharing_a_metastore_keep_to_their_own_splits() {
    let Some(pg) = crate::postgres::PgServer::start() else {
        return;
    };
    let bucket = tempfile::tempdir().unwrap();
    let node_config = |dir: &tempfile::TempDir, name: &str| {
        let mut config = crate::common::test_config(dir);
        config.storage = Some(
            weft::storage::StorageUrl::parse(&format!("file://{}", bucket.path().display()))
                .unwrap(),
        );
        config.metastore = Some(pg.url());
        config.seal_interval = Duration::from_secs(1);
        config.cache_bytes = 0;
        config.node_id = Some(name.to_string());
        config
    };
    let mut nodes = Vec::new();
    for name in ["node-a", "node-b"] {
        let dir = tempfile::tempdir().unwrap();
        let config = node_config(&dir, name);
        let server = TestServer::start_with(dir, |c| *c = config).await;
        send_old_and_new(&server, name, 2).await;
        wait_until_remote(&server, 1).await;
        nodes.push(server);
    }
    let owners =
        pg.sql("SELECT node, state, array_to_string(services, ',') FROM weft_splits ORDER BY node");
    assert_eq!(
        owners,
        vec!["node-a published node-a", "node-b published node-b"],
        "each split names its node"
    );

    // A split of node b's in flight; node a restarts and must leave it alone.
    pg.sql(
        "INSERT INTO weft_splits (id, signal, start_unix_nano, end_unix_nano, committed_lsn, docs,
                                  bytes, state, updated_unix_nano, node)
         VALUES ('logs-in-flight-of-b', 'logs', 0, 3600000000000, 1, 1, 1, 'staged', 0, 'node-b')",
    );
    let a = nodes.remove(0);
    let dir = a.stop().await;
    let config = node_config(&dir, "node-a");
    let a = TestServer::start_with(dir, |c| *c = config).await;
    let logs = a.wait_for_all_logs("service:node-a", 3).await;
    assert_eq!(
        sealed_bodies(&logs).len(),
        2,
        "its own hour, from its split"
    );
    let (_, found) = a.get("/api/v1/logs", &[("q", "service:node-b")]).await;
    assert_eq!(
        found["logs"].as_array().map(Vec::len),
        Some(0),
        "node b's hour is not node a's: {found}"
    );
    let states = pg.sql("SELECT id, state FROM weft_splits WHERE node = 'node-b' ORDER BY id");
    assert_eq!(states.len(), 2, "{states:?}");
    assert!(
        states.contains(&"logs-in-flight-of-b staged".to_string()),
        "node b's staged split is not node a's leftover: {states:?}"
    );
    a.stop().await;
    for node in nodes {
        node.stop().await;
    }
}

/// Sends `bodies` as records of service `parts`, stamped in the current hour (which stays
/// open for the whole test), one export.
async fn send_in_this_hour(server: &TestServer, bodies: &[String]) {
    let now = now_nanos();
    let hour_start = now - now % HOUR;
    let records = bodies
        .iter()
        .map(|body| {
            let mut r = record(body, vec![0x42; 16]);
            // Spread over the hour so far, newest last.
            r.time_unix_nano = hour_start + (now - hour_start) / 2 + body.len() as u64;
            r
        })
        .collect();
    let mut client = LogsServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap();
    let answer = client
        .export(logs_request("parts", records))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.partial_success, None);
}

/// The splits the metastore (`pg`, or the embedded one) lists as published: (part, docs),
/// sorted.
fn published_parts(server: &TestServer, pg: Option<&crate::postgres::PgServer>) -> Vec<(u64, u64)> {
    let mut parts: Vec<(u64, u64)> = match pg {
        Some(pg) => pg
            .sql("SELECT part, docs FROM weft_splits WHERE state = 'published'")
            .iter()
            .map(|line| {
                let (part, docs) = line.split_once(' ').unwrap();
                (part.parse().unwrap(), docs.parse().unwrap())
            })
            .collect(),
        None => {
            let path = server.dir.path().join("metastore").join("splits.json");
            let file: Value =
                serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            file["splits"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["state"] == "published")
                .map(|s| (s["part"].as_u64().unwrap(), s["docs"].as_u64().unwrap()))
                .collect()
        }
    };
    parts.sort();
    parts
}

/// `seal_docs`: a partition that reaches it is published while its hour is still open, and
/// the hour goes on in a new part; searches page through the parts as through one, and a
/// restart (taking the parts in from the metastore, `pg` or the embedded one) keeps them
/// apart.
async fn a_full_partition_is_published_before_its_hour_ends(pg: Option<crate::postgres::PgServer>) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::common::test_config(&dir);
    let _ = use_object_storage(&mut config, StorageUnderTest::File).await;
    config.metastore = pg.as_ref().map(|pg| pg.url());
    let pg = pg.as_ref();
    // Only size seals the current hour here.
    config.seal_interval = Duration::from_secs(24 * 3_600);
    config.seal_docs = 4;
    let restart_config = config.clone();
    let server = TestServer::start_with(dir, |c| *c = config).await;
    // Bodies of growing length, so that each is stamped after the one before.
    let body = |i: usize| format!("part record {}", "x".repeat(i));
    let all: Vec<String> = (0..9).map(body).collect();

    send_in_this_hour(&server, &all[..4]).await;
    server.wait_for_all_logs("service:parts", 4).await;
    wait_until_remote(&server, 1).await;
    assert_eq!(published_parts(&server, pg), [(0, 4)]);

    send_in_this_hour(&server, &all[4..7]).await;
    server.wait_for_all_logs("service:parts", 7).await;
    let newest_first: Vec<String> = all[..7].iter().rev().cloned().collect();
    assert_eq!(
        page_through(&server, "service:parts", "2").await,
        newest_first
    );
    assert_eq!(
        published_parts(&server, pg),
        [(0, 4)],
        "part 1 is not full yet"
    );

    send_in_this_hour(&server, &all[7..8]).await;
    wait_until_remote(&server, 2).await;
    assert_eq!(published_parts(&server, pg), [(0, 4), (1, 4)]);

    let dir = server.stop().await;
    let server = TestServer::start_with(dir, |c| *c = restart_config).await;
    send_in_this_hour(&server, &all[8..]).await;
    server.wait_for_all_logs("service:parts", 9).await;
    let newest_first: Vec<String> = all.iter().rev().cloned().collect();
    assert_eq!(
        page_through(&server, "service:parts", "3").await,
        newest_first,
        "each once"
    );
    assert_eq!(
        published_parts(&server, pg),
        [(0, 4), (1, 4)],
        "nothing published again"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_partition_is_published_before_its_hour_ends_listed_in_a_file() {
    a_full_partition_is_published_before_its_hour_ends(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_partition_is_published_before_its_hour_ends_listed_in_postgres() {
    let Some(pg) = crate::postgres::PgServer::start() else {
        return;
    };
    a_full_partition_is_published_before_its_hour_ends(Some(pg)).await;
}

/// A late row of a published hour is sealed again into a split that replaces the first. The
/// replaced split leaves the list at once but its object stays for the deletion grace (a
/// query's time limit and a second), since a search node may have listed it just before; the
/// next start waits out the grace again and deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_split_stays_readable_for_the_grace_then_goes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::common::test_config(&dir);
    let _ = use_object_storage(&mut config, StorageUnderTest::File).await;
    // Longer than this test takes: the replaced object must still be there at its end.
    config.query_timeout = Duration::from_secs(3600);
    let mut restart_config = config.clone();
    // After the restart, a grace of two seconds.
    restart_config.query_timeout = Duration::from_secs(1);
    let server = TestServer::start_with(dir, |c| *c = config).await;
    send_old_and_new(&server, "replaced", 1).await;
    wait_until_remote(&server, 1).await;
    let first = metastore_states(&server);
    assert_eq!(first.len(), 1, "{first:?}");
    let first_id = first[0].0.clone();

    send_old_and_new(&server, "replaced", 2).await;
    let started = Instant::now();
    let states = loop {
        let states = metastore_states(&server);
        let published: Vec<_> = states.iter().filter(|s| s.1 == "published").collect();
        if published.len() == 1 && published[0].0 != first_id {
            break states;
        }
        assert!(started.elapsed() < DEADLINE, "{states:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let old = states
        .iter()
        .find(|s| s.0 == first_id)
        .expect("still listed");
    assert_eq!(old.1, "marked_for_deletion", "{states:?}");
    let splits = server.dir.path().join("bucket").join("splits");
    let objects = || {
        let mut names: Vec<String> = std::fs::read_dir(&splits)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert!(
        objects().contains(&format!("{first_id}.split")),
        "the replaced object stays for the grace: {:?}",
        objects()
    );
    let logs = server.wait_for_all_logs("service:replaced", 5).await;
    assert_eq!(
        sealed_bodies(&logs).len(),
        3,
        "read from the new split, once each"
    );

    // The next start waits out the grace again for what this run marked, then deletes it.
    let dir = server.stop().await;
    let server = TestServer::start_with(dir, |c| *c = restart_config).await;
    let started = Instant::now();
    loop {
        let states = metastore_states(&server);
        if states.len() == 1 && !objects().contains(&format!("{first_id}.split")) {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "{states:?} {:?}", objects());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(objects().len(), 1);
    server.stop().await;
}
