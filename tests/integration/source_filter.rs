//! The whole loop with the example service: weft-client keeps DEBUG off at the source until an
//! operator's rule turns it on, and off again once the rule is removed.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{DEADLINE, TestServer};

struct Example(Child);

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn example_path() -> PathBuf {
    // `cargo test` builds examples next to the binaries' directory.
    let weft = PathBuf::from(env!("CARGO_BIN_EXE_weft"));
    weft.parent()
        .unwrap()
        .join("examples")
        .join("checkout_service")
}

async fn events(server: &TestServer, event: &str) -> Vec<Value> {
    let (status, body) = server
        .get(
            "/api/v1/logs",
            &[
                ("q", &format!("service:shop event:{event}")),
                ("limit", "1000"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["logs"].as_array().unwrap().clone()
}

fn max_seq(logs: &[Value]) -> Option<i64> {
    logs.iter()
        .filter_map(|l| l["attributes"]["seq"].as_i64())
        .max()
}

fn cli(url: &str, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("severity")
        .args(args)
        .args(["--url", url])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_rules_switch_debug_on_and_off_at_the_source() {
    let server = TestServer::start().await;
    let path = example_path();
    assert!(path.exists(), "{} is built by cargo test", path.display());
    let mut child = Command::new(&path)
        .args([
            "--grpc",
            &server.grpc.to_string(),
            "--http",
            &server.http.to_string(),
            "--service",
            "shop",
            "--for",
            "120s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _example = Example(child);
    // The example prints `debug off at seq N` once its filter lets DEBUG through no more: no
    // DEBUG event of seq N or later can be emitted after that.
    let debug_off_at = Arc::new(AtomicU64::new(u64::MAX));
    {
        let debug_off_at = debug_off_at.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(n) = line
                    .strip_prefix("debug off at seq ")
                    .and_then(|n| n.parse().ok())
                {
                    debug_off_at.store(n, Ordering::Relaxed);
                }
            }
        });
    }

    // INFO flows, with spans; DEBUG is not produced.
    wait_until("INFO events", || async {
        events(&server, "OrderPlaced").await.len() >= 5
    })
    .await;
    assert!(
        events(&server, "CacheProbe").await.is_empty(),
        "DEBUG was emitted without a rule"
    );
    let placed = events(&server, "OrderPlaced").await;
    let trace_id = placed[0]["trace_id"].as_str().unwrap().to_string();
    assert_eq!(trace_id.len(), 32, "logs carry their span's trace");

    // An operator raises the service to DEBUG.
    let url = server.url("");
    let created = tokio::task::block_in_place(|| {
        cli(
            &url,
            &[
                "set",
                "--service",
                "shop",
                "--min",
                "debug",
                "--ttl",
                "15m",
                "--reason",
                "INC-9",
            ],
        )
    });
    let rule_id = created.split_whitespace().next().unwrap().to_string();
    let set_at = Instant::now();
    wait_until("DEBUG events after the rule", || async {
        !events(&server, "CacheProbe").await.is_empty()
    })
    .await;
    // For the record; `weft bench` measures speed, a test on a busy machine cannot.
    eprintln!(
        "DEBUG events searchable {:?} after `weft severity set`",
        set_at.elapsed()
    );

    // Removed: DEBUG stops at the source.
    tokio::task::block_in_place(|| cli(&url, &["rm", &rule_id]));
    wait_until("the example's filter to turn DEBUG off", || async {
        debug_off_at.load(Ordering::Relaxed) != u64::MAX
    })
    .await;
    let after_removal = debug_off_at.load(Ordering::Relaxed) as i64;
    wait_until("INFO events well after the removal", || async {
        max_seq(&events(&server, "OrderPlaced").await).is_some_and(|s| s >= after_removal + 10)
    })
    .await;
    let last_debug = max_seq(&events(&server, "CacheProbe").await).unwrap();
    assert!(
        last_debug < after_removal,
        "DEBUG seq {last_debug} emitted after the rule was removed (at seq {after_removal})"
    );
    server.stop().await;
}
