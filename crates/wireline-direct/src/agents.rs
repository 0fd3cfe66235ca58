//! Agent identity and scopes.
//!
//! Agents send `Authorization: Bearer <token>`. Tokens are compared as SHA-256 digests in
//! constant time (`subtle`), against every agent, so neither the content nor the length of a
//! token, nor which agent matched, shows in the timing. Scopes: `SERVICE:read` (GET, HEAD,
//! OPTIONS), `SERVICE:write` (other methods), `SERVICE:OPERATION` (one named operation).

use std::collections::BTreeSet;

use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use wireline_config::Config;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An agent, by name.
    Agent(String),
    /// The operator at the command line (`wireline call`): every scope, the service's own
    /// credential.
    Operator,
    /// Wireline's own poller: every scope, the service's own credential. Its calls show in
    /// the metrics but are not audit events (ten thousand sources polled every minute would
    /// bury the log; what a poll finds is in the log as events).
    Poller,
}

impl Caller {
    /// A name for logs, metrics and audit events.
    pub fn name(&self) -> &str {
        match self {
            Self::Agent(name) => name,
            Self::Operator => "operator",
            Self::Poller => "poller",
        }
    }
}

struct Entry {
    name: String,
    /// The token's digest, and the next token's while rotating.
    digests: Vec<[u8; 32]>,
    scopes: BTreeSet<String>,
}

/// The configured agents.
pub struct Agents {
    entries: Vec<Entry>,
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl Agents {
    /// From a loaded config (secrets resolved).
    pub fn new(config: &Config) -> Self {
        let entries = config
            .agents
            .iter()
            .filter_map(|(name, agent)| {
                let token = agent.token.value()?;
                let mut digests = vec![digest(token.expose_secret().as_bytes())];
                if let Some(next) = agent.next_token.as_ref().and_then(|t| t.value()) {
                    digests.push(digest(next.expose_secret().as_bytes()));
                }
                Some(Entry {
                    name: name.clone(),
                    digests,
                    scopes: agent.scopes.iter().cloned().collect(),
                })
            })
            .collect();
        Self { entries }
    }

    /// The agent whose token is in the `Authorization` header value.
    pub fn authenticate(&self, authorization: Option<&str>) -> Option<Caller> {
        let value = authorization?.trim();
        let (scheme, token) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let presented = digest(token.trim().as_bytes());
        let mut found = None;
        for entry in &self.entries {
            for digest in &entry.digests {
                if bool::from(digest.ct_eq(&presented)) {
                    found = Some(entry.name.clone());
                }
            }
        }
        found.map(Caller::Agent)
    }

    /// Whether `caller` may append events of type `event_type`: `events:write`, or
    /// `events:write:PREFIX` with a prefix of the type.
    pub fn may_produce(&self, caller: &Caller, event_type: &str) -> bool {
        match caller {
            Caller::Operator | Caller::Poller => true,
            Caller::Agent(name) => self
                .entries
                .iter()
                .find(|entry| &entry.name == name)
                .is_some_and(|entry| {
                    entry.scopes.iter().any(|scope| {
                        scope == "events:write"
                            || scope
                                .strip_prefix("events:write:")
                                .is_some_and(|prefix| event_type.starts_with(prefix))
                    })
                }),
        }
    }

    /// Whether `caller` holds one of `scopes`.
    pub fn allows(&self, caller: &Caller, scopes: &[String]) -> bool {
        match caller {
            Caller::Operator | Caller::Poller => true,
            Caller::Agent(name) => self
                .entries
                .iter()
                .find(|entry| &entry.name == name)
                .is_some_and(|entry| scopes.iter().any(|scope| entry.scopes.contains(scope))),
        }
    }
}
