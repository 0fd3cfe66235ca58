//! Reading fields out of providers' JSON: one definition of a dotted path and of a field's
//! text, shared by webhook ingest, polling and subject extraction.

use serde_json::Value;

/// The value at a dotted path (`data.object.customer`; numeric segments index lists; `""` is
/// the value itself).
pub fn at<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(value);
    }
    path.split('.')
        .try_fold(value, |value, segment| match value {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
}

/// A field's text, as an id, type or subject: a non-empty string, or a number.
pub fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn dotted_paths_and_field_text() {
        let value =
            json!({"data": {"object": {"customer": "cus_1", "n": 7}}, "items": [{"id": ""}]});
        assert_eq!(
            super::at(&value, "data.object.customer")
                .and_then(super::text)
                .as_deref(),
            Some("cus_1")
        );
        assert_eq!(
            super::at(&value, "data.object.n")
                .and_then(super::text)
                .as_deref(),
            Some("7")
        );
        assert_eq!(
            super::at(&value, "items.0.id").and_then(super::text),
            None,
            "empty is no text"
        );
        assert_eq!(super::at(&value, "data.missing"), None);
        assert_eq!(super::at(&value, ""), Some(&value));
    }
}
