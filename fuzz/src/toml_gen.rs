//! A generator of plausible `wireline.toml` documents, so the loader's fuzzing gets past the
//! TOML syntax and the first unknown key into the typed model, cross-reference validation and
//! secret resolution. Tables, keys and most values come from lists of what the model reads;
//! the fuzzer picks, repeats, mixes and sometimes replaces them with arbitrary text.

use std::fmt::Write;

use arbitrary::Arbitrary;

const NAMES: &[&str] = &[
    "stripe",
    "github",
    "assistant",
    "bot",
    "slack",
    "acme",
    "prod",
    "dev",
];

const TABLES: &[(&str, &[&str])] = &[
    ("server", &["listen", "body_limit", "shutdown_grace"]),
    ("server.tls", &["cert", "key"]),
    ("storage", &["path"]),
    (
        "agents.{}",
        &["token", "next_token", "scopes", "description"],
    ),
    (
        "agents.{}.credentials.{}",
        &["bearer", "header", "value", "query"],
    ),
    (
        "services.{}",
        &[
            "base_url",
            "description",
            "critical",
            "data",
            "volume",
            "reads",
            "writes",
            "webhooks",
            "timeout",
            "rate_limit",
            "agent_rate_limit",
            "headroom",
            "queue_wait",
            "max_response",
            "ca_file",
            "sensitive",
            "min_tls",
            "fallback",
            "stale_for",
        ],
    ),
    ("services.{}.auth", &["bearer", "header", "value", "query"]),
    ("services.{}.auth.basic", &["username", "password"]),
    (
        "services.{}.auth.oauth2",
        &[
            "token_url",
            "client_id",
            "client_secret",
            "scopes",
            "grant",
            "refresh_token",
        ],
    ),
    (
        "services.{}.retry",
        &[
            "attempts",
            "backoff",
            "max_wait",
            "deadline",
            "budget",
            "budget_floor",
        ],
    ),
    ("services.{}.circuit_breaker", &["failures", "open_for"]),
    ("services.{}.idempotency", &["ttl", "header"]),
    ("services.{}.cost", &["per_call", "monthly"]),
    ("services.{}.fallback_response", &["status", "body"]),
    (
        "services.{}.webhook",
        &["scheme", "secret", "next_secret", "tolerance", "id", "type"],
    ),
    (
        "services.{}.webhook.hmac",
        &[
            "header",
            "algorithm",
            "encoding",
            "prefix",
            "signed",
            "timestamp_header",
        ],
    ),
    (
        "services.{}.poll",
        &[
            "preset",
            "every",
            "reconcile",
            "path",
            "items",
            "id",
            "time",
            "type",
            "since_param",
            "since_format",
            "overlap",
            "next",
            "has_more",
            "max_pages",
            "id_cursor",
            "sources",
            "stall_alert",
            "miss_alert",
        ],
    ),
    ("services.{}.poll.query", &["limit", "per_page", "state"]),
    (
        "services.{}.operations.{}",
        &[
            "method",
            "path",
            "description",
            "idempotent",
            "scopes",
            "body",
        ],
    ),
    (
        "[subscriptions]",
        &[
            "name",
            "agent",
            "events",
            "url",
            "secret",
            "timeout",
            "start",
            "rate_limit",
            "schedule",
        ],
    ),
    ("[triggers]", &["name", "emit", "description"]),
    ("triggers.sequence", &["first", "then", "within"]),
    ("projections.{}", &["events", "description"]),
    ("environments.{}", &["production", "description", "mock"]),
    (
        "environments.{}.services.{}",
        &["base_url", "webhook_secret"],
    ),
    ("events", &["sensitive", "audit_flush"]),
    (
        "events.subjects",
        &["\"stripe.*\"", "\"github.issues.*\"", "\"*\""],
    ),
    ("events.retention.{}", &["keep", "payload"]),
    ("alerts", &["url", "slack"]),
    ("mock", &["listen", "services", "seed"]),
    (
        "mock.faults.{}",
        &[
            "error_rate",
            "error_codes",
            "latency",
            "timeout_rate",
            "retry_after",
            "fail_next",
        ],
    ),
    ("mock.stubs", &["acme"]),
    ("security", &["encryption_key", "key_id"]),
    (
        "security.anomaly",
        &[
            "enabled",
            "factor",
            "window",
            "baseline",
            "min_calls",
            "throttle",
        ],
    ),
    ("keys.{}", &["created", "rotate_every", "owner"]),
    (
        "plan",
        &["hourly_rate", "compute_monthly", "low_code_monthly"],
    ),
];

