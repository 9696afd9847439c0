//! The time as weft reads it: unix nanoseconds, the unit of every timestamp it stores.

/// The current time as unix nanoseconds (0 on a clock set before 1970).
pub fn now_unix_nano() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
