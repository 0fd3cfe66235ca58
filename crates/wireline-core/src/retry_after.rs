//! `Retry-After` (RFC 9110 §10.2.3): the one parser every caller uses (the policy stack,
//! push delivery, polling).
//!
//! The header is either a number of seconds or an HTTP-date. Both forms are read; a date in
//! the past means "now". What comes back is bounded ([`LONGEST`]), so no caller can overflow
//! an `Instant` by adding it, whatever a server sends (`1e400`, `inf`, a year 9999 date).
//! Anything else (negative numbers, `NaN`, words) is treated as absent.

use std::time::Duration;

use jiff::Timestamp;

/// The longest wait a `Retry-After` can ask for here. Callers compare against their own
/// `max_wait` anyway; the bound only keeps arithmetic on the value safe.
pub const LONGEST: Duration = Duration::from_secs(366 * 24 * 3600);

/// The wait `value` asks for, as of `now`.
///
/// ```
/// # use std::time::Duration;
/// # use wireline_core::retry_after::parse;
/// let now: jiff::Timestamp = "2026-12-04T10:00:00Z".parse().unwrap();
/// assert_eq!(parse("120", now), Some(Duration::from_secs(120)));
/// assert_eq!(parse("Fri, 04 Dec 2026 10:00:30 GMT", now), Some(Duration::from_secs(30)));
/// assert_eq!(parse("soon", now), None);
/// ```
pub fn parse(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        // Seconds. RFC 9110 says digits only; fractions are accepted because some servers send
        // them, and they mean what they say.
        let seconds: f64 = value.parse().ok()?;
        return Some(Duration::try_from_secs_f64(seconds).map_or(LONGEST, |d| d.min(LONGEST)));
    }
    let at = http_date(value)?;
    let wait = at.duration_since(now);
    Some(
        Duration::try_from(wait)
            .unwrap_or(Duration::ZERO)
            .min(LONGEST),
    )
}

/// An HTTP-date: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), and the two obsolete forms
/// recipients must still read (RFC 850 `Sunday, 06-Nov-94 08:49:37 GMT`, asctime
/// `Sun Nov  6 08:49:37 1994`).
fn http_date(value: &str) -> Option<Timestamp> {
    if let Ok(zoned) = jiff::fmt::rfc2822::parse(value) {
        return Some(zoned.timestamp());
    }
    for format in ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"] {
        if let Ok(civil) = jiff::civil::DateTime::strptime(format, value)
            && let Ok(at) = jiff::tz::TimeZone::UTC.to_timestamp(civil)
        {
            return Some(at);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_and_every_bad_value() {
        let now: Timestamp = "1994-11-06T08:49:00Z".parse().expect("time");
        let check = |value: &str, expected: Option<Duration>| {
            assert_eq!(parse(value, now), expected, "{value:?}");
        };
        let secs = |s| Some(Duration::from_secs(s));
        check("0", secs(0));
        check(" 5 ", secs(5));
        check("1.5", Some(Duration::from_millis(1500)));
        check("Sun, 06 Nov 1994 08:49:37 GMT", secs(37));
        check("Sunday, 06-Nov-94 08:49:37 GMT", secs(37));
        check("Sun Nov  6 08:49:37 1994", secs(37));
        // A date in the past: no wait.
        check("Sat, 05 Nov 1994 08:49:37 GMT", secs(0));
        // Bounded, never a panic or an overflow later.
        check("1e400", None);
        check("99999999999999999999999999999", Some(LONGEST));
        check("Wed, 01 Jan 9000 00:00:00 GMT", Some(LONGEST));
        for bad in ["", "inf", "NaN", "-1", "soon", "1.2.3", "+5"] {
            check(bad, None);
        }
    }
}
