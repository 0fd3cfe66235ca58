//! The JSON Schema of `wireline.toml` and the Markdown reference generated from it.
//!
//! Both come from the model's types and doc comments (via `schemars`), so the editor's
//! completion, `docs/configuration.md` and the parser never disagree. A test fails when the
//! committed `docs/configuration.md` is stale.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::model::Config;

/// The JSON Schema (draft 2020-12) of `wireline.toml`.
pub fn json_schema() -> Value {
    schemars::schema_for!(Config).to_value()
}

/// `docs/configuration.md`: every table and key, with type, default and description.
pub fn reference_markdown() -> String {
    let schema = json_schema();
    let empty = Map::new();
    let defs = schema
        .get("$defs")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut out = String::from(
        "# wireline.toml reference\n\n\
         Generated from the config model by `wireline schema --format markdown`; do not edit by hand.\n\
         Every table rejects unknown keys. Durations, rates and sizes carry their unit (`\"30s\"`, `\"100/s\"`, `\"1MiB\"`).\n\
         Secrets are references (`\"${env:NAME}\"`, `\"${file:PATH}\"`), never values.\n\n\
         For completion and validation in editors, point Taplo / Even Better TOML at the schema: `wireline schema > wireline.schema.json`.\n",
    );
    let mut seen = BTreeSet::new();
    let mut queue = vec![("wireline.toml (top level)".to_owned(), schema.clone())];
    while let Some((heading, object)) = pop_front(&mut queue) {
        render_section(&heading, &object, defs, &mut out, &mut queue, &mut seen);
    }
    out
}

fn pop_front<T>(queue: &mut Vec<T>) -> Option<T> {
    if queue.is_empty() {
        None
    } else {
        Some(queue.remove(0))
    }
}

fn def_name(reference: &str) -> &str {
    reference.rsplit('/').next().unwrap_or(reference)
}

fn resolve<'a>(schema: &'a Value, defs: &'a Map<String, Value>) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => defs.get(def_name(reference)).unwrap_or(schema),
        None => schema,
    }
}

/// The schema without `null` in an `anyOf` (how `Option<T>` is written).
fn non_null(schema: &Value) -> &Value {
    if let Some(options) = schema.get("anyOf").and_then(Value::as_array) {
        let rest: Vec<&Value> = options
            .iter()
            .filter(|option| option.get("type").and_then(Value::as_str) != Some("null"))
            .collect();
        if let [only] = rest.as_slice() {
            return only;
        }
    }
    schema
}

fn type_name(schema: &Value, defs: &Map<String, Value>) -> String {
    let schema = non_null(schema);
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = def_name(reference);
        let target = defs.get(name).unwrap_or(&Value::Null);
        if let Some(values) = enum_values(target) {
            return values
                .iter()
                .map(|(value, _)| format!("`\"{value}\"`"))
                .collect::<Vec<_>>()
                .join(" \\| ");
        }
        if target.get("properties").is_some() {
            return "table (below)".to_owned();
        }
        return name.to_lowercase();
    }
    match schema.get("type") {
        Some(Value::String(ty)) if ty == "array" => {
            format!(
                "array of {}",
                schema
                    .get("items")
                    .map_or("any".to_owned(), |items| type_name(items, defs))
            )
        }
        Some(Value::String(ty)) if ty == "object" => match schema.get("additionalProperties") {
            Some(inner @ Value::Object(_)) => format!("tables by name: {}", type_name(inner, defs)),
            _ => "table".to_owned(),
        },
        Some(Value::String(ty)) => ty.clone(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .filter(|ty| *ty != "null")
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".to_owned(),
    }
}

/// For an enum of strings: each value with its description.
fn enum_values(schema: &Value) -> Option<Vec<(String, String)>> {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return Some(
            values
                .iter()
                .filter_map(Value::as_str)
                .map(|v| (v.to_owned(), String::new()))
                .collect(),
        );
    }
    let options = schema.get("oneOf").and_then(Value::as_array)?;
    let mut values = Vec::new();
    for option in options {
        let description = option
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(value) = option.get("const").and_then(Value::as_str) {
            values.push((value.to_owned(), description));
        } else if let Some(list) = option.get("enum").and_then(Value::as_array) {
            values.extend(
                list.iter()
                    .filter_map(Value::as_str)
                    .map(|v| (v.to_owned(), description.clone())),
            );
        } else {
            return None;
        }
    }
    Some(values)
}

fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn render_section(
    heading: &str,
    object: &Value,
    defs: &Map<String, Value>,
    out: &mut String,
    queue: &mut Vec<(String, Value)>,
    seen: &mut BTreeSet<String>,
) {
    out.push_str(&format!("\n## `{heading}`\n\n"));
    if let Some(description) = object.get("description").and_then(Value::as_str) {
        out.push_str(&one_line(description));
        out.push_str("\n\n");
    }
    let Some(properties) = object.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: BTreeSet<&str> = object
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.push_str("| key | type | default | description |\n| --- | --- | --- | --- |\n");
    let base = heading
        .trim_start_matches("[[")
        .trim_start_matches('[')
        .trim_end_matches(']');
    let base = if heading.starts_with("wireline.toml") {
        ""
    } else {
        base
    };
    for (key, property) in properties {
        let default = match property.get("default") {
            Some(Value::Null) | None if required.contains(key.as_str()) => "required".to_owned(),
            Some(Value::Null) | None => "—".to_owned(),
            Some(value) => format!("`{}`", one_line(&value.to_string())),
        };
        let description = property
            .get("description")
            .or_else(|| resolve(non_null(property), defs).get("description"))
            .and_then(Value::as_str)
            .map(one_line)
            .unwrap_or_default();
        out.push_str(&format!(
            "| `{key}` | {} | {default} | {description} |\n",
            type_name(property, defs)
        ));
        let path = if base.is_empty() {
            key.clone()
        } else {
            format!("{base}.{key}")
        };
        enqueue(&path, non_null(property), defs, queue, seen);
    }
}

/// Queues the table a property leads to (directly, as map values, or as array items).
fn enqueue(
    path: &str,
    property: &Value,
    defs: &Map<String, Value>,
    queue: &mut Vec<(String, Value)>,
    seen: &mut BTreeSet<String>,
) {
    let (heading, target) = if let Some(items) = property.get("items") {
        (format!("[[{path}]]"), items)
    } else if let Some(values @ Value::Object(_)) = property.get("additionalProperties") {
        let name = path.rsplit('.').next().unwrap_or(path);
        let placeholder = if name == "operations" { "OP" } else { "NAME" };
        (format!("[{path}.{placeholder}]"), values)
    } else {
        (format!("[{path}]"), property)
    };
    let Some(reference) = target.get("$ref").and_then(Value::as_str) else {
        return;
    };
    let name = def_name(reference);
    let Some(def) = defs.get(name) else { return };
    if def.get("properties").is_none() || !seen.insert(heading.clone()) {
        return;
    }
    queue.push((heading, def.clone()));
}
