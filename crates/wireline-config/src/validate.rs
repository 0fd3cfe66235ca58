//! Cross-reference checks the types alone cannot express: names, scopes that point at real
//! services and operations, subscriptions that point at real agents, URLs Wireline may call.
//!
//! Each check returns `(key path, severity, message)`; the loader turns the key path into a
//! file position. Later features add their lints here, one function per area.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::load::Severity;
use crate::model::{Config, Service};

/// `(key path, severity, message, advisor rule id if the finding is one of its rules)`.
type Found = Vec<(String, Severity, String, Option<&'static str>)>;

/// Every finding for a deserialized config.
pub(crate) fn config(config: &Config) -> Found {
    let mut found = Found::new();
    names(config, &mut found);
    for (name, service) in &config.services {
        service_checks(name, service, &mut found);
    }
    scopes(config, &mut found);
    references(config, &mut found);
    subscriptions(config, &mut found);
    for (pattern, path) in &config.events.subjects {
        if let Err(problem) = pattern.parse::<wireline_core::TypeGlob>() {
            error(
                &mut found,
                format!("events.subjects.{pattern}"),
                format!("{problem}; write a type or a glob such as stripe.*"),
            );
        }
        if path.trim().is_empty() {
            error(&mut found, format!("events.subjects.{pattern}"), "the path is empty; write where the subject is in data, e.g. \"data.object.customer\"".to_owned());
        }
    }
    triggers(config, &mut found);
    projections_and_retention(config, &mut found);
    environments(config, &mut found);
    // OAuth 2.0 apps, the services' own and agents' own: refresh tokens the provider
    // rotates, and scopes asked for that no operation needs.
    let services_apps = config.services.iter().filter_map(|(name, service)| {
        Some((
            format!("services.{name}.auth"),
            name,
            service.auth.as_ref()?,
        ))
    });
    let agents_apps = config.agents.iter().flat_map(|(agent, a)| {
        a.credentials.iter().map(move |(service, auth)| {
            (
                format!("agents.{agent}.credentials.{service}"),
                service,
                auth,
            )
        })
    });
    for (at, name, auth) in services_apps.chain(agents_apps) {
        let crate::model::Auth::OAuth2(oauth2) = auth else {
            continue;
        };
        if oauth2.grant == crate::model::Grant::RefreshToken
            && config.security.encryption_key.is_none()
        {
            warning(
                &mut found,
                format!("{at}.oauth2.grant"),
                "a refresh token the provider rotates is kept in memory only, so after a restart the configured (already replaced) one is used; set [security] encryption_key to keep it, sealed, in the store".to_owned(),
            );
        }
        let Some(service) = config.services.get(name) else {
            continue;
        };
        let needed: BTreeSet<&str> = service
            .operations
            .values()
            .flat_map(|op| op.scopes.iter().map(String::as_str))
            .collect();
        let unused: Vec<&str> = oauth2
            .scopes
            .iter()
            .map(String::as_str)
            .filter(|s| !needed.contains(s))
            .collect();
        if !unused.is_empty() {
            warning(
                &mut found,
                format!("{at}.oauth2.scopes"),
                format!(
                    "no operation of {name} needs {}; ask for the least: leave scopes out (the union of the operations' `scopes` is requested) or drop these",
                    unused.join(", ")
                ),
            );
        }
    }
    for (path, message) in crate::keys::unused_metadata(config) {
        warning(&mut found, path, message);
    }
    let sensitive =
        !config.events.sensitive.is_empty() || config.services.values().any(|s| s.sensitive);
    if sensitive && config.security.encryption_key.is_none() {
        error(
            &mut found,
            "security".to_owned(),
            "sensitive events are declared but there is no [security] encryption_key to encrypt them with; add encryption_key = \"${env:WIRELINE_ENCRYPTION_KEY}\" (make one with `openssl rand -hex 32`)".to_owned(),
        );
    }
    if config.events.audit_flush.get() > std::time::Duration::from_secs(10) {
        error(
            &mut found,
            "events.audit_flush".to_owned(),
            format!(
                "audit events would wait up to {} before they are stored, and a crash could lose that much of the trail; use at most \"10s\" (the default is \"50ms\")",
                config.events.audit_flush
            ),
        );
    }
    found
}

fn error(found: &mut Found, path: String, message: String) {
    found.push((path, Severity::Error, message, None));
}

/// An error that is one of the advisor's rules (`wireline check` reports its id).
fn error_rule(found: &mut Found, rule: &'static str, path: String, message: String) {
    found.push((path, Severity::Error, message, Some(rule)));
}

fn warning(found: &mut Found, path: String, message: String) {
    found.push((path, Severity::Warning, message, None));
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 63
}

fn names(config: &Config, found: &mut Found) {
    let tables = [
        ("agents", config.agents.keys().collect::<Vec<_>>()),
        ("services", config.services.keys().collect()),
        ("environments", config.environments.keys().collect()),
        ("projections", config.projections.keys().collect()),
    ];
    for (table, keys) in tables {
        for name in keys {
            if !is_name(name) {
                error(found, format!("{table}.{name}"), bad_name(name));
            }
        }
    }
    for (service_name, service) in &config.services {
        for op in service.operations.keys() {
            if !is_name(op) {
                error(
                    found,
                    format!("services.{service_name}.operations.{op}"),
                    bad_name(op),
                );
            }
        }
    }
}

fn bad_name(name: &str) -> String {
    format!(
        "name \"{name}\" is not allowed; use lower-case letters, digits, '-' and '_', starting with a letter (it appears in URLs, scopes and metrics)"
    )
}

/// Whether `url` is one Wireline may call: https anywhere, plain http only on loopback. The
/// error carries the advisor's rule id when it is one (`plain-http`).
pub(crate) fn check_url(url: &str) -> Result<(), (Option<&'static str>, String)> {
    let parsed = url::Url::parse(url).map_err(|error| {
        (
            None,
            format!("\"{url}\" is not a URL ({error}); write it as https://host/path"),
        )
    })?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(domain)) => domain == "localhost",
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err((
            Some("plain-http"),
            format!(
                "\"{url}\" is plain http to a host that is not loopback; use https:// (plain http is only for 127.0.0.1/localhost mocks)"
            ),
        )),
        _ => Err((None, format!("\"{url}\" must be an https:// URL"))),
    }
}

