//! Stub services: any HTTP service described by stub files, in WireMock's JSON mapping format
//! (the common subset; the same keys in TOML work too), so teams bring the stubs they have.
//!
//! Supported: `request` with `method` (or `ANY`), `url` / `urlPath` / `urlPattern` /
//! `urlPathPattern`, `queryParameters` and `headers` with `equalTo` / `contains` / `matches` /
//! `doesNotMatch` / `absent` (and `caseInsensitive`), `bodyPatterns` with `equalTo`,
//! `contains`, `matches`, `equalToJson` (`ignoreExtraElements`) and `matchesJsonPath`
//! (existence of a `$.a.b[0]` path); `response` with `status`, `headers`, `body` / `jsonBody`
//! / `base64Body` / `bodyFileName` (under `__files`), `fixedDelayMilliseconds`, and
//! `transformers: ["response-template"]` (`{{request.path}}`, `{{request.pathSegments.[N]}}`,
//! `{{request.query.NAME}}`, `{{request.headers.NAME}}`, `{{request.method}}`,
//! `{{request.body}}`, `{{jsonPath request.body '$.a'}}`, `{{randomValue type='UUID'}}`,
//! `{{now}}`); `priority` (lower first); scenarios (`scenarioName`,
//! `requiredScenarioState`, `newScenarioState`, starting in `Started`). Anything else in a
//! mapping is an error naming the file and the key, not silently ignored.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use crate::{Shared, lock};

/// A WireMock mapping.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mapping {
    /// WireMock's id (kept for messages).
    #[serde(default)]
    pub id: Option<String>,
    /// WireMock's uuid (kept for messages).
    #[serde(default)]
    pub uuid: Option<String>,
    /// A name for messages.
    #[serde(default)]
    pub name: Option<String>,
    /// Lower first (WireMock's default is 5).
    #[serde(default)]
    pub priority: Option<i64>,
    /// What to match.
    pub request: RequestPattern,
    /// What to answer.
    pub response: ResponseDefinition,
    /// The scenario the mapping takes part in.
    #[serde(default)]
    pub scenario_name: Option<String>,
    /// Match only in this state of the scenario.
    #[serde(default)]
    pub required_scenario_state: Option<String>,
    /// Move the scenario to this state after matching.
    #[serde(default)]
    pub new_scenario_state: Option<String>,
    /// Kept by WireMock exports; not used.
    #[serde(default)]
    pub persistent: Option<bool>,
    /// Kept by WireMock exports; not used.
    #[serde(default)]
    pub metadata: Option<Value>,
}

/// `request`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestPattern {
    /// `GET`, `POST`, ... or `ANY`.
    #[serde(default)]
    pub method: Option<String>,
    /// The exact path and query.
    #[serde(default)]
    pub url: Option<String>,
    /// The exact path.
    #[serde(default)]
    pub url_path: Option<String>,
    /// A regex over path and query.
    #[serde(default)]
    pub url_pattern: Option<String>,
    /// A regex over the path.
    #[serde(default)]
    pub url_path_pattern: Option<String>,
    /// Query parameter matchers.
    #[serde(default)]
    pub query_parameters: BTreeMap<String, Matcher>,
    /// Header matchers.
    #[serde(default)]
    pub headers: BTreeMap<String, Matcher>,
    /// Body matchers, all of which must match.
    #[serde(default)]
    pub body_patterns: Vec<BodyPattern>,
}

/// A value matcher.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Matcher {
    /// Equal.
    #[serde(default)]
    pub equal_to: Option<String>,
    /// Contains.
    #[serde(default)]
    pub contains: Option<String>,
    /// Matches the regex entirely.
    #[serde(default)]
    pub matches: Option<String>,
    /// Does not match the regex.
    #[serde(default)]
    pub does_not_match: Option<String>,
    /// Absent (true) or present (false).
    #[serde(default)]
    pub absent: Option<bool>,
    /// Compare `equalTo` ignoring case.
    #[serde(default)]
    pub case_insensitive: Option<bool>,
}

