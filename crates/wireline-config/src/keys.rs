//! The credential inventory: every secret reference in the config, where it is used, by which
//! agents, in which environment, how old it is and when it must rotate (`[keys.NAME]`). Never
//! a value: only references (`${env:STRIPE_SECRET_KEY}`) and metadata.

use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::Date;

use crate::model::{Config, KeyMeta};
use crate::secret::SecretSource;

/// Where a credential stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// No `[keys.NAME]` entry: its age is unknown.
    Unknown,
    /// Within its rotation period.
    Ok,
    /// Past 80 % of its rotation period (`check` warns).
    DueSoon,
    /// Past its rotation date (`check --strict` fails).
    Overdue,
}

impl Status {
    /// For people.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unknown => "no metadata",
            Status::Ok => "ok",
            Status::DueSoon => "rotate soon",
            Status::Overdue => "OVERDUE",
        }
    }
}

/// One credential.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    /// The name metadata is kept under: the variable, or the file path.
    pub name: String,
    /// The reference as written.
    pub reference: String,
    /// Key paths where it is used.
    pub used_at: Vec<String>,
    /// Environments it belongs to (`base` for the base `[services]` / `[agents]`).
    pub environments: BTreeSet<String>,
    /// Agents whose calls use it (their own token, their own credential, or a service
    /// credential of a service they have scopes for).
    pub agents: BTreeSet<String>,
    /// Its `[keys.NAME]`.
    pub meta: Option<KeyMeta>,
    /// Days since `created`.
    pub age_days: Option<i64>,
    /// The day it must be rotated by.
    pub due: Option<Date>,
    /// Where it stands today.
    pub status: Status,
}

fn name_of(source: &SecretSource) -> String {
    match source {
        SecretSource::Env(name) => name.clone(),
        SecretSource::File(path) => path.display().to_string(),
    }
}

/// Every secret reference in every environment, with its key path.
fn references(config: &Config) -> Vec<(String, SecretSource)> {
    let mut copy = config.clone();
    let mut found: Vec<(String, SecretSource)> = copy
        .secrets_for(None)
        .into_iter()
        .map(|(path, secret)| (path, secret.source().clone()))
        .collect();
    for name in config.environments.keys() {
        let mut copy = config.clone();
        found.extend(
            copy.secrets_for(Some(name))
                .into_iter()
                .filter(|(path, _)| path.starts_with("environments."))
                .map(|(path, secret)| (path, secret.source().clone())),
        );
    }
    found
}

/// The agents that use the secret at `path`.
fn agents_using(config: &Config, path: &str) -> BTreeSet<String> {
    let parts: Vec<&str> = path.split('.').collect();
    match parts.as_slice() {
        ["agents", agent, ..] => BTreeSet::from([(*agent).to_owned()]),
        ["services", service, "auth", ..]
        | ["environments", _, "services", service, "auth", ..] => config
            .agents
            .iter()
            .filter(|(_, agent)| {
                agent
                    .scopes
                    .iter()
                    .any(|s| s.split(':').next() == Some(*service))
                    && !agent.credentials.contains_key(*service)
            })
            .map(|(name, _)| name.clone())
            .collect(),
        _ => BTreeSet::new(),
    }
}

