//! Property tests (proptest) for the pure parsers: `Duration`, `Rate` and `Size` print in a
//! form that parses back to the same value, and `TypeGlob::matches` agrees with a reference
//! glob matcher. The fuzz targets in `fuzz/` cover the same code with arbitrary text.

use proptest::prelude::*;
use wireline_core::{Duration, Rate, Size, TypeGlob};

/// Whether `text` matches `pattern`, `*` matching any run (dots included): the textbook
/// dynamic programme, as the reference for `TypeGlob::matches`.
fn reference_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // matched[j]: the pattern so far matches text[..j].
    let mut matched = vec![false; t.len() + 1];
    matched[0] = true;
    for &c in &p {
        let mut next = vec![false; t.len() + 1];
        if c == '*' {
            let mut any = false;
            for j in 0..=t.len() {
                any |= matched[j];
                next[j] = any;
            }
        } else {
            for j in 1..=t.len() {
                next[j] = matched[j - 1] && t[j - 1] == c;
            }
        }
        matched = next;
    }
    matched[t.len()]
}

/// Windows a `Rate` is written with. Only whole seconds and whole milliseconds below a second:
/// a window such as 60.5 s prints as `/min` (see FUZZING.md, known findings), so it does not
/// round-trip yet.
fn window() -> impl Strategy<Value = std::time::Duration> {
    prop_oneof![
        Just(std::time::Duration::from_millis(1)),
        Just(std::time::Duration::from_secs(1)),
        Just(std::time::Duration::from_secs(60)),
        Just(std::time::Duration::from_secs(3600)),
        Just(std::time::Duration::from_secs(86_400)),
        Just(std::time::Duration::from_secs(30 * 86_400)),
        (1u64..1_000_000_000).prop_map(std::time::Duration::from_secs),
        (1u64..1000).prop_map(std::time::Duration::from_millis),
    ]
}

proptest! {
    #[test]
    fn a_duration_prints_as_it_parses(secs in 0u64..100_000_000_000, nanos in 0u32..1_000_000_000) {
        let duration = Duration::from(std::time::Duration::new(secs, nanos));
        let printed = duration.to_string();
        prop_assert_eq!(printed.parse::<Duration>(), Ok(duration), "{}", printed);
    }

    #[test]
    fn a_rate_prints_as_it_parses(count in 1u64.., per in window()) {
        let rate = Rate { count, per: Duration::from(per) };
        let printed = rate.to_string();
        let parsed: Rate = printed.parse().map_err(|e| TestCaseError::fail(format!("{printed}: {e}")))?;
        prop_assert_eq!(parsed, rate, "{}", printed);
    }

    #[test]
    fn a_size_prints_as_it_parses(bytes in any::<u64>()) {
        let size = Size::from_bytes(bytes);
        let printed = size.to_string();
        prop_assert_eq!(printed.parse::<Size>(), Ok(size), "{}", printed);
    }

    #[test]
    fn bare_numbers_are_refused(n in any::<u32>()) {
        prop_assert!(n.to_string().parse::<Duration>().is_err());
        prop_assert!(n.to_string().parse::<Size>().is_err());
    }

    #[test]
    fn a_glob_matches_as_the_reference_does(pattern in "[ab.*]{1,8}", ty in "[ab.]{0,10}") {
        let glob: TypeGlob = pattern.parse().expect("valid pattern");
        prop_assert_eq!(glob.matches(&ty), reference_match(&pattern, &ty), "{} vs {}", pattern, ty);
        if glob.matches(&ty) {
            prop_assert!(ty.starts_with(glob.literal_prefix()));
        }
    }

    #[test]
    fn a_glob_matches_what_it_was_made_from(
        parts in prop::collection::vec("[a-z0-9_.:-]{0,6}", 1..5),
        fillers in prop::collection::vec("[a-z0-9_.:-]{0,6}", 4),
    ) {
        // parts joined by `*`; the type puts any text where each `*` was.
        let pattern = parts.join("*");
        prop_assume!(!pattern.is_empty());
        let mut ty = parts[0].clone();
        for (part, filler) in parts[1..].iter().zip(&fillers) {
            ty.push_str(filler);
            ty.push_str(part);
        }
        let glob: TypeGlob = pattern.parse().expect("valid pattern");
        prop_assert!(glob.matches(&ty), "{} must match {}", pattern, ty);
        // Without a `*`, a pattern matches itself only.
        if parts.len() == 1 {
            prop_assert_eq!(glob.matches(&format!("{ty}x")), false);
        }
    }
}