const STRINGS: &[&str] = &[
    "127.0.0.1:7480",
    "0.0.0.0:0",
    "[::1]:8080",
    "1MiB",
    "512KiB",
    "10MB",
    "0B",
    "30s",
    "250ms",
    "15m",
    "7d",
    "1h 30m",
    "0s",
    "100/s",
    "600/min",
    "1/day",
    "10/15m",
    "0/s",
    "https://api.stripe.com/v1",
    "https://api.github.com",
    "http://127.0.0.1:9/x",
    "https://example.com/hook",
    "ftp://x",
    "${env:WIRELINE_ASSISTANT_TOKEN}",
    "${env:STRIPE_SECRET_KEY}",
    "${env:STRIPE_TEST_KEY}",
    "${env:STRIPE_WEBHOOK_SECRET}",
    "${env:GITHUB_TOKEN}",
    "${env:SLACK_SIGNING_SECRET}",
    "${env:MISSING}",
    "${file:secret.txt}",
    "${env:}",
    "sk_live_abcdefghijklmnopqrstuvwx",
    "stripe",
    "github",
    "slack",
    "shopify",
    "standard",
    "hmac",
    "sha256",
    "sha1",
    "hex",
    "base64",
    "stripe_events",
    "github_events",
    "json_list",
    "unix",
    "rfc3339",
    "get",
    "post",
    "GET",
    "json",
    "form",
    "now",
    "beginning",
    "1.2",
    "1.3",
    "1.0",
    "events:read",
    "stripe:read",
    "stripe:*",
    "*",
    "stripe.payment_intent.*",
    "github.issues.opened",
    "bad glob!",
    "/v1/events",
    "/customers/{id}",
    "data",
    "id",
    "created",
    "type",
    "has_more",
    "header:X-Id",
    "json:/id",
    "client_credentials",
    "refresh_token",
    "X-Signature",
    "sha256=",
    "{timestamp}.{body}",
    "{body}",
    "{header:X-Id}:{body}",
    "wireline.db",
    "2025-01-01",
    "ops",
    "",
];

/// A generated document.
#[derive(Arbitrary, Debug)]
pub struct Doc {
    tables: Vec<Table>,
    /// `load_str_in`'s environment, by index into the names.
    pub environment: Option<u8>,
}

#[derive(Arbitrary, Debug)]
struct Table {
    kind: u8,
    names: (u8, u8),
    entries: Vec<(Key, Value)>,
}

#[derive(Arbitrary, Debug)]
enum Key {
    Known(u8),
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Value {
    Pool(u8),
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<u8>),
    Ints(Vec<i16>),
    Inline(Vec<(u8, u8)>),
}

impl Doc {
    /// The environment to load in, if any.
    pub fn environment(&self) -> Option<&'static str> {
        self.environment
            .map(|i| NAMES[usize::from(i) % NAMES.len()])
    }

    /// The document as TOML text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for table in &self.tables {
            let (header, keys) = TABLES[usize::from(table.kind) % TABLES.len()];
            let mut names = [table.names.0, table.names.1].into_iter();
            let mut header = header.to_owned();
            while let Some(at) = header.find("{}") {
                let name = NAMES[usize::from(names.next().unwrap_or(0)) % NAMES.len()];
                header.replace_range(at..at + 2, name);
            }
            // `[subscriptions]` in the list is an array of tables: `[[subscriptions]]`.
            let _ = writeln!(out, "[{header}]");
            for (key, value) in &table.entries {
                let key = match key {
                    Key::Known(i) => keys[usize::from(*i) % keys.len()].to_owned(),
                    Key::Other(text) => quote(text),
                };
                let _ = writeln!(out, "{key} = {}", value.render());
            }
        }
        out
    }
}

impl Value {
    fn render(&self) -> String {
        let pool = |i: u8| quote(STRINGS[usize::from(i) % STRINGS.len()]);
        match self {
            Self::Pool(i) => pool(*i),
            Self::Text(text) => quote(text),
            Self::Int(n) => n.to_string(),
            Self::Float(f) if f.is_finite() => format!("{f:?}"),
            Self::Float(f) if f.is_nan() => "nan".to_owned(),
            Self::Float(f) => if *f > 0.0 { "inf" } else { "-inf" }.to_owned(),
            Self::Bool(b) => b.to_string(),
            Self::List(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(|i| pool(*i))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::Ints(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(i16::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::Inline(pairs) => format!(
                "{{ {} }}",
                pairs
                    .iter()
                    .map(|(k, v)| format!(
                        "{} = {}",
                        quote(STRINGS[usize::from(*k) % STRINGS.len()]),
                        pool(*v)
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
