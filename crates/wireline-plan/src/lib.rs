//! The integration architecture document, generated from `wireline.toml`: the inventory, the
//! pattern per service with the reasoning and the advisor's recommendation, the security layer,
//! the resilience strategy, a cost estimate with a year-one comparison, the testing plan and a
//! data-flow diagram. Deterministic: the same config gives the same bytes (nothing depends on
//! the clock), so the document can be committed and `wireline plan --check` can diff it.
//!
//! - [`build`] makes the [`Plan`] (also written as JSON); [`markdown`] renders it.
//! - [`advisor`]: the rules `wireline check` applies.
#![warn(missing_docs)]

pub mod advisor;

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;
use wireline_config::model::{Auth, Config, Method, Service};

/// The five integration patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Pattern {
    /// Agents call the service when they need to.
    #[serde(rename = "Direct API")]
    DirectApi,
    /// The service pushes events.
    #[serde(rename = "Webhook-driven")]
    WebhookDriven,
    /// Events in the log are the system of record; many consumers, audits, replays.
    #[serde(rename = "Event-sourced")]
    EventSourced,
    /// Wireline asks the service for changes on a schedule.
    #[serde(rename = "Polling")]
    Polling,
    /// Webhooks for speed, a reconciling poll for completeness.
    #[serde(rename = "Hybrid")]
    Hybrid,
}

impl Pattern {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Pattern::DirectApi => "Direct API",
            Pattern::WebhookDriven => "Webhook-driven",
            Pattern::EventSourced => "Event-sourced",
            Pattern::Polling => "Polling",
            Pattern::Hybrid => "Hybrid",
        }
    }

    /// Expected latency, reliability and complexity.
    pub fn profile(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Pattern::DirectApi => (
                "100-500 ms per call",
                "as the provider; retries, breaker, fallbacks",
                "low",
            ),
            Pattern::WebhookDriven => (
                "< 1 s",
                "a lost webhook is lost unless the provider retries",
                "medium",
            ),
            Pattern::EventSourced => ("1-10 s", "high: durable log, replay, audit", "high"),
            Pattern::Polling => (
                "the poll interval",
                "high: nothing is missed, only late",
                "low",
            ),
            Pattern::Hybrid => (
                "< 1 s, the poll as backup",
                "highest: webhooks plus a reconciling poll",
                "medium",
            ),
        }
    }
}

/// Money per month and per year one, in dollars.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceCost {
    /// Agent calls per month (from `volume`).
    pub calls_per_month: f64,
    /// Poll requests per month (sources x the interval; one page each).
    pub polls_per_month: f64,
    /// Webhook events per month (from `volume`, when a webhook is configured).
    pub webhooks_per_month: f64,
    /// Provider charges per month: (calls + polls) x per_call + monthly.
    pub provider_monthly: f64,
}

/// One service in the plan.
#[derive(Debug, Clone, Serialize)]
pub struct ServicePlan {
    /// Its name.
    pub name: String,
    /// What it is.
    pub description: String,
    /// What agents read.
    pub reads: Vec<String>,
    /// What agents write.
    pub writes: Vec<String>,
    /// Whether the provider offers webhooks.
    pub webhooks_offered: bool,
    /// The auth method.
    pub auth: String,
    /// Credential names (references, never values).
    pub credentials: Vec<String>,
    /// Data classes.
    pub data: Vec<String>,
    /// Critical flow.
    pub critical: bool,
    /// The pattern as configured.
    pub pattern: Pattern,
    /// Why, in a sentence.
    pub reasoning: String,
    /// The advisor's pattern, when it differs, and why.
    pub recommended: Option<(Pattern, String)>,
    /// Resilience: retry, breaker, timeout, fallbacks, idempotency, polling backup.
    pub resilience: BTreeMap<&'static str, String>,
    /// Security: TLS floor, at rest, signature scheme, scopes.
    pub security: BTreeMap<&'static str, String>,
    /// Cost.
    pub cost: ServiceCost,
    /// Testing layers that cover it.
    pub testing: Vec<String>,
}

/// A year-one comparison row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Option1 {
    /// The approach.
    pub approach: String,
    /// Low and high estimate, dollars.
    pub year_one: [f64; 2],
    /// How it adds up.
    pub arithmetic: String,
}

