//! The `Link` header parser of polling (`wireline_poll::sync::next_link`) on arbitrary header
//! values, one or several. Must not panic; a target it returns is part of a header value and
//! does not start with `<` or end with `>`.
#![no_main]

use http::{HeaderMap, HeaderValue};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    // Several `Link` headers, split at NUL bytes (a header value cannot hold one).
    for part in data.split(|b| *b == 0) {
        if let Ok(value) = HeaderValue::from_bytes(part) {
            headers.append("link", value);
        }
    }
    if let Some(target) = wireline_poll::sync::next_link(&headers) {
        assert!(
            !target.starts_with('<') && !target.ends_with('>'),
            "{target:?}"
        );
        assert!(
            headers
                .get_all("link")
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| v.contains(target.as_str()))),
            "{target:?} is in no Link header"
        );
    }
});