/// A body matcher.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BodyPattern {
    /// The body equals.
    #[serde(default)]
    pub equal_to: Option<String>,
    /// The body contains.
    #[serde(default)]
    pub contains: Option<String>,
    /// The body matches the regex.
    #[serde(default)]
    pub matches: Option<String>,
    /// The body is this JSON.
    #[serde(default)]
    pub equal_to_json: Option<Value>,
    /// With `equalToJson`: extra object keys in the body are fine.
    #[serde(default)]
    pub ignore_extra_elements: Option<bool>,
    /// With `equalToJson`: array order does not matter.
    #[serde(default)]
    pub ignore_array_order: Option<bool>,
    /// A JSON path that must exist.
    #[serde(default)]
    pub matches_json_path: Option<String>,
}

/// `response`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResponseDefinition {
    /// Default 200.
    #[serde(default)]
    pub status: Option<u16>,
    /// WireMock's status message (ignored: HTTP/2 has none).
    #[serde(default)]
    pub status_message: Option<String>,
    /// Response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, Value>,
    /// A text body.
    #[serde(default)]
    pub body: Option<String>,
    /// A JSON body.
    #[serde(default)]
    pub json_body: Option<Value>,
    /// A binary body, base64.
    #[serde(default)]
    pub base64_body: Option<String>,
    /// A file under `__files`.
    #[serde(default)]
    pub body_file_name: Option<String>,
    /// A delay before answering.
    #[serde(default)]
    pub fixed_delay_milliseconds: Option<u64>,
    /// `["response-template"]` renders the body and headers as templates.
    #[serde(default)]
    pub transformers: Vec<String>,
}

/// A mapping with what it needs at match time.
#[derive(Debug, Clone)]
pub struct Stub {
    mapping: Mapping,
    /// The file it came from, for messages.
    origin: String,
    /// The body of `bodyFileName`, read at load.
    file_body: Option<Vec<u8>>,
    url_regex: Option<regex::Regex>,
    /// Every other regex of the mapping, compiled once at load (by pattern).
    regexes: HashMap<String, regex::Regex>,
}

impl Stub {
    /// Whether `value` matches the (load-time compiled) `pattern`.
    fn is_match(&self, pattern: &str, value: &str) -> bool {
        self.regexes.get(pattern).is_some_and(|r| r.is_match(value))
    }
}

fn compile(pattern: &str, origin: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| format!("{origin}: bad regex {pattern:?}: {e}"))
}

