//! The advisor: architecture findings with stable rule ids, a severity and a one-line fix,
//! like a linter. `wireline check` prints them beside the config's own findings; the plan
//! lists them per service.

use std::collections::BTreeSet;

use serde::Serialize;
use wireline_config::model::{Config, Method};

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Worth knowing.
    Info,
    /// Should be fixed.
    Warning,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Advice {
    /// Stable id, e.g. `hybrid-for-critical`.
    pub rule: &'static str,
    /// Severity.
    pub level: Level,
    /// The config key it is about.
    pub at: String,
    /// What is wrong.
    pub message: String,
    /// The fix, one line.
    pub fix: String,
    /// A deadline has passed (a credential overdue for rotation): `check --strict` fails on it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub past_due: bool,
}

/// The rules, with what each checks (shown in the plan and by `check --rules`).
pub const RULES: &[(&str, &str)] = &[
    (
        "hybrid-for-critical",
        "a critical flow that relies on webhooks alone: add a reconciling poll (hybrid)",
    ),
    (
        "polling-for-no-webhooks",
        "a provider without webhooks that is not polled: agents never hear about its changes",
    ),
    (
        "idempotent-payments",
        "a write to a payment service with no idempotency header towards the provider",
    ),
    (
        "fallback-for-critical",
        "a critical service without a fallback (alternate service, stale reads or a static answer)",
    ),
    (
        "alerts-for-critical",
        "a critical service while [alerts] url is not set: failures reach nobody",
    ),
    (
        "retry-multiplies-load",
        "a retry policy that can multiply load: no budget, more than 5 attempts, or waits over 30 s",
    ),
    (
        "rotate-credentials",
        "a credential past 80 % of its rotation period",
    ),
    (
        "least-privilege",
        "an agent with SERVICE:write where the service's operations only read",
    ),
];

fn fix_of(rule: &str) -> &'static str {
    match rule {
        "hybrid-for-critical" => {
            "add [services.NAME.poll] reconcile = true (with a preset or list fields)"
        }
        "polling-for-no-webhooks" => {
            "add [services.NAME.poll] with the list endpoint, every = the freshness you need"
        }
        "idempotent-payments" => {
            "set [services.NAME.idempotency] header to the provider's (Stripe: Idempotency-Key)"
        }
        "fallback-for-critical" => {
            "set fallback = [\"OTHER\"], stale_for = \"5m\" or fallback_response"
        }
        "alerts-for-critical" => "set [alerts] url (a chat webhook; slack = true for Slack)",
        "retry-multiplies-load" => {
            "keep attempts <= 5, max_wait <= 30s and budget > 0 (default 0.1)"
        }
        "rotate-credentials" => "run `wireline keys rotate NAME`",
        "least-privilege" => "grant SERVICE:read, or per-operation scopes SERVICE:OPERATION",
        _ => "",
    }
}

fn advice(rule: &'static str, level: Level, at: String, message: String) -> Advice {
    Advice {
        rule,
        level,
        at,
        message,
        fix: fix_of(rule).to_owned(),
        past_due: false,
    }
}

/// Every finding for `config` as of `today` (for credential ages), sorted by key and rule.
pub fn advise(config: &Config, today: jiff::civil::Date) -> Vec<Advice> {
    let mut found = Vec::new();
    for (name, service) in &config.services {
        let at = format!("services.{name}");
        let reconciled = service.poll.as_ref().is_some_and(|p| p.reconcile);
        if service.critical && service.webhook.is_some() && !reconciled {
            found.push(advice("hybrid-for-critical", Level::Warning, at.clone(), format!("{name} is critical and hears about changes only through webhooks; a lost webhook is a lost payment or order")));
        }
        if service.webhooks == Some(false) && service.poll.is_none() && service.critical {
            found.push(advice(
                "polling-for-no-webhooks",
                Level::Warning,
                at.clone(),
                format!("{name} offers no webhooks and is not polled"),
            ));
        }
        let payments = service.data.iter().any(|d| d == "payment");
        let writes = service
            .operations
            .values()
            .any(|op| !matches!(op.method, Method::Get | Method::Head));
        if payments
            && (writes || service.operations.is_empty())
            && service.idempotency.header.trim().is_empty()
        {
            found.push(advice("idempotent-payments", Level::Warning, format!("{at}.idempotency.header"), format!("{name} moves money, and its writes send no idempotency key to the provider: a retried charge can be charged twice")));
        }
        if service.critical
            && service.fallback.is_empty()
            && service.stale_for.is_none()
            && service.fallback_response.is_none()
        {
            found.push(advice("fallback-for-critical", Level::Warning, at.clone(), format!("{name} is critical and has no fallback: when it is down, agents get errors only")));
        }
        if service.critical && config.alerts.url.is_none() {
            found.push(advice(
                "alerts-for-critical",
                Level::Warning,
                "alerts.url".to_owned(),
                format!("{name} is critical and alerts reach no one (they are only in the log)"),
            ));
        }
        let retry = &service.retry;
        let mut load = Vec::new();
        if retry.budget <= 0.0 {
            load.push("no retry budget".to_owned());
        }
        if retry.attempts > 5 {
            load.push(format!("{} attempts", retry.attempts));
        }
        if retry.max_wait.get() > std::time::Duration::from_secs(30) {
            load.push(format!("waits up to {}", retry.max_wait));
        }
        if !load.is_empty() {
            found.push(advice(
                "retry-multiplies-load",
                Level::Warning,
                format!("{at}.retry"),
                format!(
                    "{name}'s retries can multiply load on a struggling provider: {}",
                    load.join(", ")
                ),
            ));
        }
    }
    for key in wireline_config::keys::inventory(config, today) {
        use wireline_config::keys::Status;
        let (Some(due), Some(age), Status::DueSoon | Status::Overdue) =
            (key.due, key.age_days, key.status)
        else {
            continue;
        };
        let past_due = key.status == Status::Overdue;
        let when = if past_due { "was due" } else { "is due" };
        found.push(Advice {
            fix: format!("run `wireline keys rotate {}`", key.name),
            past_due,
            ..advice(
                "rotate-credentials",
                Level::Warning,
                format!("keys.{}", key.name),
                format!("{} is {age} days old; rotation {when} {due}", key.reference),
            )
        });
    }
    for (agent_name, agent) in &config.agents {
        for scope in &agent.scopes {
            let Some(service_name) = scope.strip_suffix(":write") else {
                continue;
            };
            let Some(service) = config.services.get(service_name) else {
                continue;
            };
            let methods: BTreeSet<bool> = service
                .operations
                .values()
                .map(|op| matches!(op.method, Method::Get | Method::Head))
                .collect();
            if !service.operations.is_empty() && methods == BTreeSet::from([true]) {
                found.push(advice(
                    "least-privilege",
                    Level::Warning,
                    format!("agents.{agent_name}.scopes"),
                    format!(
                        "agent {agent_name} may write to {service_name}, whose operations only read"
                    ),
                ));
            }
        }
    }
    found.sort_by(|a, b| (&a.at, a.rule).cmp(&(&b.at, b.rule)));
    found
}
