//! OTLP severity numbers and their names.
//!
//! OTLP numbers severities 1-24 in six bands of four (TRACE, DEBUG, INFO, WARN, ERROR, FATAL);
//! the short name of number `n` is the band name, suffixed with its rank inside the band when
//! that rank is above one (`INFO2` is 10).

const BANDS: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

/// The OTLP short name of a severity number (`""` for 0 or out of range).
pub fn text_for_number(number: i32) -> String {
    if !(1..=24).contains(&number) {
        return String::new();
    }
    let band = BANDS[((number - 1) / 4) as usize];
    let rank = (number - 1) % 4 + 1;
    if rank == 1 {
        band.to_string()
    } else {
        format!("{band}{rank}")
    }
}

/// The severity number a text names, case-insensitively: OTLP short names (`WARN`, `INFO3`),
/// and the names common logging libraries use (`WARNING`, `CRITICAL`, `ERR`, `PANIC`, …).
/// `None` for anything else.
pub fn number_for_text(text: &str) -> Option<i32> {
    let upper = text.trim().to_ascii_uppercase();
    let (name, rank) = match upper.as_bytes().last() {
        Some(d @ b'1'..=b'4') if upper.len() > 1 => {
            (&upper[..upper.len() - 1], i32::from(d - b'0'))
        }
        _ => (upper.as_str(), 1),
    };
    let base = match name {
        "TRACE" | "TRC" | "FINEST" => 1,
        "DEBUG" | "DBG" | "FINE" | "FINER" => 5,
        "INFO" | "INF" | "INFORMATION" | "NOTICE" => 9,
        "WARN" | "WARNING" | "WRN" => 13,
        "ERROR" | "ERR" | "SEVERE" => 17,
        "FATAL" | "CRITICAL" | "CRIT" | "PANIC" | "EMERGENCY" | "ALERT" => 21,
        _ => {
            return upper.parse::<i32>().ok().filter(|n| (1..=24).contains(n));
        }
    };
    Some(base + rank - 1)
}

/// Lowercase names of the severity bands, `unspecified` (0, or out of range) first: the
/// histogram's bands and the facets' severities, indexed by [`band_index`].
pub const BAND_NAMES: [&str; 7] = [
    "unspecified",
    "trace",
    "debug",
    "info",
    "warn",
    "error",
    "fatal",
];

/// Index into [`BAND_NAMES`] of a severity number.
pub fn band_index(number: u64) -> usize {
    match number {
        1..=24 => (number as usize - 1) / 4 + 1,
        _ => 0,
    }
}

/// Lowercase band name of a severity number (`"unspecified"` for 0).
pub fn band_name(number: i32) -> &'static str {
    BAND_NAMES[band_index(u64::try_from(number).unwrap_or(0))]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_round_trips_through_its_text() {
        for n in 1..=24 {
            let text = text_for_number(n);
            assert_eq!(number_for_text(&text), Some(n), "{text}");
        }
    }

    #[test]
    fn band_starts_have_bare_names() {
        assert_eq!(text_for_number(9), "INFO");
        assert_eq!(text_for_number(10), "INFO2");
        assert_eq!(text_for_number(17), "ERROR");
        assert_eq!(text_for_number(24), "FATAL4");
        assert_eq!(text_for_number(0), "");
        assert_eq!(text_for_number(25), "");
    }

    #[test]
    fn common_aliases_map_to_their_band() {
        assert_eq!(number_for_text("warning"), Some(13));
        assert_eq!(number_for_text("Critical"), Some(21));
        assert_eq!(number_for_text("err"), Some(17));
        assert_eq!(number_for_text(" info "), Some(9));
        assert_eq!(number_for_text("17"), Some(17));
        assert_eq!(number_for_text("loud"), None);
        assert_eq!(number_for_text("INFO5"), None);
        assert_eq!(number_for_text(""), None);
    }

    #[test]
    fn bands_cover_the_range() {
        assert_eq!(band_name(0), "unspecified");
        assert_eq!(band_name(4), "trace");
        assert_eq!(band_name(13), "warn");
        assert_eq!(band_name(21), "fatal");
    }
}
