//! The credential scan: any string in the file that looks like a real key is an error.
//!
//! It runs on the raw document, every value of every table, whatever key it sits under: a key
//! pasted into a `description` leaks as surely as one in `auth`. The prefixes are the ones the
//! providers document for their live and test keys; each needs a run of key characters after
//! it, so prose such as "use an sk_test_ key" is not flagged. The message names the prefix,
//! never the value.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::secret::parse_reference;

/// `(key path, message)` for every string value that looks like a credential.
pub(crate) fn credentials(document: &Spanned<DeTable<'_>>) -> Vec<(String, String)> {
    let mut found = Vec::new();
    walk_table(document.get_ref(), "", &mut found);
    found
}

fn walk_table(table: &DeTable<'_>, at: &str, found: &mut Vec<(String, String)>) {
    for (key, value) in table.iter() {
        let path = if at.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{at}.{}", key.get_ref())
        };
        walk_value(value.get_ref(), path, found);
    }
}

fn walk_value(value: &DeValue<'_>, path: String, found: &mut Vec<(String, String)>) {
    match value {
        DeValue::String(text) => {
            if let Some(prefix) = credential_prefix(text) {
                found.push((
                    path,
                    format!(
                        "this looks like a real credential (it starts with `{prefix}`); never put secrets in wireline.toml: move the value to the environment or .env and write \"${{env:NAME}}\" here, then rotate the key if this file was ever shared"
                    ),
                ));
            }
        }
        DeValue::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                walk_value(item.get_ref(), format!("{path}[{index}]"), found);
            }
        }
        DeValue::Table(table) => walk_table(table, &path, found),
        _ => {}
    }
}

/// The credential prefix found in `text`, if any: a provider's key format (see
/// [`crate::leaks`]). References (`${env:...}`) are not values.
pub(crate) fn credential_prefix(text: &str) -> Option<String> {
    if parse_reference(text).is_some() {
        return None;
    }
    crate::leaks::find(text)
        .into_iter()
        .find(|leak| leak.known_format)
        .map(|leak| leak.prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_provider_key_shapes_and_not_prose() {
        let table = [
            ("sk_live_51HqT2eKZ8x9aBcDeFgH", Some("sk_live_")),
            ("sk_test_4eC39HqLyjWDarjtT1zdp7dc", Some("sk_test_")),
            ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", Some("whsec_")),
            (
                "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy",
                Some("xoxb-"),
            ),
            ("ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", Some("ghp_")),
            (
                "github_pat_11ABCDEFG0123456789_abcdefghijkl",
                Some("github_pat_"),
            ),
            ("shpat_0123456789abcdef0123456789abcdef", Some("shpat_")),
            (
                "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",
                Some("SG."),
            ),
            ("AKIAIOSFODNN7EXAMPLE", Some("AKIA")),
            (
                "https://hooks.example.com/?token=sk_live_abcdefghijkl",
                Some("sk_live_"),
            ),
            ("${env:STRIPE_SECRET_KEY}", None),
            ("use an sk_test_ key in staging", None),
            ("MSG.abcdefghijklmnopqrstuvwxyz", None),
            ("https://api.stripe.com", None),
            ("AKIA is the prefix of AWS keys", None),
        ];
        for (text, expected) in table {
            assert_eq!(credential_prefix(text).as_deref(), expected, "{text}");
        }
    }
}
