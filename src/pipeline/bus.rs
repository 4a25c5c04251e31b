//! The two kinds of EventBridge bus a route can target, and what each one's PutEvents accepts.
//!
//! - **Classic** (rules and targets; API `events`, `aws-sdk-eventbridge`): up to 10 entries
//!   and 1 MiB per call (256 KiB until 2026-01-29); the bus is named per entry, so one call may
//!   mix buses.
//! - **Custom Event Bus** (API `eventsv2`, `aws-sdk-eventbridgev2`): up to 100 entries and
//!   1 MiB per call, one bus per call (`EventBusArn` is a request field); each entry may carry
//!   `SystemMetadata.EventGroupId` (FIFO subscribers deliver a group in publish order) and
//!   `SystemMetadata.DeduplicationId` (a repeat within the dedup window is answered
//!   `DEDUPLICATED` and not stored again).
//!
//! Sources: the EventBridge API reference (`PutEvents`) and the Custom Event Bus (eventsv2)
//! API reference (`PutEvents`, `PutEventsSystemMetadata`); the 1 MiB request limit is the
//! `eventbridgev2` service model's (botocore, 2025-05-15).

use std::fmt;
use std::sync::Arc;

/// Entries per classic PutEvents call.
/// <https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEvents.html>
pub const CLASSIC_MAX_ENTRIES: usize = 10;
/// Bytes per classic PutEvents call, as [`super::entry_size`] counts them (1 MiB). AWS raised
/// EventBridge's payload limit "from 256 KB to 1 MB" on 2026-01-29 (AWS Compute Blog, "More
/// room to build: serverless services now support payloads up to 1 MB"; partners describe it
/// as "EventBridge's 1 MiB entry cap"); the entry size is counted as
/// <https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevent-size.html> says.
// NOTE: the user guide pages not yet updated still say 256KB; the announcement is newer.
pub const CLASSIC_MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Entries per Custom Event Bus PutEvents call ("Array Members: Minimum number of 1 item.
/// Maximum number of 100 items.", eventsv2 `PutEvents`).
pub const CUSTOM_MAX_ENTRIES: usize = 100;
/// Bytes of entries per Custom Event Bus PutEvents call (1 MiB); a larger request fails with
/// `InvalidInputException` and publishes nothing.
pub const CUSTOM_MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Longest `EventGroupId` and `DeduplicationId`, in characters (eventsv2
/// `PutEventsSystemMetadata`: "Minimum length of 1. Maximum length of 128.").
pub const MAX_SYSTEM_ID_CHARS: usize = 128;
/// Longest `EventBusArn` (eventsv2 `PutEvents`: "Maximum length of 1011").
pub const MAX_BUS_ARN_CHARS: usize = 1011;

/// Where a route's events go. The name is shared by the route and each entry it makes (an
/// entry's copy is a count, not a string: issue #28).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Bus {
    /// A classic bus, by name or ARN (`event_bus_name`).
    Classic(Arc<str>),
    /// A Custom Event Bus, by its `event-busv2` ARN (`event_bus_arn`).
    Custom(Arc<str>),
}

/// The kind of a [`Bus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BusKind {
    Classic,
    Custom,
}

impl Bus {
    #[must_use]
    pub fn kind(&self) -> BusKind {
        match self {
            Self::Classic(_) => BusKind::Classic,
            Self::Custom(_) => BusKind::Custom,
        }
    }

    /// The bus's name or ARN, as the request names it.
    #[must_use]
    pub fn id(&self) -> &str {
        match self {
            Self::Classic(name) | Self::Custom(name) => name,
        }
    }
}

impl fmt::Display for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl BusKind {
    /// Entries per PutEvents call.
    #[must_use]
    pub fn max_entries(self) -> usize {
        match self {
            Self::Classic => CLASSIC_MAX_ENTRIES,
            Self::Custom => CUSTOM_MAX_ENTRIES,
        }
    }

