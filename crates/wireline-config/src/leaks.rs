//! Recognising credentials in text: the providers' documented key formats, private keys, and
//! high-entropy values assigned to key-like names. Used by the config's credential scan and by
//! `wireline secrets scan` over files and git history.
//!
//! A finding never carries the value: only its kind, where it is, the recognisable prefix
//! (`sk_live_…`) and a fingerprint (the first 16 hex digits of its SHA-256) that an allowlist
//! can name.

use std::sync::LazyLock;

use regex::Regex;
use sha2::{Digest, Sha256};

/// A credential found in a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// What it is, e.g. "Stripe secret key".
    pub kind: &'static str,
    /// Byte range in the line.
    pub start: usize,
    /// End of the byte range.
    pub end: usize,
    /// The recognisable start, safe to show (`sk_live_`), never the value.
    pub prefix: String,
    /// First 16 hex digits of the value's SHA-256.
    pub fingerprint: String,
    /// True for a provider's documented format (not the entropy heuristic).
    pub known_format: bool,
}

/// `(kind, pattern)`; the first capture group is the value, the second (if any) its prefix.
const FORMATS: &[(&str, &str)] = &[
    ("Stripe secret key", r"((sk_(?:live|test)_)[A-Za-z0-9]{8,})"),
    (
        "Stripe restricted key",
        r"((rk_(?:live|test)_)[A-Za-z0-9]{8,})",
    ),
    (
        "Stripe live publishable key",
        r"((pk_live_)[A-Za-z0-9]{8,})",
    ),
    ("webhook signing secret", r"((whsec_)[A-Za-z0-9+/=_\-]{8,})"),
    ("Slack token", r"((xox[abprs]-)[A-Za-z0-9\-]{8,})"),
    ("Slack app token", r"((xapp-)[A-Za-z0-9\-]{8,})"),
    (
        "Slack incoming webhook URL",
        r"((https://hooks\.slack\.com/services/)T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+)",
    ),
    ("GitHub token", r"((gh[pousr]_)[A-Za-z0-9_]{8,})"),
    (
        "GitHub fine-grained token",
        r"((github_pat_)[A-Za-z0-9_]{8,})",
    ),
    (
        "Shopify token",
        r"((shp(?:at|ss|ca|pa)_)[A-Za-z0-9_\-]{8,})",
    ),
    (
        "SendGrid API key",
        r"((SG\.)[A-Za-z0-9_\-]{16,}(?:\.[A-Za-z0-9_\-]{16,})?)",
    ),
    ("AWS access key id", r"(((?:AKIA|ASIA))[0-9A-Z]{16})"),
    (
        "private key",
        r"((-----BEGIN )(?:(?:RSA|EC|DSA|OPENSSH|PGP|ENCRYPTED) )?PRIVATE KEY(?: BLOCK)?-----)",
    ),
];

static KNOWN: LazyLock<Vec<(&'static str, Regex)>> = LazyLock::new(|| {
    FORMATS
        .iter()
        .filter_map(|(kind, pattern)| {
            // A format starts at the start of the text or after a non-key character, so
            // `MSG.xxx` is not a SendGrid key.
            Regex::new(&format!(r"(?:^|[^A-Za-z0-9_]){pattern}"))
                .ok()
                .map(|regex| (*kind, regex))
        })
        .collect()
});

static ASSIGNED: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r#"(?i-u)([A-Za-z0-9_.\-]*(?:api[_\-]?key|secret|token|passw(?:or)?d|private[_\-]?key|access[_\-]?key|credential)[A-Za-z0-9_.\-]*)["']?\s*(?::|=|:=|=>)\s*["']?([A-Za-z0-9/+_\-=.~]{20,})"#,
    )
    .ok()
});

/// Bits of entropy per character of `text` (Shannon, over its own characters).
fn entropy(text: &str) -> f64 {
    let mut counts = std::collections::HashMap::new();
    for c in text.chars() {
        *counts.entry(c).or_insert(0u32) += 1;
    }
    let len = text.chars().count() as f64;
    counts
        .values()
        .map(|&n| {
            let p = f64::from(n) / len;
            -p * p.log2()
        })
        .sum()
}

fn fingerprint(value: &str) -> String {
    hex::encode(&Sha256::digest(value.as_bytes())[..8])
}

/// Every credential in `line`, known formats first; overlapping heuristic hits are dropped.
pub fn find(line: &str) -> Vec<Leak> {
    let mut found: Vec<Leak> = Vec::new();
    for (kind, regex) in KNOWN.iter() {
        for captures in regex.captures_iter(line) {
            let (Some(value), prefix) = (captures.get(1), captures.get(2)) else {
                continue;
            };
            found.push(Leak {
                kind,
                start: value.start(),
                end: value.end(),
                prefix: prefix.map_or_else(
                    || value.as_str().chars().take(4).collect(),
                    |p| p.as_str().to_owned(),
                ),
                fingerprint: fingerprint(value.as_str()),
                known_format: true,
            });
        }
    }
    if let Some(regex) = ASSIGNED.as_ref() {
        for captures in regex.captures_iter(line) {
            let Some(value) = captures.get(2) else {
                continue;
            };
            let text = value.as_str();
            let overlaps = found
                .iter()
                .any(|f| f.start < value.end() && value.start() < f.end);
            // Random keys score 4+ bits per character and mix digits with letters; words,
            // paths, placeholders and repeated characters do not.
            let digits = text.chars().filter(char::is_ascii_digit).count();
            let letters = text.chars().filter(char::is_ascii_alphabetic).count();
            if overlaps
                || text.starts_with("${")
                || digits < 2
                || letters < 2
                || entropy(text) < 3.5
            {
                continue;
            }
            found.push(Leak {
                kind: "high-entropy value of a key-like name",
                start: value.start(),
                end: value.end(),
                prefix: text.chars().take(4).collect(),
                fingerprint: fingerprint(text),
                known_format: false,
            });
        }
    }
    found.sort_by_key(|leak| leak.start);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_formats_entropy_and_what_is_not_a_key() {
        let live = format!("sk_live_{}", "51HqT2eKZ8x9aBcDeFgH");
        let found = find(&format!("STRIPE_KEY={live}"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, "Stripe secret key");
        assert_eq!(found[0].prefix, "sk_live_");
        assert_eq!(
            &format!("STRIPE_KEY={live}")[found[0].start..found[0].end],
            live
        );
        assert_eq!(
            find("-----BEGIN RSA PRIVATE KEY-----")[0].kind,
            "private key"
        );
        let random = "api_key = \"Zx8q2LmN4vB7tR1pK9sD3fG6hJ0wQ5eY\"";
        assert_eq!(
            find(random)[0].kind,
            "high-entropy value of a key-like name"
        );
        assert!(
            find("password = \"aaaaaaaaaaaaaaaaaaaaaaaa\"").is_empty(),
            "no entropy"
        );
        assert!(
            find("token = \"${env:GITHUB_TOKEN}\"").is_empty(),
            "a reference"
        );
        assert!(find("use an sk_test_ key in staging").is_empty());
        assert!(find("MSG.abcdefghijklmnopqrstuvwxyz").is_empty());
        assert_ne!(
            find(&live)[0].fingerprint,
            find("sk_live_other0000000000")[0].fingerprint
        );
    }
}
