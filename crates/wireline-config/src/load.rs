//! Loading `wireline.toml`: one pass that finds as many problems as it can, each located.
//!
//! Order matters for the quality of the errors: a TOML syntax error stops everything (nothing
//! below it can be trusted); the credential scan runs on the raw document, so a pasted key is
//! reported even when the file has other errors; then the typed model, the cross-reference
//! checks, and last the secret references, which are only resolved for an otherwise valid
//! file.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::model::Config;
use crate::secret::{self, Env};
use crate::{scan, validate};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The config cannot be used as it is.
    Error,
    /// The config works, but probably not as intended.
    Warning,
}

/// One problem in a config, located and with its fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// The file the problem is in (the config, or its `.env`).
    pub file: PathBuf,
    /// 1-based line; 0 when the problem is the file as a whole.
    pub line: usize,
    /// 1-based column (in characters); 0 when the problem is the file as a whole.
    pub column: usize,
    /// Where in the config, e.g. `services.stripe.auth.bearer`; empty for the file as a whole.
    pub key_path: String,
    /// The cause and the fix, one line, never a secret value.
    pub message: String,
    /// The advisor rule this finding is an instance of (`plain-http`, `poll-budget`, ...), so
    /// `wireline check` can report it by id; `None` for the config's other findings.
    pub rule: Option<&'static str>,
}

impl Finding {
    fn with_rule(mut self, rule: Option<&'static str>) -> Self {
        self.rule = rule;
        self
    }

    /// Whether the finding makes the config unusable.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, ": {severity}: ")?;
        if !self.key_path.is_empty() {
            write!(f, "{}: ", self.key_path)?;
        }
        f.write_str(&self.message)
    }
}

/// A valid config, its secrets resolved.
#[derive(Debug)]
pub struct Loaded {
    /// The model.
    pub config: Config,
    /// The file it came from.
    pub path: PathBuf,
    /// The folder relative paths (storage, `${file:...}`, `.env`) are resolved against.
    pub base_dir: PathBuf,
    /// Findings that do not stop the config from working.
    pub warnings: Vec<Finding>,
}

impl Loaded {
    /// The storage path, resolved against the config's folder.
    pub fn storage_path(&self) -> PathBuf {
        self.base_dir.join(&self.config.storage.path)
    }
}

/// Reads, validates and resolves the config at `path`. On failure, every finding (errors and
/// warnings) in file order.
pub fn load(path: &Path, env: &Env) -> Result<Loaded, Vec<Finding>> {
    load_in(path, env, None)
}

/// Like [`load`], in environment `environment` (`[environments.NAME]`): its overrides applied,
/// its secrets resolved (and no other environment's), its guards checked.
pub fn load_in(path: &Path, env: &Env, environment: Option<&str>) -> Result<Loaded, Vec<Finding>> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        vec![whole_file(
            path,
            format!(
                "cannot read the config ({error}); check the path, or create one with `wireline init`"
            ),
        )]
    })?;
    load_str_in(&text, path, env, environment)
}

/// Like [`load`], for a config already in memory; `path` names it in messages and anchors
/// relative paths.
pub fn load_str(text: &str, path: &Path, env: &Env) -> Result<Loaded, Vec<Finding>> {
    load_str_in(text, path, env, None)
}