/// Reads the stubs at `path`: a file, or every `.json` / `.toml` file below a folder
/// (`__files` excepted). Errors name the file and the problem.
pub fn load(path: &Path) -> Result<Vec<Stub>, String> {
    let mut files = Vec::new();
    collect(path, &mut files)?;
    if files.is_empty() {
        return Err(format!(
            "{}: no .json or .toml stub files there",
            path.display()
        ));
    }
    files.sort();
    let root = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let mut stubs = Vec::new();
    for file in files {
        let origin = file.display().to_string();
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{origin}: cannot read ({e})"))?;
        let value: Value = if file.extension().is_some_and(|e| e == "toml") {
            toml::from_str::<toml::Value>(&text)
                .map_err(|e| e.to_string())
                .and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string()))
                .map_err(|e| format!("{origin}: not TOML ({e})"))?
        } else {
            serde_json::from_str(&text).map_err(|e| format!("{origin}: not JSON ({e})"))?
        };
        // A WireMock export (`{"mappings": [...]}`), a list of mappings, or one mapping.
        let items = match value {
            Value::Object(mut map) if map.contains_key("mappings") => {
                match map.remove("mappings") {
                    Some(Value::Array(items)) => items,
                    _ => return Err(format!("{origin}: `mappings` must be a list")),
                }
            }
            Value::Array(items) => items,
            one => vec![one],
        };
        let mut mappings = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            mappings.push(serde_json::from_value::<Mapping>(item).map_err(|e| {
                format!(
                    "{origin}: mapping {}: {e} (Wireline reads the common subset of WireMock's format)",
                    index + 1
                )
            })?);
        }
        for (index, mapping) in mappings.into_iter().enumerate() {
            let origin = format!(
                "{origin} (mapping {})",
                mapping
                    .name
                    .clone()
                    .or(mapping.id.clone())
                    .unwrap_or_else(|| (index + 1).to_string())
            );
            // Parse each one strictly once more, for an error naming the mapping.
            let url_regex = match (
                &mapping.request.url_pattern,
                &mapping.request.url_path_pattern,
            ) {
                (Some(p), _) | (None, Some(p)) => Some(compile(p, &origin)?),
                _ => None,
            };
            let mut regexes = HashMap::new();
            let patterns = mapping
                .request
                .query_parameters
                .values()
                .chain(mapping.request.headers.values())
                .flat_map(|m| [&m.matches, &m.does_not_match])
                .chain(mapping.request.body_patterns.iter().map(|b| &b.matches))
                .flatten();
            for pattern in patterns {
                regexes.insert(pattern.clone(), compile(pattern, &origin)?);
            }
            let file_body =
                match &mapping.response.body_file_name {
                    Some(name) => {
                        let candidates = [
                            root.join("__files").join(name),
                            root.join("..").join("__files").join(name),
                            root.join(name),
                        ];
                        let found = candidates.iter().find(|c| c.is_file()).ok_or_else(|| {
                            format!("{origin}: bodyFileName {name:?} not found under __files")
                        })?;
                        Some(std::fs::read(found).map_err(|e| {
                            format!("{origin}: cannot read {} ({e})", found.display())
                        })?)
                    }
                    None => None,
                };
            stubs.push(Stub {
                mapping,
                origin,
                file_body,
                url_regex,
                regexes,
            });
        }
    }
    // Lower priority first; among equals, the later file wins (as in WireMock).
    stubs.reverse();
    stubs.sort_by_key(|s| s.mapping.priority.unwrap_or(5));
    Ok(stubs)
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), String> {
    if path.is_file() {
        files.push(path.to_path_buf());
        return Ok(());
    }
    let entries = std::fs::read_dir(path).map_err(|e| {
        format!(
            "{}: cannot read the stubs ({e}); give a file or a folder of .json / .toml mappings",
            path.display()
        )
    })?;
    for entry in entries.flatten() {
        let child = entry.path();
        if child.is_dir() {
            if child.file_name().is_some_and(|n| n != "__files") {
                collect(&child, files)?;
            }
        } else if child
            .extension()
            .is_some_and(|e| e == "json" || e == "toml")
        {
            files.push(child);
        }
    }
    Ok(())
}

/// Scenario states of every stub service, by `service/scenario`.
#[derive(Default)]
pub(crate) struct Scenarios(Mutex<BTreeMap<String, String>>);

impl Scenarios {
    pub(crate) fn reset(&self) {
        lock(&self.0).clear();
    }
}

pub(crate) fn router(name: &str, stubs: Vec<Stub>, shared: Arc<Shared>) -> Router {
    let stubs = Arc::new(stubs);
    let name: Arc<str> = Arc::from(name);
    Router::new()
        .fallback(move |State(shared): State<Arc<Shared>>, request: Request| {
            let (stubs, name) = (Arc::clone(&stubs), Arc::clone(&name));
            async move { answer(&name, &stubs, &shared, request).await }
        })
        .with_state(shared)
}

fn matches(stub: &Stub, matcher: &Matcher, value: Option<&str>) -> bool {
    if let Some(absent) = matcher.absent {
        return absent == value.is_none();
    }
    let Some(value) = value else { return false };
    let case = matcher.case_insensitive.unwrap_or(false);
    matcher.equal_to.as_ref().is_none_or(|e| {
        if case {
            e.eq_ignore_ascii_case(value)
        } else {
            e == value
        }
    }) && matcher
        .contains
        .as_ref()
        .is_none_or(|c| value.contains(c.as_str()))
        && matcher
            .matches
            .as_ref()
            .is_none_or(|p| stub.is_match(p, value))
        && matcher
            .does_not_match
            .as_ref()
            .is_none_or(|p| !stub.is_match(p, value))
}

/// `$.a.b[0].c` as a dotted path `a.b.0.c`.
fn json_path(path: &str) -> String {
    path.trim_start_matches('$')
        .trim_start_matches('.')
        .replace('[', ".")
        .replace([']', '\''], "")
}

