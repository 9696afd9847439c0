//! The one parser of each kind of value weft reads as text: durations, times, trace and span
//! IDs, span status names. The query language, the configuration, weft's HTTP and gRPC APIs
//! and Jaeger's all call these, so each kind of value accepts the same text everywhere
//! (severity names: [`crate::severity::number_for_text`]). Errors read "must be …, not '…'":
//! callers put the parameter's name in front.

use std::time::Duration;

/// Longest duration text accepted.
const MAX_DURATION_CHARS: usize = 64;
/// Longest run of digits accepted in a duration.
const MAX_DURATION_DIGITS: usize = 9;

/// What a duration looks like, for error messages.
pub const DURATION_FORM: &str = "a duration such as 250ms, 1.5s, 15m or 7d";

/// weft's durations: `250ms`, `1.5s`, `1h30m`, `7d` (humantime's units: ns, us/µs, ms, s,
/// m, h, d, w and their long names), or a bare number of nanoseconds. Surrounding spaces are
/// ignored. With units, at most 64 characters and 9 digits per number: humantime panics when terms add up
/// past what `Duration` holds (found by the `params` fuzz target), and these bounds keep the
/// sum far below that.
pub fn duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    // A bare number of nanoseconds: any that fits (the UI and scripts send exact bounds).
    if !trimmed.is_empty() && trimmed.len() <= 20 && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        let nanos: u64 = trimmed
            .parse()
            .map_err(|_| format!("must be {DURATION_FORM}, not '{trimmed}'"))?;
        return Ok(Duration::from_nanos(nanos));
    }
    let longest_number = trimmed
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    if trimmed.len() > MAX_DURATION_CHARS || longest_number > MAX_DURATION_DIGITS {
        return Err(format!(
            "must be {DURATION_FORM} (at most {MAX_DURATION_CHARS} characters, numbers of at most \
             {MAX_DURATION_DIGITS} digits), not '{}'",
            trimmed.chars().take(MAX_DURATION_CHARS).collect::<String>()
        ));
    }
    humantime::parse_duration(trimmed)
        .map_err(|e| format!("must be {DURATION_FORM}, not '{trimmed}' ({e})"))
}

/// [`duration`] in nanoseconds (saturating at `u64::MAX`, some 584 years).
pub fn duration_ns(text: &str) -> Result<u64, String> {
    duration(text).map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Go's durations, as Jaeger's APIs take them (`time.ParseDuration`): `100ms`, `1.5s`,
/// `1m30s`, `250us`, `250µs` or `250μs`, and `0`. A thin layer over [`duration`]: Go's units
/// only (no days), no bare numbers but `0`, no sign (a negative bound filters nothing).
pub fn go_duration_ns(text: &str) -> Result<u64, String> {
    const GO_FORM: &str = "a duration such as 100ms, 1.5s or 1m30s";
    let trimmed = text.trim();
    if trimmed == "0" {
        return Ok(0);
    }
    // Go takes the Greek mu (U+03BC) for microseconds as well as the micro sign (U+00B5).
    let normalized = trimmed.replace('\u{3bc}', "\u{b5}");
    let mut units = normalized
        .split(|c: char| c.is_ascii_digit() || c == '.')
        .filter(|u| !u.is_empty());
    let go_units = units.all(|u| matches!(u, "ns" | "us" | "\u{b5}s" | "ms" | "s" | "m" | "h"));
    let starts_with_number = normalized.starts_with(|c: char| c.is_ascii_digit() || c == '.');
    let ends_with_unit = normalized.ends_with(|c: char| c.is_ascii_alphabetic() || c == '\u{b5}');
    if !go_units || !starts_with_number || !ends_with_unit || normalized.contains(' ') {
        return Err(format!("must be {GO_FORM}, not '{trimmed}'"));
    }
    duration_ns(&normalized).map_err(|_| format!("must be {GO_FORM}, not '{trimmed}'"))
}

/// What a time looks like, for error messages.
pub const TIME_FORM: &str = "RFC 3339 (2026-11-22T03:00:00Z) or unix nanoseconds";

/// A time as RFC 3339 or as unix nanoseconds, surrounding spaces ignored; times before 1970
/// are refused.
pub fn time_unix_nano(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return trimmed
            .parse()
            .map_err(|_| format!("must be before the year 2554, not '{trimmed}'"));
    }
    match parse_rfc3339(trimmed) {
        Some(time) => after_1970(time, trimmed),
        None => Err(format!("must be {TIME_FORM}, not '{trimmed}'")),
    }
}

/// A time as RFC 3339 only, surrounding spaces ignored; times before 1970 are refused.
pub fn rfc3339_unix_nano(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    match parse_rfc3339(trimmed) {
        Some(time) => after_1970(time, trimmed),
        None => Err(format!(
            "must be RFC 3339 (2026-11-22T03:00:00Z), not '{trimmed}'"
        )),
    }
}