/// The inventory as of `today`, sorted by name.
pub fn inventory(config: &Config, today: Date) -> Vec<KeyInfo> {
    let mut by_name: BTreeMap<String, KeyInfo> = BTreeMap::new();
    for (path, source) in references(config) {
        let name = name_of(&source);
        let environment = match path.split('.').collect::<Vec<_>>().as_slice() {
            ["environments", env, ..] => (*env).to_owned(),
            ["mock", ..] => "emulators".to_owned(),
            _ => "base".to_owned(),
        };
        let agents = agents_using(config, &path);
        let entry = by_name.entry(name.clone()).or_insert_with(|| KeyInfo {
            name: name.clone(),
            reference: source.to_string(),
            used_at: Vec::new(),
            environments: BTreeSet::new(),
            agents: BTreeSet::new(),
            meta: None,
            age_days: None,
            due: None,
            status: Status::Unknown,
        });
        entry.used_at.push(path);
        entry.environments.insert(environment);
        entry.agents.extend(agents);
    }
    for info in by_name.values_mut() {
        let Some(meta) = config.keys.get(&info.name) else {
            continue;
        };
        let period = i64::try_from(meta.rotate_every.get().as_secs() / 86_400).unwrap_or(i64::MAX);
        let age = (today - meta.created).get_days() as i64;
        let due = meta
            .created
            .checked_add(jiff::Span::new().days(period))
            .ok();
        info.age_days = Some(age);
        info.due = due;
        info.status = if age > period {
            Status::Overdue
        } else if age * 10 >= period * 8 {
            Status::DueSoon
        } else {
            Status::Ok
        };
        info.meta = Some(meta.clone());
    }
    by_name.into_values().collect()
}

/// The sidecar file of key metadata beside a config (`wireline.keys.toml`: the same
/// `[keys.NAME]` tables), for teams that keep rotation dates apart from the config.
pub const SIDECAR: &str = "wireline.keys.toml";

/// Merges the sidecar's `[keys.NAME]` into `config` (entries in the config itself win).
pub fn merge_sidecar(config: &mut Config, base_dir: &std::path::Path) -> Result<(), String> {
    let path = base_dir.join(SIDECAR);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sidecar {
        #[serde(default)]
        keys: BTreeMap<String, KeyMeta>,
    }
    let sidecar: Sidecar =
        toml::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))?;
    for (name, meta) in sidecar.keys {
        config.keys.entry(name).or_insert(meta);
    }
    Ok(())
}

/// `(key path, message)` for `[keys.NAME]` entries that name no reference in the config.
pub(crate) fn unused_metadata(config: &Config) -> Vec<(String, String)> {
    let names: BTreeSet<String> = references(config).iter().map(|(_, s)| name_of(s)).collect();
    config
        .keys
        .keys()
        .filter(|name| !names.contains(*name))
        .map(|name| {
            (
                format!("keys.{name}"),
                format!("no secret reference in this config is named {name}; use the variable of ${{env:NAME}} or the path of ${{file:PATH}}"),
            )
        })
        .collect()
}

/// What to do to rotate the credential `info` without downtime.
pub fn rotation_steps(config: &Config, info: &KeyInfo) -> Vec<String> {
    let new = format!("{}_NEXT", info.name);
    let first = info.used_at.first().cloned().unwrap_or_default();
    if let Some(agent) = first
        .strip_prefix("agents.")
        .and_then(|r| r.strip_suffix(".token"))
    {
        return vec![
            format!("issue a new token and put it in {new}"),
            format!(
                "add next_token = \"${{env:{new}}}\" to [agents.{agent}] and restart: both tokens are accepted"
            ),
            format!("switch agent {agent} to the new token"),
            format!(
                "move the new value into {} (token), remove next_token, restart: the old token stops working",
                info.name
            ),
            format!("set [keys.{}] created to today", info.name),
        ];
    }
    if let Some(service) = first
        .strip_prefix("services.")
        .and_then(|r| r.strip_suffix(".webhook.secret"))
    {
        let _ = config;
        return vec![
            format!("have the provider issue a new signing secret and put it in {new}"),
            format!(
                "add next_secret = \"${{env:{new}}}\" to [services.{service}.webhook] and restart: both secrets are accepted"
            ),
            "switch the provider's endpoint to the new secret".to_owned(),
            format!(
                "move the new value into {}, remove next_secret, restart",
                info.name
            ),
            format!("set [keys.{}] created to today", info.name),
        ];
    }
    vec![
        format!("create a new key at the provider (same permissions, nothing more) and put it in {}", info.name),
        "restart Wireline (or roll its instances): calls switch to the new key".to_owned(),
        "watch `wireline_direct_requests_total{outcome=\"4xx\"}` for 401s, then revoke the old key at the provider".to_owned(),
        format!("set [keys.{}] created to today", info.name),
    ]
}
