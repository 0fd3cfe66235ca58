//! Secret references: `${env:NAME}` and `${file:PATH}`, never the secret itself.
//!
//! A [`Secret`] is deserialized from its reference and resolved by [`crate::load`] into a
//! [`SecretString`], which prints as `[REDACTED]` in `Debug` and has no `Display`, so a secret
//! cannot reach a log line, an error or a metric by accident. A literal value where a secret
//! belongs is refused while deserializing, and the error never repeats the value.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable (or a line of the `.env` beside the config).
    Env(String),
    /// A file, relative to the config file's folder; one trailing newline is ignored.
    File(PathBuf),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(name) => write!(f, "${{env:{name}}}"),
            Self::File(path) => write!(f, "${{file:{}}}", path.display()),
        }
    }
}

/// A secret in the config: its reference, and after loading its value.
#[derive(Clone)]
pub struct Secret {
    source: SecretSource,
    value: Option<SecretString>,
}

impl Secret {
    /// Where the value comes from (safe to print: it names a variable or a path, not the value).
    pub fn source(&self) -> &SecretSource {
        &self.source
    }

    /// The value. `Some` for every secret of a config returned by [`crate::load`] without
    /// errors; `None` only before resolution.
    pub fn value(&self) -> Option<&SecretString> {
        self.value.as_ref()
    }

    pub(crate) fn set_value(&mut self, value: SecretString) {
        self.value = Some(value);
    }

    /// A secret to be resolved from `source`.
    pub(crate) fn from_source(source: SecretSource) -> Self {
        Self {
            source,
            value: None,
        }
    }

    /// A secret with a known value, for tests and for callers building configs in code.
    pub fn from_value(source: SecretSource, value: impl Into<String>) -> Self {
        Self {
            source,
            value: Some(SecretString::from(value.into())),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.source)
    }
}

/// Parses `${env:NAME}` / `${file:PATH}`; `None` for anything else.
pub(crate) fn parse_reference(text: &str) -> Option<SecretSource> {
    let inner = text.trim().strip_prefix("${")?.strip_suffix('}')?;
    let (kind, target) = inner.split_once(':')?;
    let target = target.trim();
    if target.is_empty() {
        return None;
    }
    match kind.trim() {
        "env" => Some(SecretSource::Env(target.to_owned())),
        "file" => Some(SecretSource::File(PathBuf::from(target))),
        _ => None,
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        // The message never quotes `text`: it may be the secret itself.
        parse_reference(&text)
            .map(|source| Secret {
                source,
                value: None,
            })
            .ok_or_else(|| {
                serde::de::Error::custom(
                    "a secret must be a reference, not a value; put the value in the environment or in .env beside the config, and write \"${env:NAME}\" (or \"${file:PATH}\")",
                )
            })
    }
}

impl JsonSchema for Secret {
    fn schema_name() -> Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^\\$\\{(env|file):[^}]+\\}$",
            "description": "A secret reference, never the secret: \"${env:NAME}\" (the environment, or .env beside the config) or \"${file:PATH}\" (relative to the config's folder).",
            "examples": ["${env:STRIPE_SECRET_KEY}", "${file:/run/secrets/stripe}"],
        })
    }
}

/// Where `${env:...}` references are looked up: the environment first, then the `.env` file.
pub struct Env {
    lookup: Box<Lookup>,
}

type Lookup = dyn Fn(&str) -> Option<String> + Send + Sync;

impl Env {
    /// The process environment.
    pub fn process() -> Self {
        Self {
            lookup: Box::new(|name| std::env::var(name).ok()),
        }
    }

    /// A fixed set of variables (tests, embedding).
    pub fn from_map(vars: BTreeMap<String, String>) -> Self {
        Self {
            lookup: Box::new(move |name| vars.get(name).cloned()),
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }
}

/// Why a reference did not resolve; the text says what to do.
pub(crate) fn resolve(
    source: &SecretSource,
    env: &Env,
    dotenv: &BTreeMap<String, String>,
    base_dir: &Path,
) -> Result<SecretString, String> {
    match source {
        SecretSource::Env(name) => env
            .get(name)
            .or_else(|| dotenv.get(name).cloned())
            .filter(|value| !value.is_empty())
            .map(SecretString::from)
            .ok_or_else(|| {
                format!(
                    "environment variable {name} is not set (or empty); export it, or add `{name}=...` to {}",
                    base_dir.join(".env").display()
                )
            }),
        SecretSource::File(path) => {
            let full = base_dir.join(path);
            match std::fs::read_to_string(&full) {
                Ok(text) => {
                    let value = text.strip_suffix('\n').unwrap_or(&text);
                    let value = value.strip_suffix('\r').unwrap_or(value);
                    if value.is_empty() {
                        Err(format!(
                            "secret file {} is empty; write the secret into it",
                            full.display()
                        ))
                    } else {
                        Ok(SecretString::from(value.to_owned()))
                    }
                }
                Err(error) => Err(format!(
                    "cannot read secret file {} ({error}); check the path and that wireline may read it",
                    full.display()
                )),
            }
        }
    }
}

impl serde::Serialize for Secret {
    /// Serializes the reference, never the value.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.source)
    }
}