/// Like [`load_in`], for a config already in memory.
pub fn load_str_in(
    text: &str,
    path: &Path,
    env: &Env,
    environment: Option<&str>,
) -> Result<Loaded, Vec<Finding>> {
    let base_dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let document = DeTable::parse(text).map_err(|error| {
        vec![located(
            path,
            text,
            error.span().unwrap_or(0..0),
            String::new(),
            Severity::Error,
            one_line(error.message()),
        )]
    })?;
    let locate = |key_path: String, severity: Severity, message: String| {
        let span = span_of(&document, &key_path);
        located(path, text, span, key_path, severity, message)
    };

    let mut findings: Vec<Finding> = scan::credentials(&document)
        .into_iter()
        .map(|(key_path, message)| locate(key_path, Severity::Error, message))
        .collect();

    let deserializer = toml::Deserializer::from(document.clone());
    let mut config: Config = match serde_path_to_error::deserialize(deserializer) {
        Ok(config) => config,
        Err(error) => {
            let key_path = render_path(error.path());
            let span = error
                .inner()
                .span()
                .unwrap_or_else(|| span_of(&document, &key_path));
            let message = with_fix(error.inner().message());
            // A pasted credential is already reported at this key, with the better message.
            if !findings.iter().any(|finding| finding.key_path == key_path) {
                // `min_tls` below 1.2 is refused while deserializing (MinTls); the finding is
                // the advisor's tls-floor rule.
                let rule = (key_path.ends_with(".min_tls") && message.contains("below the floor"))
                    .then_some("tls-floor");
                findings.push(
                    located(path, text, span, key_path, Severity::Error, message).with_rule(rule),
                );
            }
            return Err(sorted(findings));
        }
    };

    if let Err(message) = crate::keys::merge_sidecar(&mut config, &base_dir) {
        findings.push(whole_file(path, message));
    }
    findings.extend(validate::config(&config).into_iter().map(
        |(key_path, severity, message, rule)| locate(key_path, severity, message).with_rule(rule),
    ));
    if let Some(name) = environment
        && !config.environments.contains_key(name)
    {
        let declared: Vec<&str> = config.environments.keys().map(String::as_str).collect();
        findings.push(whole_file(
            path,
            format!(
                "--env {name}: no [environments.{name}] in the config; declared: {}",
                if declared.is_empty() {
                    "none".to_owned()
                } else {
                    declared.join(", ")
                }
            ),
        ));
    }
    if findings.iter().any(Finding::is_error) {
        return Err(sorted(findings));
    }

    let dotenv = read_dotenv(&base_dir.join(".env")).map_err(|finding| vec![finding])?;
    let production = environment
        .and_then(|name| config.environments.get(name))
        .map(|e| e.production);
    for (key_path, secret) in config.secrets_for(environment) {
        match secret::resolve(secret.source(), env, &dotenv, &base_dir) {
            Ok(value) => {
                if let (Some(production), Some(name)) = (production, environment)
                    && let Some(problem) = key_guard(&value, production, name)
                {
                    findings.push(locate(key_path, Severity::Error, problem));
                }
                secret.set_value(value);
            }
            Err(message) => findings.push(locate(key_path, Severity::Error, message)),
        }
    }
    if let Some(name) = environment {
        if production == Some(true) {
            for (service_name, service) in &config.services {
                let overridden = config.environments[name]
                    .services
                    .get(service_name)
                    .and_then(|o| o.base_url.as_deref());
                let (url, key_path) = match overridden {
                    Some(url) => (
                        url,
                        format!("environments.{name}.services.{service_name}.base_url"),
                    ),
                    None => (
                        service.base_url.as_str(),
                        format!("services.{service_name}.base_url"),
                    ),
                };
                if url.starts_with("http://") {
                    findings.push(locate(key_path, Severity::Error, format!("environment {name} is production: upstreams must be https://, not plain http")).with_rule(Some("plain-http")));
                }
            }
        }
        config.apply_environment(name);
    }
    for (key_path, message) in shared_agent_credentials(&config) {
        findings.push(
            locate(key_path, Severity::Warning, message)
                .with_rule(Some("shared-credential-agents")),
        );
    }
    for key_path in malformed_signing_secrets(&config) {
        findings.push(locate(
            key_path,
            Severity::Error,
            "this must be a Standard Webhooks secret: whsec_ followed by base64 (generate one with `echo whsec_$(openssl rand -base64 32)`, or copy it again from the provider)".to_owned(),
        ));
    }
    if findings.iter().any(Finding::is_error) {
        return Err(sorted(findings));
    }
    Ok(Loaded {
        config,
        path: path.to_path_buf(),
        base_dir,
        warnings: sorted(findings),
    })
}

