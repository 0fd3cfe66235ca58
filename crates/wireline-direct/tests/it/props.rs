//! Property tests (proptest) for the proxy's target check, `target::target_url`: whatever the
//! agent's raw path, an accepted URL stays below the service's `base_url`; plain paths are
//! accepted as they are; a `.` or `..` segment, however encoded, is refused. The `proxy_target`
//! fuzz target checks the same on arbitrary text.

use percent_encoding::percent_decode_str;
use proptest::prelude::*;
use url::Url;
use wireline_direct::target::target_url;

fn base() -> impl Strategy<Value = Url> {
    prop_oneof![
        Just("https://api.example.com/v1"),
        Just("https://api.example.com/v1/"),
        Just("https://api.example.com"),
        Just("http://127.0.0.1:8080/api/rest"),
        Just("https://[::1]:9443/a%20b/"),
    ]
    .prop_map(|text| Url::parse(text).expect("base"))
}

/// Raw path pieces an agent might send, tricky ones included.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_~-]{1,8}",
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("%2e".to_owned()),
        Just("%2E%2e".to_owned()),
        Just(".%2e".to_owned()),
        Just("%252e%252e".to_owned()),
        Just("%2f".to_owned()),
        Just("%5C".to_owned()),
        Just("%00".to_owned()),
        Just("\\".to_owned()),
        Just("/".to_owned()),
        Just("?".to_owned()),
        Just("#".to_owned()),
        Just("@".to_owned()),
        Just(":".to_owned()),
        Just("%".to_owned()),
        Just("%zz".to_owned()),
        Just("é".to_owned()),
        Just("\t".to_owned()),
        Just("//evil.example.com".to_owned()),
        Just("https://evil.example.com".to_owned()),
    ]
}

fn decoded(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

proptest! {
    #[test]
    fn an_accepted_url_stays_below_the_base(
        base in base(),
        path in prop::collection::vec(piece(), 0..8).prop_map(|p| p.concat()),
        query in proptest::option::of("[a-z=&%.]{0,12}"),
    ) {
        let Ok(url) = target_url(&base, &path, query.as_deref()) else {
            return Ok(());
        };
        prop_assert_eq!(url.scheme(), base.scheme());
        prop_assert_eq!(url.host(), base.host());
        prop_assert_eq!(url.port_or_known_default(), base.port_or_known_default());
        prop_assert!(url.fragment().is_none());
        let base_path = base.path().trim_end_matches('/');
        let below = url.path().strip_prefix(base_path).and_then(|rest| rest.strip_prefix('/'));
        prop_assert!(below.is_some(), "{} is not below {}", url, base);
        for segment in below.unwrap_or_default().split('/') {
            for form in [segment.to_owned(), decoded(segment), decoded(&decoded(segment))] {
                prop_assert!(form != "." && form != "..", "{} has a dot segment", url);
            }
        }
    }

    #[test]
    fn a_plain_path_is_taken_as_it_is(
        base in base(),
        segments in prop::collection::vec("[a-zA-Z0-9_~-]{1,8}", 0..6),
        trailing_slash in any::<bool>(),
        query in proptest::option::of("[a-z0-9]{1,5}=[a-z0-9]{0,5}"),
    ) {
        let mut path = segments.join("/");
        if trailing_slash && !path.is_empty() {
            path.push('/');
        }
        let url = target_url(&base, &path, query.as_deref())
            .map_err(|e| TestCaseError::fail(format!("{path}: {e}")))?;
        let expected = format!("{}/{path}", base.path().trim_end_matches('/'));
        prop_assert_eq!(url.path(), expected.as_str());
        prop_assert_eq!(url.query(), query.as_deref());
    }

    #[test]
    fn a_dot_segment_is_refused_however_it_is_written(
        base in base(),
        before in prop::collection::vec("[a-z0-9]{1,6}", 0..3),
        dots in prop_oneof![
            Just("."), Just(".."), Just("%2e"), Just("%2E"), Just("%2e%2e"), Just(".%2E"),
            Just("%2e."), Just("%252e"), Just("%252e%252e"), Just("%252E."),
        ],
        after in prop::collection::vec("[a-z0-9]{1,6}", 0..3),
    ) {
        let path = before
            .iter()
            .map(String::as_str)
            .chain([dots])
            .chain(after.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join("/");
        prop_assert!(target_url(&base, &path, None).is_err(), "{} was accepted", path);
    }
}