/// The whole document's model.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Services, by name.
    pub services: Vec<ServicePlan>,
    /// Agents and their scopes.
    pub agents: BTreeMap<String, Vec<String>>,
    /// Provider charges per month, all services.
    pub provider_monthly: f64,
    /// Wireline's own running cost per month.
    pub compute_monthly: f64,
    /// Year one: Wireline, low-code, enterprise iPaaS.
    pub comparison: Vec<Option1>,
    /// The advisor's findings (those that do not depend on the date).
    pub advice: Vec<advisor::Advice>,
}

const MONTH_SECONDS: f64 = 30.0 * 86_400.0;

fn credential_names(auth: Option<&Auth>) -> (String, Vec<String>) {
    let source = |s: &wireline_config::Secret| s.source().to_string();
    match auth {
        None => ("none".to_owned(), Vec::new()),
        Some(Auth::Bearer(secret)) => ("bearer token".to_owned(), vec![source(secret)]),
        Some(Auth::Basic(basic)) => ("HTTP basic".to_owned(), vec![source(&basic.password)]),
        Some(Auth::Header { name, value }) => (format!("header {name}"), vec![source(value)]),
        Some(Auth::Query { name, value }) => {
            (format!("query parameter {name}"), vec![source(value)])
        }
        Some(Auth::OAuth2(oauth2)) => {
            let mut names = vec![source(&oauth2.client_secret)];
            names.extend(oauth2.refresh_token.as_ref().map(source));
            let grant = match oauth2.grant {
                wireline_config::model::Grant::ClientCredentials => "client credentials",
                wireline_config::model::Grant::RefreshToken => "refresh token",
            };
            (format!("OAuth 2.0 ({grant})"), names)
        }
    }
}

fn consumers(config: &Config, service: &str) -> usize {
    let prefix = format!("{service}.x");
    config
        .subscriptions
        .iter()
        .filter(|s| {
            s.events.iter().any(|glob| {
                glob.matches(&prefix) || glob.literal_prefix().starts_with(&format!("{service}."))
            })
        })
        .count()
}

/// The pattern as configured, and why.
fn configured(config: &Config, name: &str, service: &Service) -> (Pattern, String) {
    let reconciled = service.poll.as_ref().is_some_and(|p| p.reconcile);
    let many = consumers(config, name);
    match (service.webhook.is_some(), service.poll.is_some()) {
        (true, true) if reconciled => (
            Pattern::Hybrid,
            "webhooks bring changes within a second; a reconciling poll catches what they miss"
                .to_owned(),
        ),
        (true, _) if many >= 3 => (
            Pattern::EventSourced,
            format!(
                "its webhook events land in the log, which {many} subscriptions consume and can replay"
            ),
        ),
        (true, _) => (
            Pattern::WebhookDriven,
            "the provider pushes changes; Wireline verifies, stores and delivers them".to_owned(),
        ),
        (false, true) => (
            Pattern::Polling,
            format!(
                "Wireline asks for changes on a schedule, from a checkpoint (advised: {})",
                poll_interval_advice(service)
            ),
        ),
        (false, false) => (
            Pattern::DirectApi,
            "agents call it when they need to; nothing flows in on its own".to_owned(),
        ),
    }
}

/// The advisor's pattern, when it differs from the configured one.
fn recommend(
    config: &Config,
    name: &str,
    service: &Service,
    current: Pattern,
) -> Option<(Pattern, String)> {
    let offered = service.webhooks.unwrap_or(service.webhook.is_some());
    let wanted = if service.critical && offered {
        (
            Pattern::Hybrid,
            "critical flows (payments, orders) -> Hybrid: no lost event, a second of latency"
                .to_owned(),
        )
    } else if !offered && (service.critical || service.poll.is_some()) {
        (
            Pattern::Polling,
            format!(
                "no webhook support -> Polling, {}",
                poll_interval_advice(service)
            ),
        )
    } else if consumers(config, name) >= 3 || service.data.iter().any(|d| d == "audit") {
        (
            Pattern::EventSourced,
            "audit-critical or many consumers -> Event-sourced".to_owned(),
        )
    } else {
        return None;
    };
    (wanted.0 != current).then_some(wanted)
}

