//! Epoch-millisecond time, the one representation used on the wire and in state.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub const SECOND_MS: i64 = 1_000;
pub const MINUTE_MS: i64 = 60 * SECOND_MS;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Now, in epoch milliseconds.
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Parses an RFC 3339 timestamp (`2026-11-25T10:00:00.123Z`, any offset) into epoch ms.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s.trim(), &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Formats epoch ms as RFC 3339 UTC with milliseconds.
pub fn format_rfc3339_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// The event time corrected for the client's clock skew, the way Snowplow derives
/// `derived_tstamp`: the client's clock may be wrong, but the interval between `occurred_at`
/// and `sent_at` (both on that clock) is right, and `received_at` is on ours.
pub fn corrected_event_time(occurred_at: i64, sent_at: Option<i64>, received_at: i64) -> i64 {
    match sent_at {
        Some(sent) => received_at.saturating_sub(sent.saturating_sub(occurred_at).max(0)),
        None => occurred_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_rfc3339() {
        let ms = parse_rfc3339_ms("2026-11-25T10:00:00.123Z").expect("valid");
        assert_eq!(ms, 1_795_600_800_123);
        assert_eq!(format_rfc3339_ms(ms), "2026-11-25T10:00:00.123Z");
        assert_eq!(parse_rfc3339_ms("2026-11-25T11:00:00.123+01:00"), Some(ms));
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }

    #[test]
    fn skew_correction_uses_the_client_interval_on_our_clock() {
        // Client clock one hour fast; event happened 5 s before sending.
        let received = 1_000_000_000;
        let sent = received + HOUR_MS;
        let occurred = sent - 5_000;
        assert_eq!(
            corrected_event_time(occurred, Some(sent), received),
            received - 5_000
        );
        assert_eq!(corrected_event_time(occurred, None, received), occurred);
        // occurred after sent (nonsense): no negative interval.
        assert_eq!(
            corrected_event_time(sent + 10, Some(sent), received),
            received
        );
    }
}