/// Live keys outside production and test keys inside it, by the providers' key prefixes.
/// The message names the kind of key, never the key.
fn key_guard(value: &secrecy::SecretString, production: bool, environment: &str) -> Option<String> {
    use secrecy::ExposeSecret;
    const LIVE: [&str; 3] = ["sk_live_", "rk_live_", "pk_live_"];
    const TEST: [&str; 3] = ["sk_test_", "rk_test_", "pk_test_"];
    let value = value.expose_secret();
    if !production && LIVE.iter().any(|p| value.starts_with(p)) {
        return Some(format!(
            "this resolves to a live key, and environment {environment} is not production; use the provider's test key here, or mark a production environment with production = true"
        ));
    }
    if production && TEST.iter().any(|p| value.starts_with(p)) {
        return Some(format!(
            "this resolves to a test key, and environment {environment} is production; use the live key here"
        ));
    }
    None
}

fn sorted(mut findings: Vec<Finding>) -> Vec<Finding> {
    findings.sort_by_key(|finding| (finding.line, finding.column, finding.severity));
    findings
}

fn whole_file(path: &Path, message: String) -> Finding {
    Finding {
        severity: Severity::Error,
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        key_path: String::new(),
        message,
        rule: None,
    }
}

fn located(
    path: &Path,
    text: &str,
    span: Range<usize>,
    key_path: String,
    severity: Severity,
    message: String,
) -> Finding {
    let (line, column) = line_column(text, span.start);
    Finding {
        severity,
        file: path.to_path_buf(),
        line,
        column,
        key_path,
        message,
        rule: None,
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |index| index + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Serde's messages say what is wrong; this adds how to fix it.
fn with_fix(message: &str) -> String {
    let message = one_line(message);
    let fix = if message.starts_with("unknown field") {
        "; remove the key or fix its spelling (`wireline schema` lists every key)"
    } else if message.starts_with("missing field") {
        "; add it (docs/configuration.md describes every key)"
    } else if message.starts_with("invalid type") {
        "; write the value with the type expected (docs/configuration.md)"
    } else if message.starts_with("unknown variant") {
        "; use one of the values listed"
    } else {
        ""
    };
    format!("{message}{fix}")
}

fn read_dotenv(path: &Path) -> Result<BTreeMap<String, String>, Finding> {
    let mut vars = BTreeMap::new();
    let items = match dotenvy::from_path_iter(path) {
        Ok(items) => items,
        Err(dotenvy::Error::Io(error)) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(vars);
        }
        Err(error) => return Err(dotenv_error(path, &error)),
    };
    for item in items {
        let (name, value) = item.map_err(|error| dotenv_error(path, &error))?;
        vars.insert(name, value);
    }
    Ok(vars)
}

fn dotenv_error(path: &Path, error: &dotenvy::Error) -> Finding {
    // dotenvy's parse errors quote the offending line, which may hold a secret: say only where.
    let message = match error {
        dotenvy::Error::LineParse(_, index) => {
            format!("cannot parse .env near character {index}; write one NAME=value per line")
        }
        dotenvy::Error::Io(io) => {
            format!("cannot read .env ({io}); fix its permissions or remove it")
        }
        _ => "cannot read .env; write one NAME=value per line".to_owned(),
    };
    whole_file(path, message)
}

/// A key path rendered the way users write it: `services.stripe.auth.bearer`, `subscriptions[0].url`.
fn render_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

fn parse_path(key_path: &str) -> Vec<Step<'_>> {
    let mut steps = Vec::new();
    for part in key_path.split('.').filter(|part| !part.is_empty()) {
        let (key, indices) = part
            .split_once('[')
            .map_or((part, ""), |(k, rest)| (k, rest));
        if !key.is_empty() {
            steps.push(Step::Key(key));
        }
        for index in indices.split('[') {
            if let Ok(index) = index.trim_end_matches(']').parse() {
                steps.push(Step::Index(index));
            }
        }
    }
    steps
}