/// The shortest poll interval the rate budget allows (polling may use 80 % of the tightest
/// window), and the interval to use: that, or a minute (the default freshness), whichever is
/// longer.
fn poll_interval_advice(service: &Service) -> String {
    let sources = service.poll.as_ref().map_or(1, |p| p.sources.len().max(1)) as f64;
    let tightest = service.rate_limit.as_ref().and_then(|limit| {
        limit
            .0
            .iter()
            .map(|rate| rate.per_second())
            .min_by(f64::total_cmp)
    });
    match tightest {
        Some(per_second) if per_second > 0.0 => {
            let floor = sources / (0.8 * per_second);
            let chosen = floor.max(60.0).ceil();
            format!(
                "every {}s: the rate limit allows one poll of {sources:.0} source(s) every {floor:.1}s at most (80 % of {per_second:.4}/s), and a minute keeps data fresh",
                chosen
            )
        }
        _ => "every 60s (no rate_limit declared to budget against)".to_owned(),
    }
}

fn every(service: &Service) -> Option<std::time::Duration> {
    let poll = service.poll.as_ref()?;
    Some(poll.every.map(|e| e.get()).unwrap_or(if poll.reconcile {
        std::time::Duration::from_secs(900)
    } else {
        std::time::Duration::from_secs(60)
    }))
}