    /// Bytes of entries per PutEvents call; an entry above it can never be sent.
    #[must_use]
    pub fn max_request_bytes(self) -> usize {
        match self {
            Self::Classic => CLASSIC_MAX_REQUEST_BYTES,
            Self::Custom => CUSTOM_MAX_REQUEST_BYTES,
        }
    }
}

/// Why an `event_bus_arn` is refused: it must match the eventsv2 `PutEvents` pattern
/// `arn:aws(-[a-z0-9]+)*:events:[a-z][a-z0-9]*(-[a-z0-9]+)*:([0-9]{12}):event-busv2\/`
/// `[A-Za-z0-9][\.\-_A-Za-z0-9]{0,255}\/[a-z0-9]{25}`, at most 1011 characters.
///
/// # Errors
/// The first part that does not match, in words.
pub fn check_custom_bus_arn(arn: &str) -> Result<(), String> {
    const SHAPE: &str =
        "expected arn:<partition>:events:<region>:<12-digit account>:event-busv2/<name>/<25-character id>";
    if arn.chars().count() > MAX_BUS_ARN_CHARS {
        return Err(format!("is longer than {MAX_BUS_ARN_CHARS} characters"));
    }
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [arn_prefix, partition, service, region, account, resource] = parts[..] else {
        return Err(format!("is not an ARN ({SHAPE})"));
    };
    if arn_prefix != "arn" || !is_partition(partition) {
        return Err(format!("has no valid `arn:aws…` prefix ({SHAPE})"));
    }
    if service == "events" && resource.starts_with("event-bus/") {
        return Err(
            "is a classic event bus ARN (`event-bus/`): set it as `event_bus_name`, or give \
             the Custom Event Bus ARN (`event-busv2/`)"
                .to_owned(),
        );
    }
    if service != "events" {
        return Err(format!(
            "names service {service:?}, not \"events\" ({SHAPE})"
        ));
    }
    if !is_region(region) {
        return Err(format!("has an invalid region {region:?} ({SHAPE})"));
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("has an invalid account id {account:?} ({SHAPE})"));
    }
    let Some(rest) = resource.strip_prefix("event-busv2/") else {
        return Err(format!("is not an `event-busv2/` resource ({SHAPE})"));
    };
    let Some((name, id)) = rest.split_once('/') else {
        return Err(format!("has no bus id after the name ({SHAPE})"));
    };
    let mut name_chars = name.chars();
    let name_ok = name_chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 256
        && name_chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !name_ok {
        return Err(format!(
            "has an invalid bus name {name:?}: 1-256 characters of A-Z a-z 0-9 . - _, \
             starting with a letter or digit"
        ));
    }
    if id.len() != 25
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(format!(
            "has an invalid bus id {id:?}: exactly 25 characters of a-z 0-9"
        ));
    }
    Ok(())
}

/// `aws(-[a-z0-9]+)*`
fn is_partition(p: &str) -> bool {
    p.strip_prefix("aws").is_some_and(|rest| {
        rest.is_empty()
            || rest.strip_prefix('-').is_some_and(|r| {
                r.split('-').all(|w| {
                    !w.is_empty()
                        && w.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                })
            })
    })
}

