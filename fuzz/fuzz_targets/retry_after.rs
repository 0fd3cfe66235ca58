//! The `Retry-After` parser (`wireline_core::retry_after::parse`) on arbitrary values and clocks.
//! Must not panic. Every wait is at most `LONGEST`; a whole number of seconds means exactly
//! that many (bounded); a wait does not depend on the clock for the seconds form, and for a
//! date shrinks by exactly as much as the clock moves on (unless bounded).
#![no_main]

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use jiff::{SignedDuration, Timestamp};
use wireline_core::retry_after::{LONGEST, parse};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let (Ok(seconds), Ok(value)) = (i64::arbitrary(&mut u), <&str>::arbitrary_take_rest(u)) else {
        return;
    };
    // Any time jiff represents, less a margin for the later clock below.
    let span = Timestamp::MAX.as_second() - Timestamp::MIN.as_second() - 20;
    let now = Timestamp::from_second(Timestamp::MIN.as_second() + 10 + seconds.rem_euclid(span))
        .expect("in range");
    let Some(wait) = parse(value, now) else {
        return;
    };
    assert!(wait <= LONGEST, "{value:?}: {wait:?}");
    let trimmed = value.trim();
    if trimmed.bytes().all(|b| b.is_ascii_digit()) {
        let expected = trimmed
            .parse::<u64>()
            .map_or(LONGEST, |s| Duration::from_secs(s).min(LONGEST));
        assert_eq!(wait, expected, "{value:?}");
    }
    let later =
        parse(value, now + SignedDuration::from_secs(10)).expect("parsed once, parses again");
    if trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        assert_eq!(
            later, wait,
            "{value:?}: the seconds form depends on the clock"
        );
    } else if wait < LONGEST {
        assert_eq!(
            later,
            wait.saturating_sub(Duration::from_secs(10)),
            "{value:?}: a date's wait does not follow the clock"
        );
    }
});