fn cost(service: &Service) -> ServiceCost {
    let volume = service
        .volume
        .as_ref()
        .map_or(0.0, |rate| rate.per_second() * MONTH_SECONDS);
    let sources = service.poll.as_ref().map_or(0, |p| p.sources.len().max(1)) as f64;
    let polls = every(service).map_or(0.0, |e| sources * MONTH_SECONDS / e.as_secs_f64());
    let webhooks = if service.webhook.is_some() {
        volume
    } else {
        0.0
    };
    let calls = if service.operations.is_empty() && service.webhook.is_some() {
        0.0
    } else {
        volume
    };
    ServiceCost {
        calls_per_month: calls.round(),
        polls_per_month: polls.round(),
        webhooks_per_month: webhooks.round(),
        provider_monthly: round2((calls + polls) * service.cost.per_call + service.cost.monthly),
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Builds the plan of `config`. Deterministic.
pub fn build(config: &Config) -> Plan {
    build_with_scenarios(config, &[])
}

/// Like [`build`], knowing the scenario files (`(file name, text)`) that test the config, so
/// the testing plan can say which services they cover.
pub fn build_with_scenarios(config: &Config, scenarios: &[(String, String)]) -> Plan {
    let emulated = [
        "stripe",
        "slack",
        "github",
        "shopify",
        "sendgrid",
        "hubspot",
        "salesforce",
    ];
    let mut services = Vec::new();
    for (name, service) in &config.services {
        let (pattern, reasoning) = configured(config, name, service);
        let (auth, credentials) = credential_names(service.auth.as_ref());
        let operations = |read: bool| -> Vec<String> {
            service
                .operations
                .iter()
                .filter(|(_, op)| matches!(op.method, Method::Get | Method::Head) == read)
                .map(|(op, _)| op.clone())
                .collect()
        };
        let reads = if service.reads.is_empty() {
            operations(true)
        } else {
            service.reads.clone()
        };
        let writes = if service.writes.is_empty() {
            operations(false)
        } else {
            service.writes.clone()
        };
        let mut resilience = BTreeMap::new();
        resilience.insert(
            "retry",
            format!(
                "{} attempts, backoff {} (full jitter), waits <= {}, budget {:.0} %",
                service.retry.attempts,
                service.retry.backoff,
                service.retry.max_wait,
                service.retry.budget * 100.0
            ),
        );
        resilience.insert(
            "circuit breaker",
            format!(
                "opens after {} failures, for {}",
                service.circuit_breaker.failures, service.circuit_breaker.open_for
            ),
        );
        resilience.insert("timeout", service.timeout.to_string());
        let mut fallbacks: Vec<String> = service.fallback.clone();
        fallbacks.extend(service.stale_for.map(|s| format!("stale reads up to {s}")));
        fallbacks.extend(
            service
                .fallback_response
                .as_ref()
                .map(|_| "a static answer".to_owned()),
        );
        resilience.insert(
            "fallback",
            if fallbacks.is_empty() {
                "none".to_owned()
            } else {
                fallbacks.join(" -> ")
            },
        );
        resilience.insert(
            "idempotency",
            if service.idempotency.header.trim().is_empty() {
                format!(
                    "keys kept {} in Wireline; none sent to the provider",
                    service.idempotency.ttl
                )
            } else {
                format!(
                    "keys kept {}, sent as {}",
                    service.idempotency.ttl, service.idempotency.header
                )
            },
        );
        resilience.insert(
            "polling backup",
            match (&service.poll, every(service)) {
                (Some(poll), Some(e)) if poll.reconcile => {
                    format!("reconciling poll every {}", humantime_like(e))
                }
                (Some(_), Some(e)) => format!("poll every {}", humantime_like(e)),
                _ => "none".to_owned(),
            },
        );
        let mut security = BTreeMap::new();
        security.insert(
            "TLS",
            format!(
                "{} minimum, certificates verified{}",
                match service.min_tls {
                    wireline_config::model::MinTls::Tls12 => "1.2",
                    wireline_config::model::MinTls::Tls13 => "1.3",
                },
                if service.ca_file.is_some() {
                    " (plus ca_file)"
                } else {
                    ""
                }
            ),
        );
        security.insert(
            "at rest",
            if config.security.encryption_key.is_some() && service.sensitive {
                "payloads encrypted (AES-256-GCM)".to_owned()
            } else if config.security.encryption_key.is_some() {
                "idempotency responses encrypted".to_owned()
            } else {
                "not encrypted (no [security] encryption_key)".to_owned()
            },
        );
        security.insert(
            "webhook signature",
            service.webhook.as_ref().map_or("none".to_owned(), |w| {
                format!("{:?}", w.scheme).to_lowercase()
            }),
        );
        let scopes: Vec<String> = config
            .agents
            .iter()
            .flat_map(|(agent, a)| {
                a.scopes
                    .iter()
                    .filter(|s| s.split(':').next() == Some(name.as_str()))
                    .map(move |s| format!("{agent}: {s}"))
            })
            .collect();
        security.insert(
            "agent scopes",
            if scopes.is_empty() {
                "none".to_owned()
            } else {
                scopes.join(", ")
            },
        );
        let mut testing = Vec::new();
        if emulated.contains(&name.as_str()) {
            testing.push("emulator (`wireline mock`): every change".to_owned());
        } else if config.mock.stubs.contains_key(name) {
            testing.push("stub service ([mock] stubs): every change".to_owned());
        }
        for (env, environment) in &config.environments {
            if !environment.production
                && environment.services.contains_key(name)
                && !environment.mock
            {
                testing.push(format!("sandbox profile `--env {env}`: daily"));
            }
        }
        let covering: Vec<&str> = scenarios
            .iter()
            .filter(|(_, text)| {
                [
                    format!("/proxy/{name}/"),
                    format!("target = \"{name}"),
                    format!("service = \"{name}\""),
                    format!("path = \"/{name}/"),
                ]
                .iter()
                .any(|needle| text.contains(needle.as_str()))
            })
            .map(|(file, _)| file.as_str())
            .collect();
        if !covering.is_empty() {
            testing.push(format!(
                "scenario tests ({}): before each release",
                covering.join(", ")
            ));
        }
        if testing.is_empty() {
            testing.push("GAP: no emulator, stub, sandbox profile or scenario".to_owned());
        }
        services.push(ServicePlan {
            name: name.clone(),
            description: service.description.clone().unwrap_or_default(),
            reads,
            writes,
            webhooks_offered: service.webhooks.unwrap_or(service.webhook.is_some()),
            auth,
            credentials,
            data: service.data.clone(),
            critical: service.critical,
            recommended: recommend(config, name, service, pattern),
            pattern,
            reasoning,
            resilience,
            security,
            cost: cost(service),
            testing,
        });
    }
    let p = &config.plan;
    let provider_monthly = round2(services.iter().map(|s| s.cost.provider_monthly).sum());
    let year = |monthly: f64, setup: f64, upkeep: f64| {
        round2(12.0 * (monthly + provider_monthly + upkeep * p.hourly_rate) + setup * p.hourly_rate)
    };
    let comparison = vec![
        Option1 {
            approach: "Wireline, self-hosted".to_owned(),
            year_one: [year(
                p.compute_monthly,
                p.wireline_setup_hours,
                p.wireline_maintenance_hours,
            ); 2],
            arithmetic: format!(
                "12 x ({} compute + {provider_monthly} provider + {} h x {}) + {} h setup x {}",
                p.compute_monthly,
                p.wireline_maintenance_hours,
                p.hourly_rate,
                p.wireline_setup_hours,
                p.hourly_rate
            ),
        },
        Option1 {
            approach: "low-code platform".to_owned(),
            year_one: [
                year(
                    p.low_code_monthly[0],
                    p.low_code_setup_hours,
                    p.low_code_maintenance_hours,
                ),
                year(
                    p.low_code_monthly[1],
                    p.low_code_setup_hours,
                    p.low_code_maintenance_hours,
                ),
            ],
            arithmetic: format!(
                "12 x ({}-{} plan + {provider_monthly} provider + {} h x {}) + {} h setup x {}",
                p.low_code_monthly[0],
                p.low_code_monthly[1],
                p.low_code_maintenance_hours,
                p.hourly_rate,
                p.low_code_setup_hours,
                p.hourly_rate
            ),
        },
        Option1 {
            approach: "enterprise iPaaS".to_owned(),
            year_one: [
                year(
                    p.enterprise_monthly[0],
                    p.enterprise_setup_hours,
                    p.enterprise_maintenance_hours,
                ),
                year(
                    p.enterprise_monthly[1],
                    p.enterprise_setup_hours,
                    p.enterprise_maintenance_hours,
                ),
            ],
            arithmetic: format!(
                "12 x ({}-{} plan + {provider_monthly} provider + {} h x {}) + {} h setup x {}",
                p.enterprise_monthly[0],
                p.enterprise_monthly[1],
                p.enterprise_maintenance_hours,
                p.hourly_rate,
                p.enterprise_setup_hours,
                p.hourly_rate
            ),
        },
    ];
    // Only date-independent advice: the document must not change with the calendar.
    let advice = advisor::advise(config, jiff::civil::date(2000, 1, 1))
        .into_iter()
        .filter(|a| a.rule != "rotate-credentials")
        .collect();
    Plan {
        services,
        agents: config
            .agents
            .iter()
            .map(|(n, a)| (n.clone(), a.scopes.clone()))
            .collect(),
        provider_monthly,
        compute_monthly: p.compute_monthly,
        comparison,
        advice,
    }
}

fn humantime_like(d: std::time::Duration) -> String {
    wireline_core::Duration::from_secs(d.as_secs()).to_string()
}

fn money(x: f64) -> String {
    format!("${x:.2}")
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

/// The Markdown document.
pub fn markdown(plan: &Plan, config: &Config) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "# Integration architecture\n\nGenerated by `wireline plan` from `wireline.toml`; do not edit: change the config and regenerate (`wireline plan --check` fails when this file is out of date).\n"
    );
    let _ = writeln!(
        w,
        "## 1. Inventory\n\n| service | reads | writes | webhooks | auth | data | critical |\n| --- | --- | --- | --- | --- | --- | --- |"
    );
    for s in &plan.services {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} |",
            s.name,
            list(&s.reads),
            list(&s.writes),
            if s.webhooks_offered { "yes" } else { "no" },
            s.auth,
            list(&s.data),
            if s.critical { "yes" } else { "no" }
        );
    }
    let _ = writeln!(
        w,
        "\nAgents: {}\n",
        plan.agents
            .iter()
            .map(|(a, scopes)| format!("`{a}` ({})", scopes.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let _ = writeln!(
        w,
        "## 2. Patterns\n\n| service | pattern | why | advisor |\n| --- | --- | --- | --- |"
    );
    for s in &plan.services {
        let advisor = s
            .recommended
            .as_ref()
            .map_or("agrees".to_owned(), |(p, why)| {
                format!("**{}**: {why}", p.name())
            });
        let _ = writeln!(
            w,
            "| {} | {} | {} | {advisor} |",
            s.name,
            s.pattern.name(),
            s.reasoning
        );
    }
    let _ = writeln!(
        w,
        "\nThe advisor's rules: critical flows (payments, orders) -> Hybrid; no webhook support -> Polling (interval from the freshness needed and the rate budget); audit-critical or many consumers -> Event-sourced; simple reads/writes -> Direct API; real-time non-critical -> Webhook-driven.\n\n| pattern | latency | reliability | complexity |\n| --- | --- | --- | --- |"
    );
    for p in [
        Pattern::DirectApi,
        Pattern::WebhookDriven,
        Pattern::EventSourced,
        Pattern::Polling,
        Pattern::Hybrid,
    ] {
        let (latency, reliability, complexity) = p.profile();
        let _ = writeln!(
            w,
            "| {} | {latency} | {reliability} | {complexity} |",
            p.name()
        );
    }
    let _ = writeln!(
        w,
        "\n## 3. Security\n\n| service | auth | credentials | rotation | TLS | at rest | webhook signature | agent scopes |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    let keys: BTreeMap<String, wireline_config::keys::KeyInfo> =
        wireline_config::keys::inventory(config, jiff::civil::date(2000, 1, 1))
            .into_iter()
            .map(|k| (k.reference.clone(), k))
            .collect();
    for s in &plan.services {
        let rotation: Vec<String> = s
            .credentials
            .iter()
            .map(
                |c| match keys.get(c).and_then(|k| Some((k.meta.as_ref()?, k.due?))) {
                    Some((meta, due)) => format!(
                        "every {}d, next {due}",
                        meta.rotate_every.get().as_secs() / 86_400
                    ),
                    None => "every 90d (no created date)".to_owned(),
                },
            )
            .collect();
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            s.name,
            s.auth,
            list(&s.credentials),
            list(&rotation),
            s.security["TLS"],
            s.security["at rest"],
            s.security["webhook signature"],
            s.security["agent scopes"]
        );
    }
    let _ = writeln!(
        w,
        "\n## 4. Resilience\n\n| service | retry | circuit breaker | timeout | fallback | idempotency | polling backup |\n| --- | --- | --- | --- | --- | --- | --- |"
    );
    for s in &plan.services {
        let r = &s.resilience;
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} |",
            s.name,
            r["retry"],
            r["circuit breaker"],
            r["timeout"],
            r["fallback"],
            r["idempotency"],
            r["polling backup"]
        );
    }
    let _ = writeln!(
        w,
        "\n## 5. Cost\n\nPer month, from each service's `volume` and `cost` (polls: sources x 30 days / interval, one page each).\n\n| service | agent calls | polls | webhook events | provider |\n| --- | ---: | ---: | ---: | ---: |"
    );
    for s in &plan.services {
        let _ = writeln!(
            w,
            "| {} | {:.0} | {:.0} | {:.0} | {} |",
            s.name,
            s.cost.calls_per_month,
            s.cost.polls_per_month,
            s.cost.webhooks_per_month,
            money(s.cost.provider_monthly)
        );
    }
    let _ = writeln!(
        w,
        "| **total** | | | | **{}** |\n\nWireline itself: {} a month of compute; the event log is embedded SQLite (no event-stream infrastructure to pay for).\n\nYear one (parameters in `[plan]`):\n\n| approach | year one | arithmetic |\n| --- | ---: | --- |",
        money(plan.provider_monthly),
        money(plan.compute_monthly)
    );
    for o in &plan.comparison {
        let range = if (o.year_one[0] - o.year_one[1]).abs() < 0.005 {
            money(o.year_one[0])
        } else {
            format!("{}-{}", money(o.year_one[0]), money(o.year_one[1]))
        };
        let _ = writeln!(w, "| {} | {range} | {} |", o.approach, o.arithmetic);
    }
    let _ = writeln!(
        w,
        "\n## 6. Testing\n\n| service | layers (how often) |\n| --- | --- |"
    );
    for s in &plan.services {
        let _ = writeln!(w, "| {} | {} |", s.name, s.testing.join("; "));
    }
    let _ = writeln!(
        w,
        "\nScenario tests (`wireline test`) before each release cover the flows between them.\n\n## 7. Data flow\n\n```mermaid\nflowchart LR"
    );
    for agent in plan.agents.keys() {
        let _ = writeln!(
            w,
            "  agent_{}([{agent}]) -->|calls| wireline[Wireline]",
            ident(agent)
        );
    }
    let _ = writeln!(w, "  wireline --> log[(event log)]");
    for s in &plan.services {
        let id = ident(&s.name);
        if matches!(s.pattern, Pattern::DirectApi) || !s.writes.is_empty() || !s.reads.is_empty() {
            let _ = writeln!(w, "  wireline -->|API| svc_{id}[{}]", s.name);
        }
        if matches!(
            s.pattern,
            Pattern::WebhookDriven | Pattern::Hybrid | Pattern::EventSourced
        ) {
            let _ = writeln!(w, "  svc_{id}[{}] -->|webhooks| wireline", s.name);
        }
        if matches!(s.pattern, Pattern::Polling | Pattern::Hybrid) {
            let _ = writeln!(w, "  wireline -->|poll| svc_{id}[{}]", s.name);
        }
    }
    for sub in &config.subscriptions {
        let _ = writeln!(
            w,
            "  log -->|{}| agent_{}",
            sub.events
                .iter()
                .map(|g| g.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            ident(&sub.agent)
        );
    }
    let _ = writeln!(w, "```");
    if !plan.advice.is_empty() {
        let _ = writeln!(w, "\n## Advisor findings\n");
        for a in &plan.advice {
            let _ = writeln!(
                w,
                "- `{}` at `{}`: {} Fix: {}.",
                a.rule, a.at, a.message, a.fix
            );
        }
    }
    out
}

fn ident(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(text: &str) -> Config {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn the_cost_model_adds_up_as_computed_by_hand() {
        let c = config(
            "[services.ledger]\nbase_url = \"https://l.example.com\"\nvolume = \"3000/month\"\ncost = { per_call = 0.002, monthly = 49.0 }\n[services.ledger.poll]\npreset = \"json-list\"\npath = \"/e\"\nevery = \"5m\"\nitems = \"e\"\nid = \"id\"\ntime = \"t\"\nnext = \"none\"\n[services.ledger.operations.get]\nmethod = \"GET\"\npath = \"/e/{id}\"\n[plan]\nhourly_rate = 50.0\ncompute_monthly = 10.0\nwireline_setup_hours = 10.0\nwireline_maintenance_hours = 2.0\n",
        );
        let plan = build(&c);
        let cost = &plan.services[0].cost;
        // 30 days x 86,400 s / 300 s = 8,640 polls; (3,000 + 8,640) x 0.002 + 49 = 72.28.
        assert_eq!(
            (cost.calls_per_month, cost.polls_per_month),
            (3000.0, 8640.0)
        );
        assert_eq!(cost.provider_monthly, 72.28);
        // 12 x (10 + 72.28 + 2 h x 50) + 10 h x 50 = 2,687.36.
        assert_eq!(plan.comparison[0].year_one, [2687.36, 2687.36]);
        // Low-code defaults 20-99 with 6 h/month and 8 h setup at 50/h:
        // 12 x (20 + 72.28 + 300) + 400 = 5,107.36; 12 x (99 + 72.28 + 300) + 400 = 6,055.36.
        assert_eq!(plan.comparison[1].year_one, [5107.36, 6055.36]);
    }

    #[test]
    fn the_document_is_the_same_bytes_every_time() {
        let c = config(
            "[services.s]\nbase_url = \"https://s.example.com\"\n[agents.a]\ntoken = \"${env:T}\"\nscopes = [\"s:read\"]\n",
        );
        assert_eq!(markdown(&build(&c), &c), markdown(&build(&c), &c));
    }

    #[test]
    fn the_testing_plan_names_layers_and_gaps() {
        let c = config(
            "[services.stripe]\nbase_url = \"https://api.stripe.com\"\n[services.ledger]\nbase_url = \"https://l.example.com\"\n[services.crm]\nbase_url = \"https://crm.example.com\"\n[environments.staging.services.crm]\nbase_url = \"https://sandbox.crm.example.com\"\n",
        );
        let scenarios = [(
            "ledger.toml".to_owned(),
            "call = { path = \"/proxy/ledger/entries\" }".to_owned(),
        )];
        let plan = build_with_scenarios(&c, &scenarios);
        let testing = |name: &str| {
            plan.services
                .iter()
                .find(|s| s.name == name)
                .unwrap()
                .testing
                .join("; ")
        };
        assert!(testing("stripe").contains("emulator"));
        assert!(testing("ledger").contains("scenario tests (ledger.toml)"));
        assert!(testing("crm").contains("sandbox profile `--env staging`"));
        assert!(
            build(&c)
                .services
                .iter()
                .find(|s| s.name == "ledger")
                .unwrap()
                .testing[0]
                .starts_with("GAP")
        );
    }

    #[test]
    fn the_advised_poll_interval_comes_from_the_rate_budget() {
        let service = |rate: &str| {
            config(&format!(
                "[services.s]\nbase_url = \"https://s.example.com\"\nrate_limit = \"{rate}\"\n[services.s.poll]\npreset = \"json-list\"\npath = \"/x/{{source}}\"\nsources = [\"a\", \"b\", \"c\", \"d\", \"e\"]\nitems = \"x\"\nid = \"id\"\ntime = \"t\"\nnext = \"none\"\n"
            ))
        };
        // 5 sources at 80 % of 10/min (0.1667/s): one round every 37.5 s at most; a minute is fine.
        let relaxed = build(&service("10/min"));
        assert!(
            relaxed.services[0].reasoning.contains("every 60s")
                && relaxed.services[0].reasoning.contains("37.5s"),
            "{}",
            relaxed.services[0].reasoning
        );
        // 5 sources at 80 % of 2/min: 187.5 s, so 188 s.
        let tight = build(&service("2/min"));
        assert!(
            tight.services[0].reasoning.contains("every 188s"),
            "{}",
            tight.services[0].reasoning
        );
    }

    /// Each rule with a config that triggers it and one that does not.
    #[test]
    fn every_advisor_rule_fires_on_its_case_and_not_on_the_fixed_one() {
        let today = jiff::civil::date(2026, 11, 29);
        let base = "[services.pay]\nbase_url = \"https://p.example.com\"\n";
        let hook = "[services.pay.webhook]\nscheme = \"stripe\"\nsecret = \"${env:W}\"\n";
        let poll = "[services.pay.poll]\npreset = \"stripe-events\"\nreconcile = true\n";
        let cases: Vec<(&str, String, String)> = vec![
            (
                "hybrid-for-critical",
                format!("{base}critical = true\nstale_for = \"1m\"\n{hook}"),
                format!("{base}critical = true\nstale_for = \"1m\"\n{hook}{poll}"),
            ),
            (
                "polling-for-no-webhooks",
                format!("{base}critical = true\nwebhooks = false\n"),
                format!(
                    "{base}critical = true\nwebhooks = false\n[services.pay.poll]\npreset = \"json-list\"\npath = \"/x\"\nitems = \"x\"\nid = \"id\"\ntime = \"t\"\nnext = \"none\"\n"
                ),
            ),
            (
                "idempotent-payments",
                format!("{base}data = [\"payment\"]\nidempotency = {{ header = \"\" }}\n"),
                format!("{base}data = [\"payment\"]\n"),
            ),
            (
                "fallback-for-critical",
                format!("{base}critical = true\n"),
                format!("{base}critical = true\nstale_for = \"5m\"\n"),
            ),
            (
                "alerts-for-critical",
                format!("{base}critical = true\n"),
                format!("[alerts]\nurl = \"https://hooks.example.com/a\"\n{base}critical = true\n"),
            ),
            (
                "retry-multiplies-load",
                format!("{base}retry = {{ attempts = 8 }}\n"),
                format!("{base}retry = {{ attempts = 3 }}\n"),
            ),
            (
                "rotate-credentials",
                format!(
                    "{base}auth = {{ bearer = \"${{env:K}}\" }}\n[keys.K]\ncreated = \"2026-08-01\"\n"
                ),
                format!(
                    "{base}auth = {{ bearer = \"${{env:K}}\" }}\n[keys.K]\ncreated = \"2026-11-01\"\n"
                ),
            ),
            (
                "least-privilege",
                format!(
                    "[agents.a]\ntoken = \"${{env:T}}\"\nscopes = [\"pay:write\"]\n{base}[services.pay.operations.get]\nmethod = \"GET\"\npath = \"/x\"\n"
                ),
                format!(
                    "[agents.a]\ntoken = \"${{env:T}}\"\nscopes = [\"pay:read\"]\n{base}[services.pay.operations.get]\nmethod = \"GET\"\npath = \"/x\"\n"
                ),
            ),
        ];
        assert_eq!(cases.len(), advisor::RULES.len(), "a case for every rule");
        for (rule, bad, good) in cases {
            let fired = |text: &str| {
                advisor::advise(&config(text), today)
                    .iter()
                    .any(|a| a.rule == rule)
            };
            assert!(fired(&bad), "{rule} should fire on:\n{bad}");
            assert!(!fired(&good), "{rule} should not fire on:\n{good}");
        }
    }
}
