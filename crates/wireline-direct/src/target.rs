//! Where a proxied request may go: only below the service's `base_url`.
//!
//! The agent's path is taken raw (still percent-encoded) and checked segment by segment
//! before it is appended to the base URL: no `.` or `..` segments (also when encoded, or
//! double-encoded), no encoded slashes or backslashes, no empty segments (`//host` tricks), no
//! control characters. The built URL must still have the base's scheme, host and port and start
//! with its path; anything else is refused before a socket is opened.

use percent_encoding::percent_decode_str;
use url::Url;

/// Builds the upstream URL for `raw_path` (below the base, without a leading `/`) and the raw
/// query string. The error says what was refused, for a 400.
pub fn target_url(base: &Url, raw_path: &str, raw_query: Option<&str>) -> Result<Url, String> {
    let segments: Vec<&str> = if raw_path.is_empty() {
        Vec::new()
    } else {
        raw_path.split('/').collect()
    };
    let last = segments.len().saturating_sub(1);
    for (index, segment) in segments.iter().enumerate() {
        // A trailing slash is an empty last segment: allowed.
        if segment.is_empty() && index != last {
            return Err("the path has an empty segment ('//'); write it without one".to_owned());
        }
        check_segment(segment)?;
    }
    let mut url = base.clone();
    let base_path = base.path().trim_end_matches('/');
    let joined = if raw_path.is_empty() {
        format!("{base_path}/")
    } else {
        format!("{base_path}/{raw_path}")
    };
    url.set_path(&joined);
    url.set_query(raw_query.filter(|q| !q.is_empty()));
    url.set_fragment(None);
    let same_origin = url.scheme() == base.scheme()
        && url.host() == base.host()
        && url.port_or_known_default() == base.port_or_known_default();
    if !same_origin || !url.path().starts_with(base_path) {
        return Err("the path leaves the service's base_url".to_owned());
    }
    Ok(url)
}

fn check_segment(segment: &str) -> Result<(), String> {
    if segment.contains('\\') || segment.chars().any(char::is_control) {
        return Err("the path contains a backslash or a control character".to_owned());
    }
    let decoded = percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| "the path is not valid UTF-8 after decoding".to_owned())?;
    if decoded == "." || decoded == ".." {
        return Err("the path contains a '.' or '..' segment".to_owned());
    }
    if decoded.contains('/') || decoded.contains('\\') || decoded.chars().any(char::is_control) {
        return Err(
            "the path contains an encoded slash, backslash or control character".to_owned(),
        );
    }
    // Double encoding (%252e%252e) would become '..' at a server that decodes twice.
    let lower = decoded.to_ascii_lowercase();
    if ["%2e", "%2f", "%5c", "%00"]
        .iter()
        .any(|encoded| lower.contains(encoded))
    {
        return Err("the path contains a double-encoded '.', '/' or '\\\\'".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_below_the_base_url() {
        let base = Url::parse("https://api.example.com/v1").expect("url");
        let ok = |path: &str, query: Option<&str>, expected: &str| {
            assert_eq!(
                target_url(&base, path, query)
                    .map(|u| u.to_string())
                    .as_deref(),
                Ok(expected),
                "{path}"
            );
        };
        ok(
            "customers/cus_1",
            None,
            "https://api.example.com/v1/customers/cus_1",
        );
        ok(
            "customers",
            Some("limit=3&starting_after=cus_9"),
            "https://api.example.com/v1/customers?limit=3&starting_after=cus_9",
        );
        ok("customers/", None, "https://api.example.com/v1/customers/");
        ok("", None, "https://api.example.com/v1/");
        ok(
            "files/report%20q3.pdf",
            None,
            "https://api.example.com/v1/files/report%20q3.pdf",
        );
        for bad in [
            "../admin",
            "customers/../../admin",
            "%2e%2e/admin",
            "%2E%2E/admin",
            ".%2e/admin",
            "%252e%252e/admin",
            "a%2fb",
            "a%5cb",
            "a\\b",
            "/evil.example.com/x",
            "https://evil.example.com/x",
            "a//b",
            "a%00b",
            "./x",
        ] {
            assert!(
                target_url(&base, bad, None).is_err(),
                "{bad} must be refused"
            );
        }
    }
}