fn parse_rfc3339(text: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

fn after_1970(time: time::OffsetDateTime, text: &str) -> Result<u64, String> {
    u64::try_from(time.unix_timestamp_nanos())
        .map_err(|_| format!("must be after 1970, not '{text}'"))
}

/// A count of whole `unit_nanos` since the epoch (Jaeger's microseconds and milliseconds),
/// in nanoseconds, surrounding spaces ignored.
pub fn epoch_units(text: &str, unit_nanos: u64, unit: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    trimmed
        .parse::<u64>()
        .map(|n| n.saturating_mul(unit_nanos))
        .map_err(|_| format!("must be a whole number of {unit}, not '{trimmed}'"))
}

/// A trace ID: 32 hex characters (either case), surrounding spaces ignored. All zeros parse
/// (OTLP calls that ID invalid, and user-facing lookups refuse it with [`nonzero`]).
pub fn trace_id(text: &str) -> Result<[u8; 16], String> {
    hex_id(text)
}

/// A span ID: 16 hex characters (either case), surrounding spaces ignored.
pub fn span_id(text: &str) -> Result<[u8; 8], String> {
    hex_id(text)
}

fn hex_id<const N: usize>(text: &str) -> Result<[u8; N], String> {
    let trimmed = text.trim();
    let mut id = [0u8; N];
    hex::decode_to_slice(trimmed, &mut id)
        .map_err(|_| format!("must be {} hex characters, not '{trimmed}'", N * 2))?;
    Ok(id)
}

/// `id` unless it is all zeros, which OTLP reserves for "no ID".
pub fn nonzero<const N: usize>(id: [u8; N]) -> Result<[u8; N], String> {
    if id.iter().all(|b| *b == 0) {
        return Err("must not be all zeros, which names nothing".to_string());
    }
    Ok(id)
}

/// The names of OTLP span status codes, by code.
const STATUS_NAMES: [&str; 3] = ["unset", "ok", "error"];

/// The name of an OTLP span status code as weft shows it (`unset` for anything unknown).
pub fn status_name(code: i32) -> &'static str {
    usize::try_from(code)
        .ok()
        .and_then(|i| STATUS_NAMES.get(i))
        .copied()
        .unwrap_or(STATUS_NAMES[0])
}

/// The status code a name stands for, case-insensitively: `unset`, `ok`, `error`.
pub fn status_code(text: &str) -> Result<i32, String> {
    let lower = text.trim().to_ascii_lowercase();
    STATUS_NAMES
        .iter()
        .position(|name| *name == lower)
        .map(|i| i as i32)
        .ok_or_else(|| format!("must be unset, ok or error, not '{}'", text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The accepted forms, pinned: every front end gives these answers.
    #[test]
    fn durations() {
        for (text, nanos) in [
            ("250ms", 250_000_000),
            (" 1.5s ", 1_500_000_000),
            ("1h30m", 5_400_000_000_000),
            ("1h 30m", 5_400_000_000_000),
            ("7d", 604_800_000_000_000),
            ("100us", 100_000),
            ("100µs", 100_000),
            ("42", 42),
            ("0", 0),
            // Bare nanoseconds of any size (the UI's exact latency bounds).
            ("1500000000", 1_500_000_000),
            ("18446744073709551615", u64::MAX),
        ] {
            assert_eq!(duration_ns(text), Ok(nanos), "{text:?}");
        }
        for bad in [
            "",
            "fast",
            ".5s",
            "1.5ns",
            "-1s",
            "5 parsecs",
            &"1s".repeat(40),
        ] {
            assert!(duration(bad).is_err(), "{bad:?}");
        }
        assert!(duration("1234567890s").unwrap_err().contains("9 digits"));
        assert!(
            duration("fast")
                .unwrap_err()
                .starts_with("must be a duration such as")
        );
        // The fuzz finding: terms whose sum overflows are refused, not a panic.
        assert!(duration("1.5s1.5s018446744073709551611.5s").is_err());
    }

    #[test]
    fn go_durations() {
        for (text, nanos) in [
            ("100ms", 100_000_000),
            ("1m30s", 90_000_000_000),
            ("1.2s", 1_200_000_000),
            ("250us", 250_000),
            ("250\u{b5}s", 250_000),
            ("250\u{3bc}s", 250_000),
            ("0", 0),
        ] {
            assert_eq!(go_duration_ns(text), Ok(nanos), "{text:?}");
        }
        for bad in ["", "7d", "100", "1 s", "-1s", "ms", "1sec", "1.5.5s"] {
            assert!(go_duration_ns(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(
            time_unix_nano("1763780000123456789"),
            Ok(1_763_780_000_123_456_789)
        );
        assert_eq!(
            time_unix_nano(" 2025-11-22T03:00:00Z "),
            Ok(1_763_780_400_000_000_000)
        );
        assert_eq!(
            time_unix_nano("2025-11-22T04:00:00+01:00"),
            Ok(1_763_780_400_000_000_000)
        );
        assert!(
            time_unix_nano("yesterday")
                .unwrap_err()
                .starts_with("must be RFC 3339")
        );
        assert!(
            time_unix_nano("1969-12-31T23:59:59Z")
                .unwrap_err()
                .contains("after 1970")
        );
        assert!(rfc3339_unix_nano("1763780000").is_err());
        assert_eq!(epoch_units("1000", 1000, "microseconds"), Ok(1_000_000));
        assert!(epoch_units("soon", 1000, "microseconds").is_err());
    }

    #[test]
    fn ids() {
        let id = trace_id(" 5B8EFFF798038103D269B633813FC60C ").unwrap();
        assert_eq!(hex::encode(id), "5b8efff798038103d269b633813fc60c");
        assert!(trace_id("5b8efff798038103").is_err());
        assert!(trace_id("zz8efff798038103d269b633813fc60c").is_err());
        assert_eq!(trace_id(&"0".repeat(32)), Ok([0; 16]));
        assert!(nonzero([0u8; 16]).is_err());
        assert_eq!(span_id("eee19b7ec3c1b174").unwrap()[0], 0xee);
        assert!(span_id("eee19b7ec3c1b1").is_err());
    }

    #[test]
    fn statuses() {
        assert_eq!(status_code("ERROR"), Ok(2));
        assert_eq!(status_code(" ok"), Ok(1));
        assert_eq!(status_code("unset"), Ok(0));
        assert!(status_code("failed").is_err());
        assert_eq!(status_name(2), "error");
        assert_eq!(status_name(7), "unset");
        for code in 0..3 {
            assert_eq!(status_code(status_name(code)), Ok(code));
        }
    }
}
