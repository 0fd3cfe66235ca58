//! Event type patterns: `stripe.payment_intent.*`, `*.failed`, `github.issues.opened`.
//!
//! `*` matches any run of characters (dots included); every other character matches itself.
//! That is all subscriptions and queries need, and it maps one-to-one onto SQL patterns, so
//! store backends can filter in the database.

use std::fmt;
use std::str::FromStr;

/// A pattern over event types; `*` is the only wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TypeGlob(String);

/// A pattern with characters an event type never has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid event type pattern \"{0}\": use letters, digits, '.', '_', '-', ':' and '*' (e.g. \"stripe.payment_intent.*\")"
)]
pub struct TypeGlobError(String);

impl TypeGlob {
    /// The pattern that matches every type.
    pub fn any() -> Self {
        Self("*".to_owned())
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The literal text before the first `*`: every match starts with it.
    pub fn literal_prefix(&self) -> &str {
        self.0.split('*').next().unwrap_or_default()
    }

    /// Whether `ty` matches the pattern.
    pub fn matches(&self, ty: &str) -> bool {
        let mut parts = self.0.split('*');
        let first = parts.next().unwrap_or_default();
        let Some(mut rest) = ty.strip_prefix(first) else {
            return false;
        };
        let parts: Vec<&str> = parts.collect();
        let Some((last, middle)) = parts.split_last() else {
            return rest.is_empty();
        };
        for part in middle {
            match rest.find(part) {
                Some(index) => rest = &rest[index + part.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }
}

impl FromStr for TypeGlob {
    type Err = TypeGlobError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let valid = !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '*'));
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(TypeGlobError(text.to_owned()))
        }
    }
}

impl fmt::Display for TypeGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for TypeGlob {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for TypeGlob {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for TypeGlob {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TypeGlob".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[A-Za-z0-9._:*-]+$",
            "description": "An event type pattern; `*` matches any run of characters (e.g. \"stripe.payment_intent.*\").",
            "examples": ["stripe.payment_intent.*", "*.failed"],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let table = [
            (
                "stripe.payment_intent.*",
                "stripe.payment_intent.succeeded",
                true,
            ),
            ("stripe.payment_intent.*", "stripe.payment_intent.", true),
            ("stripe.payment_intent.*", "stripe.charge.succeeded", false),
            ("*.failed", "stripe.invoice.payment.failed", true),
            ("*.failed", "stripe.invoice.failed.not", false),
            ("github.issues.opened", "github.issues.opened", true),
            ("github.issues.opened", "github.issues.opened2", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
            ("*", "anything.at.all", true),
        ];
        for (pattern, ty, expected) in table {
            let glob: TypeGlob = pattern.parse().expect("valid pattern");
            assert_eq!(glob.matches(ty), expected, "{pattern} vs {ty}");
        }
    }

    #[test]
    fn refuses_characters_types_never_have() {
        for bad in ["", "a b", "stripe.[x]", "a?b", "a%"] {
            assert!(bad.parse::<TypeGlob>().is_err(), "{bad}");
        }
    }
}