/// `expected` within `actual`: equal, or with `extra` allowed, a subset of object keys.
fn json_equal(expected: &Value, actual: &Value, extra: bool, any_order: bool) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            (extra || e.len() == a.len())
                && e.iter().all(|(k, v)| {
                    a.get(k)
                        .is_some_and(|av| json_equal(v, av, extra, any_order))
                })
        }
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len()
                && if any_order {
                    e.iter()
                        .all(|ev| a.iter().any(|av| json_equal(ev, av, extra, any_order)))
                } else {
                    e.iter()
                        .zip(a)
                        .all(|(ev, av)| json_equal(ev, av, extra, any_order))
                }
        }
        _ => expected == actual,
    }
}

struct Incoming<'a> {
    method: &'a str,
    path: &'a str,
    path_and_query: &'a str,
    query: BTreeMap<String, String>,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

fn request_matches(stub: &Stub, request: &Incoming<'_>) -> bool {
    let pattern = &stub.mapping.request;
    let method_ok = pattern
        .method
        .as_deref()
        .is_none_or(|m| m.eq_ignore_ascii_case("ANY") || m.eq_ignore_ascii_case(request.method));
    let url_ok = pattern
        .url
        .as_deref()
        .is_none_or(|u| u == request.path_and_query)
        && pattern
            .url_path
            .as_deref()
            .is_none_or(|u| u == request.path)
        && stub.url_regex.as_ref().is_none_or(|r| {
            if pattern.url_pattern.is_some() {
                r.is_match(request.path_and_query)
            } else {
                r.is_match(request.path)
            }
        });
    if !(method_ok && url_ok) {
        return false;
    }
    let query_ok = pattern
        .query_parameters
        .iter()
        .all(|(name, m)| matches(stub, m, request.query.get(name).map(String::as_str)));
    let headers_ok = pattern.headers.iter().all(|(name, m)| {
        matches(
            stub,
            m,
            request
                .headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok()),
        )
    });
    let text = std::str::from_utf8(request.body).unwrap_or_default();
    let json: Option<Value> = serde_json::from_slice(request.body).ok();
    let body_ok = pattern.body_patterns.iter().all(|b| {
        b.equal_to.as_ref().is_none_or(|e| e == text)
            && b.contains
                .as_ref()
                .is_none_or(|c| text.contains(c.as_str()))
            && b.matches.as_ref().is_none_or(|p| stub.is_match(p, text))
            && b.equal_to_json.as_ref().is_none_or(|e| {
                json.as_ref().is_some_and(|a| {
                    json_equal(
                        e,
                        a,
                        b.ignore_extra_elements.unwrap_or(false),
                        b.ignore_array_order.unwrap_or(false),
                    )
                })
            })
            && b.matches_json_path.as_ref().is_none_or(|p| {
                json.as_ref()
                    .is_some_and(|a| wireline_core::json::at(a, &json_path(p)).is_some())
            })
    });
    query_ok && headers_ok && body_ok
}

