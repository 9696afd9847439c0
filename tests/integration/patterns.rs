//! Log patterns on a data set whose templates are known: five templates with numbers, UUIDs,
//! IPs and quoted values in them, one of them only in the second half of the range. The
//! patterns answer, "new since", the `pattern:` filter and the comparison must each find them;
//! `cluster` checks the same answers through a search node.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde_json::Value;

use crate::bad_input::record;
use crate::common::{DEADLINE, Node, TestServer, get_json, now_nanos};

const MINUTE: u64 = 60 * 1_000_000_000;

/// The templates, as weft should show them, with their records' count.
pub const TEMPLATES: [(&str, u64); 5] = [
    ("order <*> shipped to <*>", 40),
    ("user <*> logged in from <*>", 30),
    ("payment declined reason=<*> amount=<*>", 20),
    ("cache miss for key <*> in region <*>", 15),
    (
        "connection pool exhausted: <*> of <*> connections busy for <*>",
        12,
    ),
];
/// The template that appears only in the second half.
pub const NEW: &str = "connection pool exhausted: <*> of <*> connections busy for <*>";

/// The `i`th record of template `t`: its body, and whether it is an error.
fn body(t: usize, i: u64) -> (String, bool) {
    match t {
        0 => (
            format!(
                "order {} shipped to 10.0.{}.{}",
                1000 + i * 37,
                i % 7,
                i + 1
            ),
            false,
        ),
        1 => (
            format!(
                "user {:08x}-4b1e-9c3d-a1b2-{:012x} logged in from 192.168.{}.{}",
                i * 7919 + 1,
                i * 104_729,
                i % 4,
                i * 3 + 1
            ),
            false,
        ),
        2 => {
            let reasons = ["card expired", "insufficient funds", "fraud suspected"];
            (
                format!(
                    "payment declined reason=\"{}\" amount={}.{:02}",
                    reasons[i as usize % 3],
                    i + 3,
                    i % 100
                ),
                true,
            )
        }
        3 => {
            let regions = ["eu", "us", "ap"];
            (
                format!(
                    "cache miss for key session:{} in region {}",
                    8800 + i,
                    regions[i as usize % 3]
                ),
                false,
            )
        }
        _ => (
            format!(
                "connection pool exhausted: {} of {} connections busy for {}ms",
                40 + i % 11,
                50,
                1200 + i * 10
            ),
            true,
        ),
    }
}

/// The data set over the 20 minutes from `base`: the first four templates spread over all of
/// it, the last only over its second half (from `base + 10 min`). Interleaved, as a service
/// would log them.
pub fn records(base: u64) -> Vec<LogRecord> {
    let mut out = Vec::new();
    for (t, (_, count)) in TEMPLATES.iter().enumerate() {
        let (from, span) = if t == 4 {
            (base + 10 * MINUTE, 10 * MINUTE)
        } else {
            (base, 20 * MINUTE)
        };
        for i in 0..*count {
            let (text, error) = body(t, i);
            let mut trace = vec![0u8; 16];
            trace[0] = t as u8 + 1;
            trace[8..].copy_from_slice(&(i + 1).to_be_bytes());
            let mut r = record(&text, trace);
            // Spread evenly, never on the half's edge.
            r.time_unix_nano = from + span * i / count + 1_000;
            r.severity_number = if error { 17 } else { 9 };
            r.severity_text = if error { "ERROR" } else { "INFO" }.into();
            out.push(r);
        }
    }
    out.sort_by_key(|r| r.time_unix_nano);
    out
}

