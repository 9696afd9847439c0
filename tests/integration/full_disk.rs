//! A real full disk: the `weft` binary on a small tmpfs, filled with exports until the file
//! system refuses writes, then given space back, then killed and restarted. Needs root (to
//! mount); skipped otherwise, except where `FULL_DISK_TESTS=required` (CI) makes it required.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use prost::Message;
use tonic_types::StatusExt;

use crate::common::DEADLINE;
use crate::durability::{WeftProcess, count, tagged_batch};

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `megabytes`, or says why it cannot.
    fn mount(megabytes: u64) -> Result<Tmpfs, String> {
        let parent = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = parent.path().join("disk");
        std::fs::create_dir(&path).map_err(|e| e.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
        }
        Ok(Tmpfs {
            path,
            _parent: parent,
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn tmpfs_or_skip(megabytes: u64) -> Option<Tmpfs> {
    match Tmpfs::mount(megabytes) {
        Ok(tmpfs) => Some(tmpfs),
        Err(why) => {
            crate::common::skip(
                "FULL_DISK_TESTS",
                "a real full disk",
                &format!("cannot mount a tmpfs ({why}); CI runs it as root"),
            );
            None
        }
    }
}

/// Fills the file system at `dir` with a ballast file leaving about `leave` bytes free.
fn ballast(dir: &Path, leave: u64) -> PathBuf {
    let free = weft::pipeline::free_bytes(dir).unwrap();
    let path = dir.join("ballast");
    let file = std::fs::File::create(&path).unwrap();
    let size = free.saturating_sub(leave);
    // Written, not sparse: tmpfs counts only pages that hold data.
    let chunk = vec![0x5au8; 1 << 20];
    let mut writer = std::io::BufWriter::new(file);
    let mut written = 0;
    while written < size {
        let n = chunk.len().min((size - written) as usize);
        std::io::Write::write_all(&mut writer, &chunk[..n]).unwrap();
        written += n as u64;
    }
    std::io::Write::flush(&mut writer).unwrap();
    path
}

async fn readyz(http: std::net::SocketAddr) -> (u16, String) {
    let response = reqwest::get(format!("http://{http}/readyz")).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn metric(http: std::net::SocketAddr, name: &str) -> f64 {
    crate::common::metric_at(&reqwest::Client::new(), http, name).await
}

/// Exports batch `batch` of run `run`: `Ok(true)` acknowledged, `Ok(false)` refused with a
/// retryable answer; anything else fails the test.
async fn export(
    client: &mut LogsServiceClient<tonic::transport::Channel>,
    run: i64,
    batch: i64,
) -> bool {
    let request =
        ExportLogsServiceRequest::decode(tagged_batch(run, 0, batch, 1000).as_slice()).unwrap();
    match client.export(request).await {
        Ok(_) => true,
        Err(status) => {
            assert_eq!(
                status.code(),
                tonic::Code::Unavailable,
                "batch {batch}: a refusal that is not retryable: {status:?}"
            );
            assert!(
                status.get_details_retry_info().is_some(),
                "batch {batch}: no RetryInfo: {status:?}"
            );
            false
        }
    }
}

/// The scenario with the watermark off, so the file system itself runs out: exports
/// until writes fail, space freed, more exports, SIGKILL, restart. Every acknowledged batch is
/// found exactly once; no refusal was anything but retryable; weft recovered without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_full_disk_then_freed_loses_and_duplicates_nothing() {
    let Some(disk) = tmpfs_or_skip(64) else {
        return;
    };
    let ballast = ballast(&disk.path, 5 << 20);
    let data_dir = disk.path.join("data");
    let settings = [
        ("WEFT_MIN_FREE_DISK_BYTES", "0"),
        ("WEFT_WAL_SEGMENT_BYTES", "1048576"),
    ];
    let process = WeftProcess::spawn_with(&data_dir, &settings);
    let mut client = LogsServiceClient::connect(format!("http://{}", process.grpc))
        .await
        .unwrap();
    let mut acked = BTreeSet::new();
    let mut refused = 0;
    let mut batch = 0i64;
    let started = Instant::now();
    while refused < 5 {
        if export(&mut client, 1, batch).await {
            acked.insert(batch);
        } else {
            refused += 1;
        }
        batch += 1;
        assert!(
            started.elapsed() < DEADLINE * 6,
            "the disk never filled: {} batches acknowledged",
            acked.len()
        );
    }
    let (status, body) = readyz(process.http).await;
    assert_eq!(status, 503, "{body}");
    eprintln!(
        "full disk: {} batches acknowledged, then refused: {body}",
        acked.len()
    );
    let errors = metric(process.http, "weft_wal_errors_total").await
        + metric(process.http, "weft_index_errors_total").await;
    assert!(errors > 0.0, "refusals came from failing writes");

    std::fs::remove_file(&ballast).unwrap();
    let started = Instant::now();
    loop {
        let (status, body) = readyz(process.http).await;
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "not ready {DEADLINE:?} after space was freed: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Taken again: each batch is accepted, at worst after retryable refusals while the
    // recovered index catches up, as an exporter retries.
    for _ in 0..20 {
        let started = Instant::now();
        while !export(&mut client, 1, batch).await {
            assert!(
                started.elapsed() < DEADLINE,
                "batch {batch} refused for {DEADLINE:?} after space came back"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        acked.insert(batch);
        batch += 1;
    }
    process.kill();

    let process = WeftProcess::spawn_with(&data_dir, &settings);
    let http_client = reqwest::Client::new();
    for b in 0..batch {
        let q = format!("attr.run:1 attr.batch:{b}");
        let found = count(&http_client, process.http, &q).await;
        if acked.contains(&b) {
            assert_eq!(
                found, 1000,
                "batch {b}: acknowledged 1000 records, found {found}"
            );
        } else {
            assert_eq!(
                found, 0,
                "batch {b}: refused, yet {found} records were stored"
            );
        }
    }
    process.kill();
}

/// With the watermark on, the file system never runs out: weft refuses first, with the
/// reason, and no write fails. Space freed, it takes data again; SIGTERM stops it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watermark_refuses_before_the_disk_is_full() {
    let Some(disk) = tmpfs_or_skip(64) else {
        return;
    };
    let ballast = ballast(&disk.path, 8 << 20);
    let data_dir = disk.path.join("data");
    let settings = [
        ("WEFT_MIN_FREE_DISK_BYTES", "6291456"),
        ("WEFT_WAL_SEGMENT_BYTES", "1048576"),
    ];
    let process = WeftProcess::spawn_logging(&data_dir, &settings, "info");
    let mut client = LogsServiceClient::connect(format!("http://{}", process.grpc))
        .await
        .unwrap();
    let mut acked = 0;
    let mut batch = 0i64;
    let started = Instant::now();
    loop {
        if export(&mut client, 2, batch).await {
            acked += 1;
        } else {
            break;
        }
        batch += 1;
        assert!(
            started.elapsed() < DEADLINE * 6,
            "the watermark was never reached"
        );
    }
    let (status, body) = readyz(process.http).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("disk_low"), "{body}");
    assert_eq!(metric(process.http, "weft_wal_errors_total").await, 0.0);
    assert_eq!(metric(process.http, "weft_index_errors_total").await, 0.0);
    std::fs::remove_file(&ballast).unwrap();
    let started = Instant::now();
    while readyz(process.http).await.0 != 200 {
        assert!(
            started.elapsed() < DEADLINE,
            "not ready after space was freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(export(&mut client, 2, batch).await);
    acked += 1;
    // The disk check ran every 250 ms while the condition held; weft logged it once when it
    // started and once when it cleared (and, should merges free space for a moment, once per
    // start and clear again, never a start twice in a row).
    let transitions = || -> Vec<&'static str> {
        process
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains("disk_low"))
            .filter_map(|line| {
                if line.contains("weft refuses new data") {
                    Some("start")
                } else if line.contains("condition cleared") {
                    Some("clear")
                } else {
                    None
                }
            })
            .collect()
    };
    // The log is read from weft's stderr by another thread: wait for the last line to arrive.
    let started = Instant::now();
    while transitions().last() != Some(&"clear") {
        assert!(started.elapsed() < DEADLINE, "{:?}", transitions());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let transitions = transitions();
    assert!(
        !transitions.is_empty()
            && transitions.len() % 2 == 0
            && transitions.chunks(2).all(|pair| pair == ["start", "clear"]),
        "disk_low logged as {transitions:?}"
    );
    let http = process.http;
    let http_client = reqwest::Client::new();
    let started = Instant::now();
    while count(&http_client, http, "attr.run:2 attr.batch:0").await < 1000 {
        assert!(started.elapsed() < DEADLINE);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = process.terminate().await;
    assert!(status.success(), "weft exited with {status}");
    eprintln!("watermark: {acked} batches acknowledged");
}
