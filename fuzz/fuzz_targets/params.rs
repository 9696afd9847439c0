//! Every other text a client sends: times (RFC 3339 or nanoseconds), durations (weft's and
//! Go's), trace and span IDs, status names, limits and paging cursors parse or are refused,
//! never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft::query::requests;
use weft_index::text;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let _ = requests::time("start", value);
    let _ = requests::duration_ns("min_duration", value);
    let _ = requests::limit(Some(value), 100, 1000);
    let _ = requests::trace_id(value);
    if let Ok(Some(cursor)) = requests::cursor(Some(value)) {
        // A cursor that decodes encodes back to something that decodes to it.
        let again = weft_index::LogCursor::decode(&cursor.encode());
        assert_eq!(again, Some(cursor));
    }
    let (start, end) = value.split_once('|').unwrap_or((value, ""));
    let _ = requests::time_range(Some(start), Some(end));
    let _ = text::duration(value);
    let _ = text::go_duration_ns(value);
    let _ = text::rfc3339_unix_nano(value);
    let _ = text::span_id(value);
    if let Ok(code) = text::status_code(value) {
        assert_eq!(text::status_code(text::status_name(code)), Ok(code));
    }
});
