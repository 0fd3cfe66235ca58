//! Property tests (proptest) for the `Link` header parser, `sync::next_link`: the `rel="next"`
//! target comes back as written, wherever it stands among other links and headers, and
//! nothing comes back without one. The `link_header` fuzz target feeds it arbitrary text.
//!
//! The URLs here have no `,` in them: `next_link` splits the header at every comma, so a
//! next URL with a comma in its query is not read back (a known finding in FUZZING.md).

use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use wireline_poll::sync::next_link;

fn url() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("https"), Just("http")],
        "[a-z0-9]{1,10}(\\.[a-z]{2,5}){1,2}",
        "(/[a-zA-Z0-9_.~%-]{1,8}){0,4}",
        proptest::option::of("[a-z_]{1,6}=[a-zA-Z0-9_%.-]{0,10}(&[a-z_]{1,6}=[a-z0-9]{0,6}){0,3}"),
    )
        .prop_map(|(scheme, host, path, query)| match query {
            Some(query) => format!("{scheme}://{host}{path}?{query}"),
            None => format!("{scheme}://{host}{path}"),
        })
}

/// A link that is not `next`.
fn other() -> impl Strategy<Value = String> {
    (
        url(),
        prop_oneof![
            Just("prev"),
            Just("last"),
            Just("first"),
            Just("\"last\""),
            Just("\"prev\"")
        ],
    )
        .prop_map(|(url, rel)| format!("<{url}>; rel={rel}"))
}

fn next(url: &str, quoted: bool, title: bool) -> String {
    let rel = if quoted { "rel=\"next\"" } else { "rel=next" };
    if title {
        format!("<{url}>; title=\"more\"; {rel}")
    } else {
        format!("<{url}>; {rel}")
    }
}

proptest! {
    #[test]
    fn the_next_link_is_read_back(
        target in url(),
        before in prop::collection::vec(other(), 0..3),
        after in prop::collection::vec(other(), 0..3),
        quoted in any::<bool>(),
        title in any::<bool>(),
        separate_headers in any::<bool>(),
    ) {
        let links: Vec<String> = before
            .into_iter()
            .chain([next(&target, quoted, title)])
            .chain(after)
            .collect();
        let mut headers = HeaderMap::new();
        if separate_headers {
            for link in &links {
                headers.append("link", HeaderValue::from_str(link).expect("header"));
            }
        } else {
            headers.insert("link", HeaderValue::from_str(&links.join(", ")).expect("header"));
        }
        prop_assert_eq!(next_link(&headers), Some(target));
    }

    #[test]
    fn no_next_link_reads_as_none(links in prop::collection::vec(other(), 0..4)) {
        let mut headers = HeaderMap::new();
        if !links.is_empty() {
            headers.insert("link", HeaderValue::from_str(&links.join(", ")).expect("header"));
        }
        prop_assert_eq!(next_link(&headers), None);
    }
}
