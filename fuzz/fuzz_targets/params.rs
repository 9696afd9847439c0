//! Every other text a client sends: times (RFC 3339 or nanoseconds), durations, limits, paging
//! cursors and configuration durations parse or are refused, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft::api::params;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = params::parse_time("start", text);
    let _ = params::parse_duration_ns("min_duration", text);
    let _ = params::limit(Some(text), 100, 1000);
    if let Ok(Some(cursor)) = params::cursor(Some(text)) {
        // A cursor that decodes encodes back to something that decodes to it.
        let again = weft_index::LogCursor::decode(&cursor.encode());
        assert_eq!(again, Some(cursor));
    }
    let (start, end) = text.split_once('|').unwrap_or((text, ""));
    let _ = params::time_range(Some(start), Some(end));
    let _ = weft::config::parse_duration(text);
});
