//! The query language: parsing never panics or overflows the stack, a parsed query compiles
//! for both signals or is refused with a position inside the query, and the live-tail matcher
//! accepts what the log compiler accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use weft_index::query::{LogMatcher, compile, parse};
use weft_index::{LogRow, Signal};

fn sample_row() -> LogRow {
    let text = |s: &str| {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(s.into())),
        })
    };
    LogRow {
        time_unix_nano: 1_800_000_000_000_000_000,
        service: "checkout".into(),
        severity_number: 17,
        severity_text: "ERROR".into(),
        event: "PaymentDeclined".into(),
        body: text("card declined for order 8812"),
        trace_id: vec![7; 16],
        span_id: vec![8; 8],
        attributes: vec![KeyValue {
            key: "order.id".into(),
            value: text("8812"),
            ..Default::default()
        }],
        scope_name: "payments".into(),
        ..Default::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let chars = text.chars().count();
    match parse(text) {
        Err(error) => {
            let position = error.position().unwrap_or(0);
            assert!(position <= chars.max(weft_index::query::MAX_QUERY_CHARS));
        }
        Ok(None) => {}
        Ok(Some(expr)) => {
            let _ = compile(&expr, Signal::Spans);
            if let Ok(matcher) = LogMatcher::new(Some(expr)) {
                let _ = matcher.matches(&sample_row());
            }
        }
    }
});
