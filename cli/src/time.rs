//! The clock, read once per command, and times shown in the machine's
//! local time (TZ, else /etc/localtime, read by jiff without `unsafe` in
//! this crate), or in UTC, labelled so, when no zone can be found.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch, now. Called once per command; everything below
/// takes the time as a parameter, as the library does. (A library error,
/// so this module needs nothing of `error`, which shows times with it.)
pub fn now() -> otpgate_config::Result<u64> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| otpgate_config::Error::Clock {
            message: "the system clock is before 1970".into(),
        })
}

/// `YYYY-MM-DD HH:MM:SS ZONE` in the system's time zone (`CET`, `+0530`
/// when the zone has no abbreviation), or [`format_utc`] when the zone is
/// unknown.
pub fn format_local(t: u64) -> String {
    match jiff::tz::TimeZone::try_system() {
        Ok(tz) => format_in(t, &tz),
        Err(_) => format_utc(t),
    }
}

/// `t` in the zone `tz`.
pub fn format_in(t: u64, tz: &jiff::tz::TimeZone) -> String {
    let Ok(ts) = i64::try_from(t)
        .map_err(|_| ())
        .and_then(|s| jiff::Timestamp::from_second(s).map_err(|_| ()))
    else {
        return format_utc(t);
    };
    let zoned = ts.to_zoned(tz.clone());
    let abbreviation = tz.to_offset_info(ts).abbreviation().to_string();
    let label = if abbreviation.is_empty() {
        zoned.strftime("%z").to_string()
    } else {
        abbreviation
    };
    format!("{} {label}", zoned.strftime("%Y-%m-%d %H:%M:%S"))
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_utc(t: u64) -> String {
    let (y, m, d) = otpgate_config::texts::civil_from_days(t / 86_400);
    let secs = t % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// "3 minutes", "2 hours", for messages about clock offsets.
pub fn describe_seconds(secs: u64) -> String {
    let (n, unit) = match secs {
        0..=119 => (secs, "second"),
        120..=7199 => (secs / 60, "minute"),
        _ => (secs / 3600, "hour"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_utc(1_767_225_600), "2026-01-01 00:00:00 UTC");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn formats_in_a_time_zone_with_its_abbreviation() {
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin");
        if let Ok(berlin) = berlin {
            assert_eq!(format_in(1_767_225_600, &berlin), "2026-01-01 01:00:00 CET");
            assert_eq!(
                format_in(1_751_328_000, &berlin),
                "2025-07-01 02:00:00 CEST"
            );
        }
        assert_eq!(
            format_in(1_767_225_600, &jiff::tz::TimeZone::UTC),
            "2026-01-01 00:00:00 UTC"
        );
        let fixed = jiff::tz::TimeZone::fixed(jiff::tz::offset(5));
        assert!(format_in(0, &fixed).starts_with("1970-01-01 05:00:00 "));
    }

    #[test]
    fn describes_offsets_in_words() {
        assert_eq!(describe_seconds(1), "1 second");
        assert_eq!(describe_seconds(600), "10 minutes");
        assert_eq!(describe_seconds(7200), "2 hours");
    }
}