/// `(pattern, count)` of an answer, in its order.
pub fn counts(answer: &Value) -> Vec<(String, u64)> {
    answer["patterns"]
        .as_array()
        .unwrap_or_else(|| panic!("no patterns in {answer}"))
        .iter()
        .map(|p| {
            (
                p["pattern"].as_str().unwrap().to_string(),
                p["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The expected `(pattern, count)` list, largest first.
pub fn expected() -> Vec<(String, u64)> {
    TEMPLATES.iter().map(|(p, n)| (p.to_string(), *n)).collect()
}

/// `GET /api/v1/logs/patterns` on `node`, once the answer holds `want` records.
pub async fn patterns_once(node: &impl Node, params: &[(&str, &str)], want: u64) -> Value {
    let started = Instant::now();
    loop {
        let (status, answer) = get_json(node, "/api/v1/logs/patterns", params).await;
        assert_eq!(status, 200, "{answer}");
        if answer["total"].as_u64() == Some(want) {
            return answer;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "never {want} records: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Records a log search finds (up to 1,000).
async fn found(server: &TestServer, q: &str, start: &str, end: &str) -> Vec<String> {
    let (status, answer) = server
        .get(
            "/api/v1/logs",
            &[("q", q), ("start", start), ("end", end), ("limit", "1000")],
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    crate::common::bodies(&answer["logs"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_templates_of_a_selection_are_found_counted_and_peelable() {
    let server = TestServer::start().await;
    let base = now_nanos() - 30 * MINUTE;
    let all = records(base);
    let total = all.len() as u64;
    for batch in all.chunks(25) {
        server.export_logs("shop", batch.to_vec()).await;
    }
    let start = (base - MINUTE).to_string();
    let end = (base + 21 * MINUTE).to_string();
    let range = [
        ("q", "service:shop"),
        ("start", start.as_str()),
        ("end", end.as_str()),
    ];

    // The templates, largest first, with exact counts.
    let answer = patterns_once(&server, &range, total).await;
    assert_eq!(counts(&answer), expected(), "{answer}");
    assert_eq!(answer["estimated"], false);
    assert_eq!(answer["sampled_records"], total);
    let pool = &answer["patterns"][4];
    assert_eq!(pool["severities"], serde_json::json!(["error"]), "{pool}");
    let first: u64 = pool["first_unix_nano"].as_str().unwrap().parse().unwrap();
    assert!(first >= base + 10 * MINUTE, "{pool}");
    let sample = pool["sample"]["body"].as_str().unwrap();
    assert!(sample.starts_with("connection pool exhausted: "), "{pool}");
    assert_eq!(pool["sample"]["service"], "shop");
    for pattern in answer["patterns"].as_array().unwrap() {
        let series: u64 = pattern["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .sum();
        assert_eq!(series, pattern["count"].as_u64().unwrap(), "{pattern}");
    }
    // The new template has no records in the series' first half.
    let series = pool["series"].as_array().unwrap();
    assert!(
        series[..series.len() * 2 / 5].iter().all(|n| n == 0),
        "{pool}"
    );

    // New since the middle: only the template that was not there before.
    let middle = (base + 10 * MINUTE).to_string();
    let mut since = range.to_vec();
    since.push(("new_since", middle.as_str()));
    let (status, new) = server.get("/api/v1/logs/patterns", &since).await;
    assert_eq!(status, 200, "{new}");
    assert_eq!(counts(&new), [(NEW.to_string(), 12)], "{new}");
    let before = new["before_total"].as_u64().unwrap();
    assert_eq!(before + new["total"].as_u64().unwrap(), total, "{new}");
    assert!(before > 0 && before < total - 12, "{new}");

    // A pattern is a filter: it keeps exactly its records, and `-` drops exactly them.
    for (template, count) in TEMPLATES {
        let only = format!("service:shop pattern:\"{template}\"");
        let kept = found(&server, &only, &start, &end).await;
        assert_eq!(kept.len() as u64, count, "{only}: {kept:?}");
        let t = TEMPLATES.iter().position(|(p, _)| *p == template).unwrap();
        let mut want: Vec<String> = (0..count).map(|i| body(t, i).0).collect();
        want.sort();
        let mut kept = kept;
        kept.sort();
        assert_eq!(kept, want, "{only}");
        let without = format!("service:shop -pattern:\"{template}\"");
        let rest = found(&server, &without, &start, &end).await;
        assert_eq!(rest.len() as u64, total - count, "{without}");
    }
    // The pattern of a pattern's records is that pattern.
    let only_pool = format!("service:shop pattern:\"{NEW}\"");
    let (status, narrowed) = server
        .get(
            "/api/v1/logs/patterns",
            &[("q", &only_pool), ("start", &start), ("end", &end)],
        )
        .await;
    assert_eq!(status, 200, "{narrowed}");
    assert_eq!(counts(&narrowed), [(NEW.to_string(), 12)]);

    let not_errors = found(&server, "service:shop -severity>=ERROR", &start, &end).await;
    assert_eq!(not_errors.len(), 85);

    // The comparison names the templates of the errors, none of which the rest has.
    let (status, compared) = server
        .get(
            "/api/v1/logs/compare",
            &[
                ("q", "service:shop severity>=ERROR"),
                ("start", &start),
                ("end", &end),
                ("patterns", "true"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{compared}");
    let over: Vec<(String, u64, u64)> = compared["patterns"]
        .as_array()
        .unwrap_or_else(|| panic!("{compared}"))
        .iter()
        .map(|f| {
            (
                f["pattern"].as_str().unwrap().to_string(),
                f["selection_count"].as_u64().unwrap(),
                f["baseline_count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        over,
        [
            ("payment declined reason=<*> amount=<*>".to_string(), 20, 0),
            (NEW.to_string(), 12, 0),
        ],
        "{compared}"
    );
    let share = compared["patterns"][0]["selection_share"].as_f64().unwrap();
    assert!((share - 20.0 / 32.0).abs() < 1e-9, "{compared}");
    // Unasked, a comparison reads no bodies and has no patterns.
    let (status, fields_only) = server
        .get(
            "/api/v1/logs/compare",
            &[("q", "service:shop severity>=ERROR"), ("start", &start)],
        )
        .await;
    assert_eq!(status, 200, "{fields_only}");
    assert!(fields_only.get("patterns").is_none(), "{fields_only}");

    // Bad parameters say what is wrong.
    let mut outside = range.to_vec();
    outside.push(("new_since", "1"));
    let (status, refused) = server.get("/api/v1/logs/patterns", &outside).await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("new_since"),
        "{refused}"
    );
    let (status, refused) = server.get("/api/v1/logs", &[("q", "pattern:\"\"")]).await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("pattern"),
        "{refused}"
    );
    let (status, refused) = server
        .get("/api/v1/logs/patterns", &[("limit", "100000")])
        .await;
    assert_eq!(status, 400, "{refused}");
    server.stop().await;
}