/// Renders WireMock's response templates (the common helpers).
fn render(template: &str, request: &Incoming<'_>, shared: &Shared) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let expression = rest[start + 2..start + end].trim();
        out.push_str(&evaluate(expression, request, shared));
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

fn evaluate(expression: &str, request: &Incoming<'_>, shared: &Shared) -> String {
    let segments: Vec<&str> = request.path.split('/').filter(|s| !s.is_empty()).collect();
    if let Some(rest) = expression.strip_prefix("jsonPath request.body ") {
        let path = rest.trim().trim_matches('\'').trim_matches('"');
        let body: Value = serde_json::from_slice(request.body).unwrap_or(Value::Null);
        return match wireline_core::json::at(&body, &json_path(path)) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
    }
    if expression.starts_with("randomValue") {
        if expression.contains("UUID") {
            let hex = shared
                .id("", 32)
                .to_lowercase()
                .chars()
                .map(|c| if c.is_ascii_hexdigit() { c } else { 'a' })
                .collect::<String>();
            return format!(
                "{}-{}-4{}-a{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[13..16],
                &hex[17..20],
                &hex[20..32]
            );
        }
        let length = expression
            .split("length=")
            .nth(1)
            .and_then(|l| l.split_whitespace().next())
            .and_then(|l| l.parse().ok())
            .unwrap_or(16);
        return shared.id("", length);
    }
    match expression {
        "now" => return jiff::Timestamp::now().to_string(),
        "request.path" => return request.path.to_owned(),
        "request.url" => return request.path_and_query.to_owned(),
        "request.method" => return request.method.to_owned(),
        "request.body" => return String::from_utf8_lossy(request.body).into_owned(),
        _ => {}
    }
    for prefix in ["request.pathSegments.[", "request.path.["] {
        if let Some(index) = expression
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(']'))
            .and_then(|i| i.parse::<usize>().ok())
        {
            return segments
                .get(index)
                .map(|s| (*s).to_owned())
                .unwrap_or_default();
        }
    }
    if let Some(name) = expression.strip_prefix("request.query.") {
        return request.query.get(name).cloned().unwrap_or_default();
    }
    if let Some(name) = expression.strip_prefix("request.headers.") {
        return request
            .headers
            .get(name.trim_matches(|c| c == '[' || c == ']'))
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
    }
    String::new()
}

async fn answer(service: &str, stubs: &[Stub], shared: &Shared, request: Request) -> Response {
    let scenarios = &shared.scenarios;
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 16 << 20)
        .await
        .unwrap_or_default();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let incoming = Incoming {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        path_and_query: &path_and_query,
        query: parts
            .uri
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default(),
        headers: &parts.headers,
        body: &body,
    };
    let chosen = {
        let mut states = lock(&scenarios.0);
        let found = stubs.iter().find(|stub| {
            let state_ok = match (
                &stub.mapping.scenario_name,
                &stub.mapping.required_scenario_state,
            ) {
                (Some(name), Some(required)) => {
                    states
                        .get(&format!("{service}/{name}"))
                        .map_or("Started", String::as_str)
                        == required
                }
                _ => true,
            };
            state_ok && request_matches(stub, &incoming)
        });
        if let Some(stub) = found
            && let (Some(name), Some(next)) = (
                &stub.mapping.scenario_name,
                &stub.mapping.new_scenario_state,
            )
        {
            states.insert(format!("{service}/{name}"), next.clone());
        }
        found.cloned()
    };
    let Some(stub) = chosen else {
        return (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({"error": format!("no stub matched {} {}", incoming.method, incoming.path_and_query), "stubs": stubs.len()}))).into_response();
    };
    let definition = &stub.mapping.response;
    if let Some(delay) = definition.fixed_delay_milliseconds {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let templated = definition
        .transformers
        .iter()
        .any(|t| t == "response-template");
    let text = |raw: &str| {
        if templated {
            render(raw, &incoming, shared)
        } else {
            raw.to_owned()
        }
    };
    let (body, json) = if let Some(json) = &definition.json_body {
        (text(&json.to_string()).into_bytes(), true)
    } else if let Some(body) = &definition.body {
        (text(body).into_bytes(), false)
    } else if let Some(encoded) = &definition.base64_body {
        use base64::Engine;
        (
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap_or_default(),
            false,
        )
    } else if let Some(file) = &stub.file_body {
        (
            if templated {
                render(&String::from_utf8_lossy(file), &incoming, shared).into_bytes()
            } else {
                file.clone()
            },
            false,
        )
    } else {
        (Vec::new(), false)
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() =
        StatusCode::from_u16(definition.status.unwrap_or(200)).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    if json {
        headers.insert("content-type", HeaderValue::from_static("application/json"));
    }
    for (name, value) in &definition.headers {
        let values: Vec<String> = match value {
            Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect(),
            Value::String(s) => vec![s.clone()],
            other => vec![other.to_string()],
        };
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            headers.remove(&name);
            for value in values {
                if let Ok(value) = HeaderValue::from_str(&text(&value)) {
                    headers.append(name.clone(), value);
                }
            }
        }
    }
    tracing::debug!(stub = %stub.origin, status = %response.status(), "stub answered");
    response
}
