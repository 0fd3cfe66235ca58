//! The proxy's target check (`wireline_direct::target::target_url`) on arbitrary raw paths and
//! queries below generated base URLs. Asserted for every `Ok(url)`: same scheme, host and port
//! as the base; the path is the base's path followed by `/` (never a sibling such as
//! `/v1x`); no segment of it is `.` or `..`, also after percent-decoding once or twice; no
//! fragment; the query is the one given.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use percent_encoding::percent_decode_str;
use url::Url;

#[derive(Arbitrary, Debug)]
struct Input {
    https: bool,
    host: u8,
    port: Option<u16>,
    base_path: Vec<u8>,
    trailing_slash: bool,
    path: String,
    query: Option<String>,
}

const HOSTS: &[&str] = &[
    "api.example.com",
    "127.0.0.1",
    "[::1]",
    "localhost",
    "xn--bcher-kva.example",
    "a.b.c.d.example",
];
const BASE_SEGMENTS: &[&str] = &["v1", "api", "rest", "v2.0", "%20x", "~user", "a;b", "a@b"];

fn decoded(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let mut base = format!(
        "{}://{}",
        if input.https { "https" } else { "http" },
        HOSTS[usize::from(input.host) % HOSTS.len()]
    );
    if let Some(port) = input.port {
        base.push_str(&format!(":{port}"));
    }
    for segment in input.base_path.iter().take(4) {
        base.push('/');
        base.push_str(BASE_SEGMENTS[usize::from(*segment) % BASE_SEGMENTS.len()]);
    }
    if input.trailing_slash {
        base.push('/');
    }
    let base = Url::parse(&base).expect("generated base URLs parse");

    let Ok(url) = wireline_direct::target::target_url(&base, &input.path, input.query.as_deref())
    else {
        return;
    };
    assert_eq!(url.scheme(), base.scheme(), "{url}");
    assert_eq!(url.host(), base.host(), "{url}");
    assert_eq!(
        url.port_or_known_default(),
        base.port_or_known_default(),
        "{url}"
    );
    assert!(
        url.username().is_empty() && url.password().is_none(),
        "{url}"
    );
    assert!(url.fragment().is_none(), "{url}");
    let base_path = base.path().trim_end_matches('/');
    let below = url
        .path()
        .strip_prefix(base_path)
        .and_then(|rest| rest.strip_prefix('/'));
    let Some(below) = below else {
        panic!("{url} is not below {base}");
    };
    for segment in below.split('/') {
        for form in [
            segment.to_owned(),
            decoded(segment),
            decoded(&decoded(segment)),
        ] {
            assert!(
                form != "." && form != "..",
                "{url} has a dot segment ({segment:?}) below {base}"
            );
        }
    }
    let expected_query = input.query.as_deref().filter(|q| !q.is_empty());
    assert_eq!(url.query().is_some(), expected_query.is_some(), "{url}");
});