fn push_url_problem(found: &mut Found, rule: Option<&'static str>, path: String, message: String) {
    found.push((path, Severity::Error, message, rule));
}

fn service_checks(name: &str, service: &Service, found: &mut Found) {
    let at = format!("services.{name}");
    if let Err((rule, message)) = check_url(&service.base_url) {
        push_url_problem(found, rule, format!("{at}.base_url"), message);
    }
    if service.retry.attempts == 0 {
        error(
            found,
            format!("{at}.retry.attempts"),
            "attempts counts the first try too, so it must be at least 1 (1 means no retry)"
                .to_owned(),
        );
    }
    if service.circuit_breaker.failures == 0 {
        error(
            found,
            format!("{at}.circuit_breaker.failures"),
            "failures must be at least 1".to_owned(),
        );
    }
    if service.timeout.get().is_zero() {
        error(
            found,
            format!("{at}.timeout"),
            "timeout must be longer than 0s".to_owned(),
        );
    }
    if let Some(webhook) = &service.webhook {
        webhook_checks(&format!("{at}.webhook"), webhook, found);
    }
    if let Some(poll) = &service.poll {
        match poll.spec() {
            Err((key, message)) => error(found, format!("{at}.poll.{key}"), message),
            Ok(spec) => poll_budget(&at, service, &spec, found),
        }
        if poll.reconcile && service.webhook.is_none() {
            warning(
                found,
                format!("{at}.poll.reconcile"),
                "reconcile only matters with a [webhook] on the same service (the hybrid pattern); add one or remove reconcile".to_owned(),
            );
        }
    }
    for (op_name, op) in &service.operations {
        if !op.path.starts_with('/') {
            error(
                found,
                format!("{at}.operations.{op_name}.path"),
                format!(
                    "path \"{}\" must start with '/' (it is appended to base_url)",
                    op.path
                ),
            );
        }
        if op.path.matches('{').count() != op.path.matches('}').count() {
            error(
                found,
                format!("{at}.operations.{op_name}.path"),
                format!("path \"{}\" has an unclosed {{param}}", op.path),
            );
        }
    }
}

