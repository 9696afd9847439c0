//! Parsing of common query parameters: time ranges and limits.

use super::ApiError;
use crate::pipeline::now_unix_nano;

/// Default look-back of a query without `start`.
const DEFAULT_RANGE_NANOS: u64 = 3_600 * 1_000_000_000;

/// A time given as RFC 3339 or as unix nanoseconds.
pub fn parse_time(name: &str, text: &str) -> Result<u64, ApiError> {
    let text = text.trim();
    if let Ok(n) = text.parse::<u64>() {
        return Ok(n);
    }
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| u64::try_from(t.unix_timestamp_nanos()).ok())
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{name} must be RFC 3339 (2026-11-22T03:00:00Z) or unix nanoseconds, not '{text}'"
            ))
        })
}

/// `[start, end)` from optional parameters; the default is the last hour.
pub fn time_range(start: Option<&str>, end: Option<&str>) -> Result<(u64, u64), ApiError> {
    // `end` is exclusive, so a record stamped "now" is still inside the default range.
    let end = match end {
        Some(e) => parse_time("end", e)?,
        None => now_unix_nano() + 1,
    };
    let start = match start {
        Some(s) => parse_time("start", s)?,
        None => end.saturating_sub(DEFAULT_RANGE_NANOS),
    };
    if start >= end {
        return Err(ApiError::BadRequest(format!(
            "start ({start}) must be before end ({end})"
        )));
    }
    Ok((start, end))
}

/// A page size: `default` when absent, at most `max`.
pub fn limit(value: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    match value {
        None => Ok(default),
        Some(text) => match text.trim().parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::BadRequest(format!(
                "limit must be a number from 1 to {max}, not '{text}'"
            ))),
        },
    }
}

/// A `cursor` parameter: empty or absent for the first page.
pub fn cursor(text: Option<&str>) -> Result<Option<weft_index::LogCursor>, ApiError> {
    match text.filter(|c| !c.is_empty()) {
        None => Ok(None),
        Some(text) => weft_index::LogCursor::decode(text)
            .map(Some)
            .ok_or_else(|| {
                ApiError::BadRequest("cursor is not one weft returned as next_cursor".into())
            }),
    }
}

/// A duration such as `250ms`, `1.5s`, `2m` (or plain nanoseconds).
pub fn parse_duration_ns(name: &str, text: &str) -> Result<u64, ApiError> {
    let text = text.trim();
    if let Ok(n) = text.parse::<u64>() {
        return Ok(n);
    }
    crate::config::parse_duration(text)
        .map(|d| d.as_nanos().min(u128::from(u64::MAX)) as u64)
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "{name} must be a duration such as 250ms, 1.5s or 2m, not '{text}'"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_both_forms() {
        assert_eq!(
            parse_time("t", "1763780000123456789").unwrap(),
            1_763_780_000_123_456_789
        );
        assert_eq!(
            parse_time("t", "2025-11-22T03:00:00Z").unwrap(),
            1_763_780_400_000_000_000
        );
        assert!(parse_time("t", "yesterday").is_err());
    }

    #[test]
    fn ranges_and_limits() {
        let (s, e) = time_range(None, Some("7200000000000")).unwrap();
        assert_eq!((s, e), (3_600_000_000_000, 7_200_000_000_000));
        assert!(time_range(Some("5"), Some("5")).is_err());
        assert_eq!(limit(None, 100, 1000).unwrap(), 100);
        assert_eq!(limit(Some("7"), 100, 1000).unwrap(), 7);
        assert!(limit(Some("0"), 100, 1000).is_err());
        assert!(limit(Some("1001"), 100, 1000).is_err());
    }
}