/// The span of the deepest part of `key_path` present in the document.
pub(crate) fn span_of(document: &Spanned<DeTable<'_>>, key_path: &str) -> Range<usize> {
    let mut span = document.span();
    let mut current: Option<&DeValue<'_>> = None;
    let mut table = Some(document.get_ref());
    for step in parse_path(key_path) {
        let next = match (step, table, current) {
            (Step::Key(key), Some(table), _) => table
                .iter()
                .find(|(name, _)| name.get_ref().as_ref() == key)
                .map(|(_, value)| value),
            (Step::Index(index), _, Some(DeValue::Array(items))) => items.get(index),
            _ => None,
        };
        let Some(next) = next else { break };
        span = next.span();
        current = Some(next.get_ref());
        table = match next.get_ref() {
            DeValue::Table(inner) => Some(inner),
            _ => None,
        };
    }
    span
}

/// Key paths of resolved secrets that sign Standard Webhooks (a `standard` webhook's secrets,
/// push subscriptions' secrets) but are not `whsec_` + base64.
/// Agents whose own upstream credentials for a service have the same value: each agent should
/// have its own key. Values are compared by a hash keyed with a per-process random salt, and
/// never shown.
fn shared_agent_credentials(config: &crate::model::Config) -> Vec<(String, String)> {
    use secrecy::ExposeSecret;
    use sha2::Digest;
    use std::hash::{BuildHasher, Hasher};
    let salt = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        .to_le_bytes();
    let keyed = |value: &str| -> [u8; 32] {
        let mut hasher = sha2::Sha256::new();
        hasher.update(salt);
        hasher.update(value.as_bytes());
        hasher.finalize().into()
    };
    let mut seen: BTreeMap<[u8; 32], String> = BTreeMap::new();
    let mut found = Vec::new();
    for (agent_name, agent) in &config.agents {
        for (service, auth) in &agent.credentials {
            let mut copy = auth.clone();
            let mut secrets = Vec::new();
            crate::model::collect_auth_secrets(&mut copy, &mut secrets);
            for secret in secrets {
                let Some(value) = secret.value() else {
                    continue;
                };
                let hash = keyed(value.expose_secret());
                match seen.get(&hash) {
                    Some(other) if other != agent_name => found.push((
                        format!("agents.{agent_name}.credentials.{service}"),
                        format!("agents {other} and {agent_name} use the same upstream credential value; give each agent its own key, so one can be revoked or rate-limited without the other"),
                    )),
                    _ => {
                        seen.insert(hash, agent_name.clone());
                    }
                }
            }
        }
    }
    found
}

fn malformed_signing_secrets(config: &crate::model::Config) -> Vec<String> {
    use base64::Engine;
    use secrecy::ExposeSecret;
    let bad = |secret: &crate::secret::Secret| {
        secret.value().is_some_and(|value| {
            let text = value.expose_secret();
            base64::engine::general_purpose::STANDARD
                .decode(text.strip_prefix("whsec_").unwrap_or(text))
                .ok()
                .is_none_or(|key| key.is_empty())
        })
    };
    let mut found = Vec::new();
    for (name, service) in &config.services {
        if let Some(webhook) = &service.webhook
            && webhook.scheme == crate::model::WebhookScheme::Standard
        {
            if bad(&webhook.secret) {
                found.push(format!("services.{name}.webhook.secret"));
            }
            if webhook.next_secret.as_ref().is_some_and(bad) {
                found.push(format!("services.{name}.webhook.next_secret"));
            }
        }
    }
    for (index, subscription) in config.subscriptions.iter().enumerate() {
        if subscription.url.is_some() && subscription.secret.as_ref().is_some_and(bad) {
            found.push(format!("subscriptions[{index}].secret"));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, text.rfind('=').unwrap_or(0)), (2, 4));
    }
}
