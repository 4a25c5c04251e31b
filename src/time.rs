//! Times as people and rows write them: RFC 3339 with any offset, read with `jiff`.
//!
//! A time given on the command line (`backfill --since`, `checkpoint reset --to`) must carry its
//! zone (`Z` or `±hh:mm`): a time without one is refused with an example instead of being
//! taken silently as UTC. A time read from a row (`source.created_at_attribute`) is data the
//! relay does not own: one without a zone is taken as UTC, as documented for that key.

use std::time::SystemTime;

/// An example the error messages show.
pub const EXAMPLE: &str = "2026-01-30T00:00:00Z or 2026-01-30T02:00:00+02:00";

/// Parses an RFC 3339 time with its offset (`2026-01-30T00:00:00+02:00`, `…Z`).
///
/// # Errors
/// A sentence naming what is wrong and showing [`EXAMPLE`]; a time without a zone is refused.
pub fn parse_rfc3339(text: &str) -> Result<SystemTime, String> {
    let text = text.trim();
    match text.parse::<jiff::Timestamp>() {
        Ok(t) => SystemTime::try_from(t).map_err(|e| format!("{text:?} is out of range: {e}")),
        Err(_) if jiff::civil::DateTime::strptime("%Y-%m-%dT%H:%M:%S%.f", text).is_ok() => Err(
            format!("{text:?} has no zone: add Z for UTC or an offset such as +02:00 ({EXAMPLE})"),
        ),
        Err(e) => Err(format!("{text:?} is not an RFC 3339 time ({EXAMPLE}): {e}")),
    }
}

/// Parses a time stored in a row: RFC 3339 with its offset, or without a zone, taken as UTC.
#[must_use]
pub fn parse_stored(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return SystemTime::try_from(t).ok();
    }
    let civil = text
        .parse::<jiff::civil::DateTime>()
        .ok()
        .filter(|_| text.len() > "2026-01-30".len())?;
    let t = jiff::tz::Offset::UTC.to_timestamp(civil).ok()?;
    SystemTime::try_from(t).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn an_offset_names_the_same_instant_as_utc() {
        assert_eq!(
            parse_rfc3339("2026-01-30T00:00:00+02:00"),
            parse_rfc3339("2026-01-29T22:00:00Z")
        );
        assert_eq!(parse_rfc3339("2026-01-29T22:00:00Z"), Ok(at(1_769_724_000)));
        assert_eq!(
            parse_rfc3339("2026-01-29T16:30:00.5-05:30"),
            Ok(at(1_769_724_000) + Duration::from_millis(500))
        );
    }

    #[test]
    fn a_command_line_time_without_a_zone_is_refused_with_an_example() {
        let e = parse_rfc3339("2026-01-30T00:00:00").expect_err("no zone");
        assert!(e.contains("has no zone"), "{e}");
        assert!(e.contains(EXAMPLE), "{e}");
        let e = parse_rfc3339("yesterday").expect_err("not a time");
        assert!(e.contains("not an RFC 3339 time"), "{e}");
    }

    #[test]
    fn a_stored_time_takes_its_offset_and_utc_without_one() {
        assert_eq!(
            parse_stored("2026-01-30T00:00:00+02:00"),
            Some(at(1_769_724_000))
        );
        assert_eq!(parse_stored("2026-01-29T22:00:00"), Some(at(1_769_724_000)));
        assert_eq!(
            parse_stored("2026-01-29T22:00:00.000Z"),
            Some(at(1_769_724_000))
        );
        assert_eq!(parse_stored("not a time"), None);
    }
}