fn scopes(config: &Config, found: &mut Found) {
    for (agent_name, agent) in &config.agents {
        if agent.scopes.is_empty() {
            warning(
                found,
                format!("agents.{agent_name}.scopes"),
                "this agent has no scopes and can do nothing; add e.g. \"stripe:read\" or \"events:read\"".to_owned(),
            );
        }
        for (index, scope) in agent.scopes.iter().enumerate() {
            let path = format!("agents.{agent_name}.scopes[{index}]");
            let Some((target, action)) = scope.split_once(':') else {
                error(
                    found,
                    path,
                    format!(
                        "scope \"{scope}\" has no ':'; write SERVICE:read, SERVICE:write, SERVICE:OPERATION or events:read"
                    ),
                );
                continue;
            };
            if target == "events" {
                let prefixed = action
                    .strip_prefix("write:")
                    .is_some_and(|prefix| !prefix.trim().is_empty());
                if !matches!(action, "read" | "write") && !prefixed {
                    error(
                        found,
                        path,
                        format!(
                            "scope \"{scope}\": events scopes are events:read, events:write and events:write:TYPE_PREFIX (e.g. events:write:order.)"
                        ),
                    );
                }
                continue;
            }
            let Some(service) = config.services.get(target) else {
                let known: Vec<&str> = config.services.keys().map(String::as_str).collect();
                error(
                    found,
                    path,
                    format!(
                        "scope \"{scope}\" names service \"{target}\", which is not configured; configured: {}",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
                continue;
            };
            if !matches!(action, "read" | "write") && !service.operations.contains_key(action) {
                let mut known: Vec<&str> = vec!["read", "write"];
                known.extend(service.operations.keys().map(String::as_str));
                error(
                    found,
                    path,
                    format!(
                        "scope \"{scope}\": \"{action}\" is neither read, write nor an operation of {target}; use one of: {}",
                        known.join(", ")
                    ),
                );
            }
        }
    }
}

/// Names that must point at configured services, and values with a range.
fn references(config: &Config, found: &mut Found) {
    let known = || {
        config
            .services
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (agent_name, agent) in &config.agents {
        for service in agent.credentials.keys() {
            if !config.services.contains_key(service) {
                error(
                    found,
                    format!("agents.{agent_name}.credentials.{service}"),
                    format!(
                        "credentials for \"{service}\", which is not configured; configured: {}",
                        known()
                    ),
                );
            }
        }
    }
    for (name, service) in &config.services {
        let at = format!("services.{name}");
        for (index, alternate) in service.fallback.iter().enumerate() {
            if alternate == name {
                error(
                    found,
                    format!("{at}.fallback[{index}]"),
                    "a service cannot fall back to itself".to_owned(),
                );
            } else if !config.services.contains_key(alternate) {
                error(
                    found,
                    format!("{at}.fallback[{index}]"),
                    format!(
                        "fallback service \"{alternate}\" is not configured; configured: {}",
                        known()
                    ),
                );
            }
        }
        if !(0.0..=0.9).contains(&service.headroom) {
            error(
                found,
                format!("{at}.headroom"),
                "headroom is the share kept unused: between 0.0 and 0.9 (e.g. 0.1)".to_owned(),
            );
        }
        if !(0.0..=1.0).contains(&service.retry.budget) {
            error(
                found,
                format!("{at}.retry.budget"),
                "budget is a share of recent requests: between 0.0 and 1.0 (e.g. 0.2)".to_owned(),
            );
        }
        if let Some(response) = &service.fallback_response
            && !(100..=599).contains(&response.status)
        {
            error(
                found,
                format!("{at}.fallback_response.status"),
                "status must be an HTTP status (100 to 599)".to_owned(),
            );
        }
    }
    if let Some(crate::model::AlertUrl::Plain(url)) = &config.alerts.url
        && let Err((rule, message)) = check_url(url)
    {
        push_url_problem(found, rule, "alerts.url".to_owned(), message);
    }
}

fn subscriptions(config: &Config, found: &mut Found) {
    let mut names = BTreeSet::new();
    for (index, (name, _)) in config.named_subscriptions().into_iter().enumerate() {
        if !names.insert(name.clone()) {
            error(
                found,
                format!("subscriptions[{index}].name"),
                format!(
                    "another subscription is already named \"{name}\"; give each a unique name"
                ),
            );
        }
    }
    for (index, subscription) in config.subscriptions.iter().enumerate() {
        let at = format!("subscriptions[{index}]");
        if !config.agents.contains_key(&subscription.agent) {
            error(
                found,
                format!("{at}.agent"),
                format!(
                    "agent \"{}\" is not configured; add [agents.{}] or fix the name",
                    subscription.agent, subscription.agent
                ),
            );
        }
        if subscription.events.is_empty() {
            error(
                found,
                format!("{at}.events"),
                "events is empty; list the event types to deliver, e.g. [\"stripe.payment_intent.*\"]".to_owned(),
            );
        }
        if subscription.schedule.is_empty() {
            error(
                found,
                format!("{at}.schedule"),
                "schedule is empty, so nothing would ever be sent; leave it out for the default or start with \"0s\"".to_owned(),
            );
        }
        match (&subscription.url, &subscription.secret) {
            (Some(url), secret) => {
                if let Err((rule, message)) = check_url(url) {
                    push_url_problem(found, rule, format!("{at}.url"), message);
                }
                if secret.is_none() {
                    error(
                        found,
                        format!("{at}.url"),
                        "a push subscription needs a `secret` (whsec_..., by reference) to sign its deliveries with".to_owned(),
                    );
                }
            }
            (None, Some(_)) => warning(
                found,
                format!("{at}.secret"),
                "secret is only used to sign pushes, and this subscription has no url (pull only)"
                    .to_owned(),
            ),
            (None, None) => {}
        }
    }
}

/// Whether some event type matching `glob` could start with `prefix`.
fn could_start_with(glob: &wireline_core::TypeGlob, prefix: &str) -> bool {
    let literal = glob.literal_prefix();
    if glob.as_str().contains('*') {
        literal.starts_with(prefix) || prefix.starts_with(literal)
    } else {
        literal.starts_with(prefix)
    }
}

/// The type prefixes agents may append (`events:write:PREFIX`), or `None` when one may append
/// any type (`events:write`).
fn agent_write_prefixes(config: &Config) -> Option<Vec<&str>> {
    let mut prefixes = Vec::new();
    for scope in config.agents.values().flat_map(|a| &a.scopes) {
        if scope == "events:write" {
            return None;
        }
        if let Some(prefix) = scope.strip_prefix("events:write:") {
            prefixes.push(prefix);
        }
    }
    Some(prefixes)
}

/// Whether some event type could match both patterns (with `*` in both, judged by their
/// literal prefixes: it may say yes for two that share none, never no for two that do).
fn overlaps(a: &wireline_core::TypeGlob, b: &wireline_core::TypeGlob) -> bool {
    match (a.as_str().contains('*'), b.as_str().contains('*')) {
        (false, _) => b.matches(a.as_str()),
        (_, false) => a.matches(b.as_str()),
        (true, true) => {
            let (x, y) = (a.literal_prefix(), b.literal_prefix());
            x.starts_with(y) || y.starts_with(x)
        }
    }
}

/// The prefixes of the event types something in the config produces, or `None` when an agent
/// may append any type (then no pattern is unknown).
fn produced_prefixes(config: &Config) -> Option<Vec<String>> {
    let mut prefixes = vec!["wireline.".to_owned()];
    for name in config.services.keys() {
        prefixes.push(format!("{name}."));
    }
    for trigger in &config.triggers {
        prefixes.push(trigger.emit.clone());
    }
    prefixes.extend(agent_write_prefixes(config)?.into_iter().map(str::to_owned));
    Some(prefixes)
}

fn triggers(config: &Config, found: &mut Found) {
    const LONGEST: std::time::Duration = std::time::Duration::from_secs(366 * 86_400);
    let produced = produced_prefixes(config);
    let appended = agent_write_prefixes(config);
    let subject_patterns: Vec<wireline_core::TypeGlob> = config
        .events
        .subjects
        .keys()
        .filter_map(|pattern| pattern.parse().ok())
        .collect();
    let mut seen = BTreeSet::new();
    for (index, trigger) in config.triggers.iter().enumerate() {
        let at = format!("triggers[{index}]");
        if !is_name(&trigger.name) {
            error(
                found,
                format!("{at}.name"),
                format!(
                    "\"{}\" is not a valid rule name; use lower-case letters, digits, '-' and '_', starting with a letter",
                    trigger.name
                ),
            );
        }
        if !seen.insert(trigger.name.as_str()) {
            error(
                found,
                format!("{at}.name"),
                format!(
                    "another trigger is already named \"{}\"; names must be unique",
                    trigger.name
                ),
            );
        }
        if trigger.emit.trim().is_empty()
            || trigger.emit.contains('*')
            || trigger.emit.parse::<wireline_core::TypeGlob>().is_err()
        {
            error(
                found,
                format!("{at}.emit"),
                "emit must be one event type (letters, digits, '.', '_', '-', ':'; no '*'), e.g. \"user.no_login_7d\"".to_owned(),
            );
        }
        let kinds = [
            trigger.sequence.as_ref().map(|r| {
                (
                    "sequence",
                    vec![("first", &r.first), ("then", &r.then)],
                    r.within,
                )
            }),
            trigger.absence.as_ref().map(|r| {
                (
                    "absence",
                    vec![("first", &r.first), ("missing", &r.missing)],
                    r.within,
                )
            }),
            trigger
                .threshold
                .as_ref()
                .map(|r| ("threshold", vec![("event", &r.event)], r.within)),
        ];
        let kinds: Vec<_> = kinds.into_iter().flatten().collect();
        let [(kind, inputs, within)] = kinds.as_slice() else {
            error(
                found,
                at.clone(),
                format!(
                    "give the rule exactly one of sequence, absence or threshold (it has {}), e.g. absence = {{ first = \"user.signup\", missing = \"user.first_login\", within = \"7d\" }}",
                    if kinds.is_empty() {
                        "none".to_owned()
                    } else {
                        kinds.iter().map(|k| k.0).collect::<Vec<_>>().join(" and ")
                    }
                ),
            );
            continue;
        };
        let window = within.get();
        if window < std::time::Duration::from_secs(1) || window > LONGEST {
            error(
                found,
                format!("{at}.{kind}.within"),
                format!("a window of {within} is not useful; use between 1s and 366d"),
            );
        }
        if let Some(rule) = &trigger.threshold
            && rule.count < 2
        {
            error(
                found,
                format!("{at}.threshold.count"),
                format!(
                    "count = {} fires on every event; use 2 or more (or a subscription to the type itself)",
                    rule.count
                ),
            );
        }
        for (key, glob) in inputs {
            if glob.matches(&trigger.emit) {
                error(
                    found,
                    format!("{at}.{kind}.{key}"),
                    format!(
                        "{glob} matches the rule's own emit type {}, so the rule would trigger itself; narrow the pattern or rename emit",
                        trigger.emit
                    ),
                );
            }
            if let Some(prefixes) = &produced
                && !prefixes.iter().any(|prefix| could_start_with(glob, prefix))
            {
                error(
                    found,
                    format!("{at}.{kind}.{key}"),
                    format!(
                        "nothing in this config produces events of type {glob}: types start with a service name (webhooks, polls), \"wireline.\" (audit, alerts), another trigger's emit, or an agent's events:write:PREFIX; fix the type or give a producer that scope"
                    ),
                );
            }
            // Rules follow one subject at a time and pass over events without one; a
            // service's events (webhooks, polls) carry one only where [events] subjects says
            // where it is in their data. Agents that may append such types set their own.
            if let Some(service) = config
                .services
                .iter()
                .filter(|(_, s)| s.webhook.is_some() || s.poll.is_some())
                .map(|(name, _)| name)
                .find(|name| could_start_with(glob, &format!("{name}.")))
                && !subject_patterns
                    .iter()
                    .any(|pattern| overlaps(pattern, glob))
                && appended.as_ref().is_some_and(|prefixes| {
                    !prefixes.iter().any(|prefix| could_start_with(glob, prefix))
                })
            {
                warning(
                    found,
                    format!("{at}.{kind}.{key}"),
                    format!(
                        "events of type {glob} from {service} carry no subject, and rules pass over events without one, so this rule would never fire; say where the subject is in their data under [events] subjects, e.g. \"{service}.*\" = \"data.object.customer\""
                    ),
                );
            }
        }
    }
}

/// The references of the secrets in an `auth` (for comparing credentials without values).
fn auth_references(auth: &crate::model::Auth) -> Vec<String> {
    use crate::model::Auth;
    match auth {
        Auth::Bearer(secret) => vec![secret.source().to_string()],
        Auth::Basic(basic) => vec![basic.password.source().to_string()],
        Auth::Header { value, .. } | Auth::Query { value, .. } => vec![value.source().to_string()],
        Auth::OAuth2(oauth2) => vec![oauth2.client_secret.source().to_string()],
    }
}

fn environments(config: &Config, found: &mut Found) {
    for (name, environment) in &config.environments {
        for (service, overrides) in &environment.services {
            let at = format!("environments.{name}.services.{service}");
            let Some(base) = config.services.get(service) else {
                error(
                    found,
                    at,
                    format!(
                        "service \"{service}\" is not configured; add [services.{service}] or fix the name"
                    ),
                );
                continue;
            };
            if let Some(url) = &overrides.base_url
                && url::Url::parse(url).is_err()
            {
                error(
                    found,
                    format!("{at}.base_url"),
                    format!("{url:?} is not a URL; write it like https://api.example.com"),
                );
            }
            if overrides.webhook_secret.is_some() && base.webhook.is_none() {
                error(
                    found,
                    format!("{at}.webhook_secret"),
                    format!(
                        "[services.{service}] has no webhook to sign; remove webhook_secret or add [services.{service}.webhook]"
                    ),
                );
            }
        }
    }
    // Each environment its own keys: the same credential reference in two environments
    // (set in both, or one inheriting the base that another sets too) is an error.
    if config.environments.len() < 2 {
        return;
    }
    for (service_name, service) in &config.services {
        let mut seen: Vec<(String, &str, String)> = Vec::new(); // (reference, environment, key path)
        for (name, environment) in &config.environments {
            let overridden = environment
                .services
                .get(service_name)
                .and_then(|o| o.auth.as_ref());
            let (auth, at) = match overridden {
                Some(auth) => (
                    Some(auth),
                    format!("environments.{name}.services.{service_name}.auth"),
                ),
                None => (service.auth.as_ref(), format!("environments.{name}")),
            };
            let Some(auth) = auth else { continue };
            for reference in auth_references(auth) {
                if let Some((_, other, _)) = seen.iter().find(|(r, _, _)| *r == reference) {
                    error_rule(
                        found,
                        "shared-credential-environments",
                        at.clone(),
                        format!(
                            "environments {other} and {name} share the credential of service {service_name} ({reference}); give each environment its own key in [environments.NAME.services.{service_name}] auth"
                        ),
                    );
                } else {
                    seen.push((reference, name, at.clone()));
                }
            }
        }
    }
}

fn projections_and_retention(config: &Config, found: &mut Found) {
    for (name, projection) in &config.projections {
        if projection.events.is_empty() {
            error(
                found,
                format!("projections.{name}.events"),
                "events is empty; list the event types the projection follows, e.g. [\"stripe.customer.*\"]".to_owned(),
            );
        }
    }
    for (pattern, retention) in &config.events.retention {
        let at = format!("events.retention.{pattern}");
        if let Err(problem) = pattern.parse::<wireline_core::TypeGlob>() {
            error(
                found,
                at.clone(),
                format!("{problem}; write a type or a glob such as stripe.charge.*"),
            );
        }
        match (retention.keep, retention.payload) {
            (None, None) => warning(
                found,
                at,
                "neither keep nor payload is set, so this does nothing; remove it or set one"
                    .to_owned(),
            ),
            (Some(keep), Some(payload)) if payload.get() >= keep.get() => warning(
                found,
                format!("{at}.payload"),
                format!(
                    "payload = {payload} is not shorter than keep = {keep}, so the events are deleted before their payload would be dropped"
                ),
            ),
            _ => {}
        }
    }
}

fn webhook_checks(at: &str, webhook: &crate::model::Webhook, found: &mut Found) {
    use crate::model::WebhookScheme;
    match (webhook.scheme, &webhook.hmac) {
        (WebhookScheme::Hmac, None) => error(
            found,
            format!("{at}.hmac"),
            "scheme \"hmac\" needs its settings: add hmac = { header = \"X-Signature\" } (and algorithm, encoding, prefix, signed as the provider documents)".to_owned(),
        ),
        (WebhookScheme::Hmac, Some(hmac)) => {
            if let Err(message) = check_signed_template(&hmac.signed, hmac.timestamp_header.is_some()) {
                error(found, format!("{at}.hmac.signed"), message);
            }
        }
        (_, Some(_)) => warning(
            found,
            format!("{at}.hmac"),
            "hmac settings are only used with scheme = \"hmac\"; remove them".to_owned(),
        ),
        (_, None) => {}
    }
    for (key, value) in [("id", &webhook.id), ("type", &webhook.event_type)] {
        if let Some(value) = value
            && !(value
                .strip_prefix("header:")
                .is_some_and(|name| !name.trim().is_empty())
                || value.starts_with("json:/"))
        {
            error(
                found,
                format!("{at}.{key}"),
                format!(
                    "\"{value}\" is neither \"header:NAME\" nor \"json:/pointer\"; write e.g. \"header:X-Event-Id\" or \"json:/id\""
                ),
            );
        }
    }
    if webhook.tolerance.get().is_zero() {
        error(
            found,
            format!("{at}.tolerance"),
            "tolerance must be longer than 0s (the default is \"5m\")".to_owned(),
        );
    }
}

/// `{body}`, `{timestamp}` (only with a timestamp header) and `{header:NAME}` placeholders.
fn check_signed_template(template: &str, has_timestamp: bool) -> Result<(), String> {
    let mut rest = template;
    let mut body = false;
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else {
            return Err(format!(
                "\"{template}\" opens a placeholder with {{ and never closes it"
            ));
        };
        let name = &rest[start + 1..start + end];
        match name {
            "body" => body = true,
            "timestamp" if has_timestamp => {}
            "timestamp" => {
                return Err("{timestamp} needs timestamp_header: the header the provider puts the signed time in".to_owned());
            }
            _ if name.strip_prefix("header:").is_some_and(|h| !h.is_empty()) => {}
            _ => {
                return Err(format!(
                    "unknown placeholder {{{name}}}; use {{body}}, {{timestamp}} or {{header:NAME}}"
                ));
            }
        }
        rest = &rest[start + end + 1..];
    }
    if body {
        Ok(())
    } else {
        Err(format!(
            "\"{template}\" does not sign {{body}}: a signature that leaves out the body proves nothing about it"
        ))
    }
}

/// Polling alone must stay under 80 % of every window of the service's declared limit: a
/// poller that eats the provider's budget starves the agents' calls (and gets the key banned).
/// Each poll is counted as one call, what an incremental poll costs in steady state.
fn poll_budget(at: &str, service: &Service, spec: &crate::poll::PollSpec, found: &mut Found) {
    let Some(limit) = &service.rate_limit else {
        return;
    };
    let every = spec.every.as_secs_f64();
    let sources = service
        .poll
        .as_ref()
        .map_or(1, |poll| poll.sources.len().max(1)) as f64;
    for window in &limit.0 {
        let span = window.per.get().as_secs_f64();
        let calls = (span / every).max(1.0) * sources;
        let allowed = window.count as f64;
        if calls > 0.8 * allowed {
            error_rule(
                found,
                "poll-budget",
                format!("{at}.poll.every"),
                format!(
                    "polling {sources} source(s) every {}s makes {calls:.0} calls per {}s window, over 80 % of the declared limit of {} per window; poll less often (every {}s or more) or raise rate_limit if the provider allows more",
                    spec.every.as_secs(),
                    window.per.get().as_secs(),
                    window.count,
                    (span * sources / (0.8 * allowed)).ceil()
                ),
            );
            return;
        }
    }
}
