//! Named operations: a path template and JSON parameters become one HTTP request.
//!
//! `{name}` placeholders take parameters of the same name (strings, numbers, booleans),
//! encoded as one path segment. The other parameters go in the query for GET, HEAD and DELETE,
//! and in the body otherwise: JSON, or a form flattened the way Stripe reads it
//! (`metadata[order]=7`, `items[0][price]=p_1`).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};
use wireline_config::model::{BodyFormat, Method, Operation};

/// Characters kept as they are in a path segment or form value (RFC 3986 unreserved).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A rendered operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The path below `base_url`, without a leading `/`, percent-encoded.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The body and its content type, if any.
    pub body: Option<(&'static str, Vec<u8>)>,
}

/// The HTTP method of an operation.
pub fn http_method(method: Method) -> http::Method {
    match method {
        Method::Get => http::Method::GET,
        Method::Head => http::Method::HEAD,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Patch => http::Method::PATCH,
        Method::Delete => http::Method::DELETE,
    }
}

/// Renders `operation` with `params`; the error names the parameter and what is wrong.
pub fn render(operation: &Operation, params: &Map<String, Value>) -> Result<Rendered, String> {
    let mut rest = params.clone();
    let mut path = String::new();
    let mut template = operation.path.trim_start_matches('/');
    while let Some(open) = template.find('{') {
        path.push_str(&template[..open]);
        let close = template[open..]
            .find('}')
            .map(|i| open + i)
            .ok_or("the operation's path has an unclosed {")?;
        let name = &template[open + 1..close];
        let value = rest
            .remove(name)
            .ok_or_else(|| format!("missing parameter `{name}` (it is part of the path)"))?;
        let text = scalar(&value)
            .ok_or_else(|| format!("parameter `{name}` must be a string, number or boolean"))?;
        if text.is_empty() || text == "." || text == ".." {
            return Err(format!("parameter `{name}` must not be empty, '.' or '..'"));
        }
        path.push_str(&utf8_percent_encode(&text, COMPONENT).to_string());
        template = &template[close + 1..];
    }
    path.push_str(template);
    let in_query = matches!(
        operation.method,
        Method::Get | Method::Head | Method::Delete
    );
    let mut rendered = Rendered {
        path,
        query: None,
        body: None,
    };
    if rest.is_empty() {
        return Ok(rendered);
    }
    if in_query || operation.body == BodyFormat::Form {
        let mut pairs = Vec::new();
        for (key, value) in &rest {
            flatten(key, value, &mut pairs);
        }
        let encoded = pairs
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    utf8_percent_encode(k, COMPONENT),
                    utf8_percent_encode(v, COMPONENT)
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        if in_query {
            rendered.query = Some(encoded);
        } else {
            rendered.body = Some(("application/x-www-form-urlencoded", encoded.into_bytes()));
        }
    } else {
        let body = serde_json::to_vec(&Value::Object(rest)).map_err(|error| error.to_string())?;
        rendered.body = Some(("application/json", body));
    }
    Ok(rendered)
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn flatten(key: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (inner, value) in map {
                flatten(&format!("{key}[{inner}]"), value, out);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                flatten(&format!("{key}[{index}]"), item, out);
            }
        }
        Value::Null => out.push((key.to_owned(), String::new())),
        other => out.push((key.to_owned(), scalar(other).unwrap_or_default())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operation(method: Method, path: &str, body: BodyFormat) -> Operation {
        Operation {
            method,
            path: path.into(),
            description: None,
            idempotent: None,
            scopes: Vec::new(),
            body,
        }
    }

    fn params(json: Value) -> Map<String, Value> {
        json.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn renders_paths_queries_and_bodies() {
        let get = operation(Method::Get, "/v1/customers/{id}", BodyFormat::Json);
        let rendered = render(
            &get,
            &params(serde_json::json!({"id": "cus 1/2", "expand": ["sources"]})),
        )
        .expect("renders");
        assert_eq!(rendered.path, "v1/customers/cus%201%2F2");
        assert_eq!(rendered.query.as_deref(), Some("expand%5B0%5D=sources"));
        assert_eq!(rendered.body, None);

        let form = operation(Method::Post, "/v1/refunds", BodyFormat::Form);
        let rendered = render(&form, &params(serde_json::json!({"payment_intent": "pi_1", "amount": 500, "metadata": {"order": "7"}}))).expect("renders");
        assert_eq!(
            rendered.body,
            Some((
                "application/x-www-form-urlencoded",
                b"amount=500&metadata%5Border%5D=7&payment_intent=pi_1".to_vec()
            ))
        );

        let json = operation(Method::Post, "/chat.postMessage", BodyFormat::Json);
        let rendered = render(
            &json,
            &params(serde_json::json!({"channel": "C1", "text": "hi"})),
        )
        .expect("renders");
        assert_eq!(
            rendered.body,
            Some((
                "application/json",
                br#"{"channel":"C1","text":"hi"}"#.to_vec()
            ))
        );
    }

    #[test]
    fn bad_params_are_named() {
        let get = operation(Method::Get, "/v1/customers/{id}", BodyFormat::Json);
        let check = |json: Value, fragment: &str| {
            let error = render(&get, &params(json)).expect_err("refused");
            assert!(error.contains(fragment), "{error}");
        };
        check(serde_json::json!({}), "missing parameter `id`");
        check(
            serde_json::json!({"id": {"a": 1}}),
            "parameter `id` must be a string",
        );
        check(
            serde_json::json!({"id": ".."}),
            "parameter `id` must not be empty",
        );
    }
}