/// `[a-z][a-z0-9]*(-[a-z0-9]+)*`
fn is_region(r: &str) -> bool {
    let mut words = r.split('-');
    let first_ok = words.next().is_some_and(|w| {
        w.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && w.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    first_ok
        && words.all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// `EventGroupId`: 1-128 characters.
///
/// # Errors
/// Why the id is refused.
pub fn check_group_id(id: &str) -> Result<(), String> {
    let chars = id.chars().count();
    if chars == 0 {
        return Err("is empty (EventGroupId takes 1-128 characters)".to_owned());
    }
    if chars > MAX_SYSTEM_ID_CHARS {
        return Err(format!(
            "is {chars} characters (EventGroupId takes at most {MAX_SYSTEM_ID_CHARS})"
        ));
    }
    Ok(())
}

/// `DeduplicationId`: 1-128 characters, not all whitespace (its pattern asks for one
/// character outside U+0009-000D, U+001C-0020, U+1680, U+2000-2006, U+2008-200A, U+2028,
/// U+2029, U+205F, U+3000).
///
/// # Errors
/// Why the id is refused.
pub fn check_deduplication_id(id: &str) -> Result<(), String> {
    let chars = id.chars().count();
    if chars == 0 || chars > MAX_SYSTEM_ID_CHARS {
        return Err(format!(
            "is {chars} characters (DeduplicationId takes 1-{MAX_SYSTEM_ID_CHARS})"
        ));
    }
    let blank = |c: char| {
        matches!(c,
            '\u{0009}'..='\u{000D}' | '\u{001C}'..='\u{0020}' | '\u{1680}'
            | '\u{2000}'..='\u{2006}' | '\u{2008}'..='\u{200A}' | '\u{2028}' | '\u{2029}'
            | '\u{205F}' | '\u{3000}')
    };
    if id.chars().all(blank) {
        return Err("is only whitespace (DeduplicationId needs another character)".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        "arn:aws:events:us-east-1:123456789012:event-busv2/orders/abcdefghij0123456789abcde";

    #[test]
    fn a_custom_bus_arn_follows_the_documented_pattern() {
        assert_eq!(check_custom_bus_arn(GOOD), Ok(()));
        for ok in [
            "arn:aws-cn:events:cn-north-1:123456789012:event-busv2/a/abcdefghij0123456789abcde",
            "arn:aws-us-gov:events:us-gov-west-1:123456789012:event-busv2/a.b-c_d/abcdefghij0123456789abcde",
        ] {
            assert_eq!(check_custom_bus_arn(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("orders", "is not an ARN"),
            (
                "arn:aws:events:us-east-1:123456789012:event-bus/orders",
                "classic event bus ARN",
            ),
            (
                "arn:aws:sqs:us-east-1:123456789012:event-busv2/o/abcdefghij0123456789abcde",
                "service",
            ),
            (
                "arn:aws:events:US-east-1:123456789012:event-busv2/o/abcdefghij0123456789abcde",
                "region",
            ),
            (
                "arn:aws:events:us-east-1:12345:event-busv2/o/abcdefghij0123456789abcde",
                "account",
            ),
            (
                "arn:aws:events:us-east-1:123456789012:event-busv2/orders",
                "no bus id",
            ),
            (
                "arn:aws:events:us-east-1:123456789012:event-busv2/-o/abcdefghij0123456789abcde",
                "bus name",
            ),
            (
                "arn:aws:events:us-east-1:123456789012:event-busv2/o/ABCDEFGHIJ0123456789abcde",
                "bus id",
            ),
            (
                "arn:aws:events:us-east-1:123456789012:event-busv2/o/abc",
                "bus id",
            ),
            (
                "arn:azure:events:us-east-1:123456789012:event-busv2/o/abcdefghij0123456789abcde",
                "prefix",
            ),
        ] {
            let err = check_custom_bus_arn(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn group_and_deduplication_ids_follow_their_limits() {
        assert!(check_group_id("order-1").is_ok());
        assert!(
            check_group_id(&"é".repeat(128)).is_ok(),
            "characters, not bytes"
        );
        assert!(check_group_id("").is_err());
        assert!(check_group_id(&"x".repeat(129)).is_err());
        assert!(check_deduplication_id("evt-1").is_ok());
        assert!(check_deduplication_id(" a ").is_ok());
        assert!(check_deduplication_id(" \t\u{3000}").is_err());
        assert!(check_deduplication_id("").is_err());
        assert!(check_deduplication_id(&"x".repeat(129)).is_err());
    }

    #[test]
    fn each_kind_has_its_call_limits() {
        assert_eq!(BusKind::Classic.max_entries(), 10);
        assert_eq!(BusKind::Custom.max_entries(), 100);
        assert_eq!(BusKind::Custom.max_request_bytes(), 1_048_576);
        assert_eq!(Bus::Custom(GOOD.into()).kind(), BusKind::Custom);
    }
}
