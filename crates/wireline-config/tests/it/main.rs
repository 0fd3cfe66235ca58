//! Integration tests of `wireline.toml` loading: errors, secrets, the starter files, the docs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;
use wireline_config::{Env, Finding, Loaded, STARTER_CONFIG, load, load_str};

fn env(vars: &[(&str, &str)]) -> Env {
    Env::from_map(
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    )
}

fn load_text(text: &str) -> Result<Loaded, Vec<Finding>> {
    let dir = std::env::temp_dir().join("wireline-config-tests-no-dotenv");
    load_str(
        text,
        &dir.join("wireline.toml"),
        &env(&[("TOKEN", "t0ken-value"), ("KEY", "key-value")]),
    )
}

/// One bad config: the first error must sit at `line:column`, name `key_path`, and say
/// `fragment` (the cause or the fix).
#[track_caller]
fn check_error(text: &str, position: (usize, usize), key_path: &str, fragment: &str) {
    let findings = match load_text(text) {
        Ok(_) => panic!("config loaded, expected an error at {key_path}:\n{text}"),
        Err(findings) => findings,
    };
    let Some(error) = findings.iter().find(|f| f.is_error()) else {
        panic!("no error among {findings:?}");
    };
    let shown = error.to_string();
    assert_eq!((error.line, error.column), position, "{shown}");
    assert_eq!(error.key_path, key_path, "{shown}");
    assert!(
        shown.contains(fragment),
        "expected {fragment:?} in: {shown}"
    );
    assert!(!shown.contains('\n'), "not one line: {shown}");
    assert!(shown.contains("wireline.toml:"), "{shown}");
}

#[test]
fn the_audit_flush_takes_zero_up_to_ten_seconds_and_defaults_to_50ms() {
    let flush = |text: &str| {
        load_text(text)
            .expect("loads")
            .config
            .events
            .audit_flush
            .get()
    };
    assert_eq!(flush(""), std::time::Duration::from_millis(50));
    assert_eq!(
        flush("[events]\naudit_flush = \"0s\"\n"),
        std::time::Duration::ZERO
    );
    assert_eq!(
        flush("[events]\naudit_flush = \"10s\"\n"),
        std::time::Duration::from_secs(10)
    );
}

#[test]
fn bad_configs_are_located_and_explained() {
    check_error("[server\nlisten = 1", (1, 8), "", "");
    check_error(
        "[server]\nlisen = \"127.0.0.1:1\"\n",
        (2, 1),
        "server.lisen",
        "unknown field `lisen`",
    );
    check_error(
        "[server]\nlisten = 7480\n",
        (2, 10),
        "server.listen",
        "invalid type",
    );
    check_error(
        "[server]\nbody_limit = \"1024\"\n",
        (2, 14),
        "server.body_limit",
        "e.g. \"512KiB\"",
    );
    check_error(
        "[services.s]\nbase_url = \"https://x.test\"\ntimeout = \"30\"\n",
        (3, 11),
        "services.s.timeout",
        "has no unit; write it with one, e.g. \"30s\"",
    );
    check_error(
        "[services.s]\nbase_url = \"https://x.test\"\nrate_limit = \"fast\"\n",
        (3, 14),
        "services.s.rate_limit",
        "e.g. \"100/s\"",
    );
    check_error(
        "[events]\naudit_flush = \"1m\"\n",
        (2, 15),
        "events.audit_flush",
        "use at most \"10s\"",
    );
    check_error(
        "[agents.bot]\ntoken = \"plain-text-token\"\n",
        (2, 9),
        "agents.bot.token",
        "a secret must be a reference, not a value",
    );
    check_error(
        "[services.stripe]\nbase_url = \"https://api.stripe.com\"\nauth = { bearer = \"sk_test_4eC39HqLyjWDarjtT1zdp7dc\" }\n",
        (3, 19),
        "services.stripe.auth.bearer",
        "starts with `sk_test_`",
    );
    check_error(
        "[services.s]\nbase_url = \"https://x.test\"\ndescription = \"key ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789\"\n",
        (3, 15),
        "services.s.description",
        "move the value to the environment",
    );
    check_error(
        "[services.s]\nbase_url = \"http://example.com\"\n",
        (2, 12),
        "services.s.base_url",
        "use https://",
    );
    check_error(
        "[services.s]\nbase_url = \"https://x.test\"\nauth = { header = \"X-Key\" }\n",
        (3, 8),
        "services.s.auth",
        "need a `value`",
    );
    check_error(
        "[agents.bot]\ntoken = \"${env:TOKEN}\"\nscopes = [\"events:read\", \"stripe:read\"]\n",
        (3, 26),
        "agents.bot.scopes[1]",
        "service \"stripe\", which is not configured",
    );
    check_error(
        "[[subscriptions]]\nagent = \"ghost\"\nevents = [\"*\"]\n",
        (2, 9),
        "subscriptions[0].agent",
        "add [agents.ghost]",
    );
    check_error(
        "[agents.Bot]\ntoken = \"${env:TOKEN}\"\nscopes = [\"events:read\"]\n",
        (1, 1),
        "agents.Bot",
        "lower-case",
    );
    check_error(
        "[agents.bot]\ntoken = \"${env:MISSING_TOKEN}\"\nscopes = [\"events:read\"]\n",
        (2, 9),
        "agents.bot.token",
        "environment variable MISSING_TOKEN is not set",
    );
    check_error(
        "[services.s]\nbase_url = \"https://x.test\"\n[services.s.webhook]\nscheme = \"standard\"\nsecret = \"${env:KEY}\"\n",
        (5, 10),
        "services.s.webhook.secret",
        "must be a Standard Webhooks secret: whsec_ followed by base64",
    );
    check_error(
        "[services.s]\nbase_url = \"https://x.test\"\n[services.s.webhook]\nscheme = \"hmac\"\nsecret = \"${env:KEY}\"\n",
        (3, 1),
        "services.s.webhook.hmac",
        "add hmac = { header",
    );
    check_error(
        "[services.s]\nbase_url = \"https://x.test\"\n[services.s.webhook]\nscheme = \"hmac\"\nsecret = \"${env:KEY}\"\nhmac = { header = \"X-Sig\", signed = \"{timestamp}\" }\n",
        (6, 37),
        "services.s.webhook.hmac.signed",
        "{timestamp} needs timestamp_header",
    );
    check_error(
        "[services.s]\nbase_url = \"https://x.test\"\n[services.s.webhook]\nscheme = \"github\"\nsecret = \"${env:KEY}\"\nid = \"body.id\"\n",
        (6, 6),
        "services.s.webhook.id",
        "\"header:X-Event-Id\" or \"json:/id\"",
    );
    check_error(
        "[services.s]\nbase_url = \"https://x.test\"\nrate_limit = \"1000/day\"\n[services.s.poll]\npath = \"/items\"\nevery = \"1m\"\n",
        (6, 9),
        "services.s.poll.every",
        "makes 1440 calls per 86400s window, over 80 % of the declared limit of 1000",
    );
    check_error(
        "[services.s]\nbase_url = \"https://x.test\"\nrate_limit = \"200/h\"\n[services.s.poll]\npath = \"/inbox/{source}\"\nevery = \"1m\"\nsources = [\"a\", \"b\", \"c\"]\n",
        (6, 9),
        "services.s.poll.every",
        "polling 3 source(s) every 60s makes 180 calls",
    );
    check_error(
        "[services.s]\nbase_url = \"https://x.test\"\n[services.s.poll]\nevery = \"1m\"\n",
        (3, 1),
        "services.s.poll.path",
        "say which endpoint to poll",
    );
    check_error(
        "[services.s]\nbase_url = \"https://x.test\"\n[services.s.poll]\npath = \"/x\"\nnext = \"pages\"\n",
        (5, 8),
        "services.s.poll.next",
        "write cursor:PARAM, link, body:FIELD, page:PARAM or none",
    );
    check_error(
        "[services.s]\nbase_url = \"https://x.test\"\n[services.s.webhook]\nscheme = \"stripe\"\nsecret = \"${file:does-not-exist}\"\n",
        (5, 10),
        "services.s.webhook.secret",
        "cannot read secret file",
    );
    check_error(
        "[services.s]\nbase_url = \"https://x.test\"\nfallback = [\"ses\"]\n",
        (3, 13),
        "services.s.fallback[0]",
        "fallback service \"ses\" is not configured",
    );
    check_error(
        "[services.s]\nbase_url = \"https://x.test\"\nrate_limit = [\"100/s\", \"lots/day\"]\n",
        (3, 14),
        "services.s.rate_limit",
        "invalid rate \"lots/day\"",
    );
    check_error(
        "[services.s]\nbase_url = \"https://x.test\"\nheadroom = 2.0\n",
        (3, 12),
        "services.s.headroom",
        "between 0.0 and 0.9",
    );
    check_error(
        "[agents.bot]\ntoken = \"${env:TOKEN}\"\nscopes = [\"events:read\"]\ncredentials.stripe = { bearer = \"${env:KEY}\" }\n",
        (4, 22),
        "agents.bot.credentials.stripe",
        "credentials for \"stripe\", which is not configured",
    );
    check_error(
        "[services.s]\nbase_url = \"https://x.test\"\n[services.s.webhook]\nscheme = \"paypal\"\nsecret = \"${env:KEY}\"\n",
        (4, 10),
        "services.s.webhook.scheme",
        "unknown variant `paypal`",
    );
}

#[test]
fn errors_never_repeat_a_literal_secret() {
    let secret = "my-very-secret-literal-value";
    let text = format!(
        "[agents.bot]\ntoken = \"{secret}\"\n[services.s]\nbase_url = \"https://x.test\"\nauth = {{ bearer = \"{secret}\" }}\n"
    );
    let findings = load_text(&text).err().unwrap_or_default();
    assert!(!findings.is_empty());
    for finding in findings {
        assert!(!finding.to_string().contains(secret), "{finding}");
    }
}

#[test]
fn all_independent_errors_are_reported_at_once() {
    let text = "[agents.a]\ntoken = \"${env:NOPE_A}\"\nscopes = [\"events:read\"]\n[agents.b]\ntoken = \"${env:NOPE_B}\"\nscopes = [\"events:read\"]\n";
    let findings = load_text(text).err().unwrap_or_default();
    let paths: Vec<&str> = findings.iter().map(|f| f.key_path.as_str()).collect();
    assert_eq!(paths, ["agents.a.token", "agents.b.token"]);
}

#[test]
fn secrets_resolve_from_env_then_dotenv_then_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join(".env"),
        "FROM_DOTENV=dotenv-value\nBOTH=dotenv-loses\n",
    )
    .expect("write .env");
    std::fs::write(dir.path().join("hook.secret"), "file-value\n").expect("write secret file");
    let config = r#"
[agents.a]
token = "${env:FROM_DOTENV}"
scopes = ["events:read"]
[agents.b]
token = "${env:BOTH}"
scopes = ["events:read"]
[services.s]
base_url = "http://127.0.0.1:9"
auth = { basic = { username = "api", password = "${env:FROM_PROCESS}" } }
[services.s.webhook]
scheme = "github"
secret = "${file:hook.secret}"
"#;
    let path = dir.path().join("wireline.toml");
    std::fs::write(&path, config).expect("write config");
    let loaded = load(
        &path,
        &env(&[("FROM_PROCESS", "process-value"), ("BOTH", "process-wins")]),
    )
    .unwrap_or_else(|findings| panic!("{findings:#?}"));
    let value = |secret: &wireline_config::Secret| {
        secret
            .value()
            .map(|v| v.expose_secret().to_owned())
            .unwrap_or_default()
    };
    let c = &loaded.config;
    assert_eq!(value(&c.agents["a"].token), "dotenv-value");
    assert_eq!(value(&c.agents["b"].token), "process-wins");
    let Some(wireline_config::model::Auth::Basic(basic)) = &c.services["s"].auth else {
        panic!("basic auth expected")
    };
    assert_eq!(value(&basic.password), "process-value");
    let webhook = c.services["s"].webhook.as_ref().expect("webhook");
    assert_eq!(value(&webhook.secret), "file-value");
    assert!(
        !format!("{c:?}").contains("value"),
        "Debug must not show secret values: {c:?}"
    );
    assert_eq!(loaded.storage_path(), dir.path().join("wireline.db"));
}

#[test]
fn the_starter_config_passes_with_the_env_example_filled_in() {
    let loaded = load_str(
        STARTER_CONFIG,
        Path::new("/nonexistent/wireline.toml"),
        &env(&[("WIRELINE_ASSISTANT_TOKEN", "x")]),
    )
    .unwrap_or_else(|findings| panic!("{findings:#?}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    for line in wireline_config::STARTER_ENV_EXAMPLE
        .lines()
        .filter(|l| !l.starts_with('#'))
    {
        let name = line.split('=').next().unwrap_or_default();
        assert!(
            STARTER_CONFIG.contains(&format!("${{env:{name}}}")),
            "{name} unused"
        );
    }
}

#[test]
fn warnings_do_not_stop_a_config() {
    let loaded =
        load_text("[agents.idle]\ntoken = \"${env:TOKEN}\"\n").unwrap_or_else(|f| panic!("{f:#?}"));
    assert_eq!(loaded.warnings.len(), 1);
    assert!(
        loaded.warnings[0]
            .to_string()
            .contains("warning: agents.idle.scopes: this agent has no scopes")
    );
}

#[test]
fn the_schema_carries_the_doc_comments() {
    let schema = wireline_config::json_schema();
    let listen = &schema["$defs"]["Server"]["properties"]["listen"];
    assert!(
        listen["description"]
            .as_str()
            .is_some_and(|d| d.contains("Address and port"))
    );
    assert_eq!(listen["default"], "127.0.0.1:7480");
    assert_eq!(schema["$defs"]["Server"]["additionalProperties"], false);
}

#[test]
fn docs_configuration_md_is_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == wireline_config::reference_markdown(),
        "docs/configuration.md is stale; regenerate it with: cargo run -q -- schema --format markdown > docs/configuration.md"
    );
}

#[test]
fn trigger_rules_are_checked() {
    let services = "[services.app]\nbase_url = \"https://x.test\"\n";
    let ok = format!(
        "{services}[[triggers]]\nname = \"no-login\"\nemit = \"derived.no_login_7d\"\nabsence = {{ first = \"app.user.signup\", missing = \"app.user.first_login\", within = \"7d\" }}\n[[triggers]]\nname = \"failing\"\nemit = \"derived.failing\"\nthreshold = {{ event = \"app.payment.failed\", count = 3, within = \"24h\" }}\n[[triggers]]\nname = \"escalate\"\nemit = \"derived.escalate\"\nsequence = {{ first = \"derived.failing\", then = \"derived.no_login_7d\", within = \"1h\" }}\n"
    );
    // Rules group by subject: a service's events (webhooks, polls) need [events] subjects to
    // have one. The rules above read events of a service that receives none: no warning.
    let no_subject = |loaded: &Loaded| -> Vec<String> {
        loaded
            .warnings
            .iter()
            .map(ToString::to_string)
            .filter(|w| w.contains("carry no subject"))
            .collect()
    };
    let quiet = load_text(&ok).unwrap_or_else(|f| panic!("{f:#?}"));
    assert!(no_subject(&quiet).is_empty(), "{:#?}", quiet.warnings);
    let hooked = ok.replace(
        "base_url = \"https://x.test\"\n",
        "base_url = \"https://x.test\"\nwebhook = { scheme = \"stripe\", secret = \"${env:KEY}\" }\n",
    );
    let warned = no_subject(&load_text(&hooked).unwrap_or_else(|f| panic!("{f:#?}")));
    for input in [
        "app.user.signup",
        "app.user.first_login",
        "app.payment.failed",
    ] {
        assert!(
            warned
                .iter()
                .any(|w| w.contains(&format!("events of type {input} from app"))),
            "{input}: {warned:#?}"
        );
    }
    assert_eq!(warned.len(), 3, "not the derived inputs: {warned:#?}");
    let with_subjects = load_text(&format!(
        "{hooked}[events]\nsubjects = {{ \"app.user.*\" = \"data.user\", \"app.payment.failed\" = \"data.customer\" }}\n"
    ))
    .unwrap_or_else(|f| panic!("{f:#?}"));
    assert!(
        no_subject(&with_subjects).is_empty(),
        "{:#?}",
        with_subjects.warnings
    );
    // An agent that may append app.* events sets their subject itself.
    let appended = load_text(&format!(
        "{hooked}[agents.crm]\ntoken = \"${{env:TOKEN}}\"\nscopes = [\"events:write:app.\"]\n"
    ))
    .unwrap_or_else(|f| panic!("{f:#?}"));
    assert!(no_subject(&appended).is_empty(), "{:#?}", appended.warnings);
    check_error(
        &format!("{services}[[triggers]]\nname = \"r\"\nemit = \"x.y\"\n"),
        (3, 1),
        "triggers[0]",
        "exactly one of sequence, absence or threshold (it has none)",
    );
    check_error(
        &format!(
            "{services}[[triggers]]\nname = \"r\"\nemit = \"x.y\"\nthreshold = {{ event = \"app.a\", count = 3, within = \"1h\" }}\nabsence = {{ first = \"app.a\", missing = \"app.b\", within = \"1h\" }}\n"
        ),
        (3, 1),
        "triggers[0]",
        "(it has absence and threshold)",
    );
    check_error(
        &format!(
            "{services}[[triggers]]\nname = \"r\"\nemit = \"x.y\"\nabsence = {{ first = \"app.a\", missing = \"app.b\", within = \"0s\" }}\n"
        ),
        (6, 58),
        "triggers[0].absence.within",
        "between 1s and 366d",
    );
    check_error(
        &format!(
            "{services}[[triggers]]\nname = \"r\"\nemit = \"x.y\"\nthreshold = {{ event = \"shopfiy.order.*\", count = 3, within = \"1h\" }}\n"
        ),
        (6, 23),
        "triggers[0].threshold.event",
        "nothing in this config produces events of type shopfiy.order.*",
    );
    check_error(
        &format!(
            "{services}[[triggers]]\nname = \"r\"\nemit = \"app.x\"\nthreshold = {{ event = \"app.*\", count = 3, within = \"1h\" }}\n"
        ),
        (6, 23),
        "triggers[0].threshold.event",
        "would trigger itself",
    );
    check_error(
        &format!(
            "{services}[[triggers]]\nname = \"r\"\nemit = \"x.y\"\nthreshold = {{ event = \"app.a\", count = 1, within = \"1h\" }}\n"
        ),
        (6, 40),
        "triggers[0].threshold.count",
        "fires on every event",
    );
    // An agent that may append any type makes every pattern possible.
    load_text(
        "[agents.bot]\ntoken = \"${env:TOKEN}\"\nscopes = [\"events:write\"]\n[[triggers]]\nname = \"r\"\nemit = \"x.y\"\nthreshold = { event = \"anything.at.all\", count = 2, within = \"1h\" }\n",
    )
    .unwrap_or_else(|f| panic!("{f:#?}"));
}

#[test]
fn environments_pick_urls_and_keys_and_guard_them() {
    use wireline_config::load_str_in;
    let text = r#"
[services.stripe]
base_url = "https://api.stripe.com"
auth = { bearer = "${env:STRIPE_LIVE}" }
[environments.dev]
mock = true
[environments.dev.services.stripe]
base_url = "http://127.0.0.1:7490/stripe"
auth = { bearer = "${env:STRIPE_DEV}" }
[environments.staging.services.stripe]
auth = { bearer = "${env:STRIPE_TEST}" }
[environments.prod]
production = true
"#;
    let path = std::env::temp_dir().join("wireline-config-tests-no-dotenv/wireline.toml");
    let vars = |pairs: &[(&str, &str)]| env(pairs);
    // dev: the emulator and the dev key; the live key need not exist on this machine.
    let dev = load_str_in(
        text,
        &path,
        &vars(&[("STRIPE_DEV", "sk_test_dev")]),
        Some("dev"),
    )
    .unwrap_or_else(|f| panic!("{f:#?}"));
    let stripe = &dev.config.services["stripe"];
    assert_eq!(stripe.base_url, "http://127.0.0.1:7490/stripe");
    let Some(wireline_config::model::Auth::Bearer(secret)) = &stripe.auth else {
        panic!("bearer")
    };
    assert_eq!(
        secret.value().expect("resolved").expose_secret(),
        "sk_test_dev"
    );
    assert_eq!(dev.config.active_environment.as_deref(), Some("dev"));
    // A live key outside production is refused, and the message never shows it.
    let findings = load_str_in(
        text,
        &path,
        &vars(&[("STRIPE_TEST", "sk_live_leaked123")]),
        Some("staging"),
    )
    .expect_err("refused");
    let shown = findings[0].to_string();
    assert!(
        shown.contains("environments.staging.services.stripe.auth.bearer"),
        "{shown}"
    );
    assert!(
        shown.contains("live key") && !shown.contains("leaked123"),
        "{shown}"
    );
    // A test key in production is refused.
    let findings = load_str_in(
        text,
        &path,
        &vars(&[("STRIPE_LIVE", "sk_test_oops")]),
        Some("prod"),
    )
    .expect_err("refused");
    assert!(
        findings[0].to_string().contains("test key"),
        "{}",
        findings[0]
    );
    load_str_in(
        text,
        &path,
        &vars(&[("STRIPE_LIVE", "sk_live_ok")]),
        Some("prod"),
    )
    .unwrap_or_else(|f| panic!("{f:#?}"));
    // Production refuses plain http upstreams.
    let http_prod = text.replace("https://api.stripe.com", "http://127.0.0.1:9999");
    let findings = load_str_in(
        &http_prod,
        &path,
        &vars(&[("STRIPE_LIVE", "sk_live_ok")]),
        Some("prod"),
    )
    .expect_err("refused");
    assert!(
        findings[0].to_string().contains("must be https://"),
        "{}",
        findings[0]
    );
    // An unknown environment names the declared ones.
    let findings = load_str_in(text, &path, &vars(&[]), Some("qa")).expect_err("refused");
    assert!(
        findings[0]
            .to_string()
            .contains("declared: dev, prod, staging"),
        "{}",
        findings[0]
    );
    // Two environments with one key is an error.
    let shared = text.replace("${env:STRIPE_TEST}", "${env:STRIPE_DEV}");
    let findings = load_str_in(
        &shared,
        &path,
        &vars(&[("STRIPE_DEV", "sk_test_dev")]),
        Some("dev"),
    )
    .expect_err("refused");
    assert!(
        findings[0]
            .to_string()
            .contains("environments dev and staging share the credential of service stripe"),
        "{}",
        findings[0]
    );
}

#[test]
fn the_tls_floor_cannot_be_lowered() {
    check_error(
        "[services.s]\nbase_url = \"https://x.test\"\nmin_tls = \"1.1\"\n",
        (3, 11),
        "services.s.min_tls",
        "TLS 1.2 is the minimum and cannot be lowered",
    );
}

#[test]
fn the_key_inventory_knows_ages_agents_environments_and_shared_values() {
    use wireline_config::keys::{Status, inventory};
    let text = r#"
[agents.billing]
token = "${env:BILLING_TOKEN}"
scopes = ["stripe:read"]
[agents.support]
token = "${env:SUPPORT_TOKEN}"
scopes = ["stripe:read", "slack:write"]
credentials.slack = { bearer = "${env:SUPPORT_SLACK}" }
[agents.ops]
token = "${env:OPS_TOKEN}"
scopes = ["slack:write"]
credentials.slack = { bearer = "${env:OPS_SLACK}" }
[services.stripe]
base_url = "https://api.stripe.com"
auth = { bearer = "${env:STRIPE_KEY}" }
[services.slack]
base_url = "https://slack.com"
[environments.staging.services.stripe]
auth = { bearer = "${env:STRIPE_SANDBOX}" }
[keys.STRIPE_KEY]
created = "2026-08-01"
owner = "payments"
[keys.BILLING_TOKEN]
created = "2026-09-10"
[keys.OPS_SLACK]
created = "2026-11-20"
rotate_every = "30d"
[keys.TYPO_KEY]
created = "2026-01-01"
"#;
    let values = [
        ("BILLING_TOKEN", "b-token"),
        ("SUPPORT_TOKEN", "s-token"),
        ("OPS_TOKEN", "o-token"),
        ("SUPPORT_SLACK", "xoxb-same-value"),
        ("OPS_SLACK", "xoxb-same-value"),
        ("STRIPE_KEY", "stripe-value"),
    ];
    let loaded = load_str(
        text,
        &std::env::temp_dir().join("wireline-config-tests-no-dotenv/wireline.toml"),
        &env(&values),
    )
    .unwrap_or_else(|f| panic!("{f:#?}"));
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("agents.support.credentials.slack")
                || w.contains("agents.ops.credentials.slack")),
        "{warnings:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("agents ops and support use the same upstream credential value")),
        "{warnings:#?}"
    );
    assert!(
        warnings.iter().all(|w| !w.contains("xoxb-same-value")),
        "never the value"
    );
    assert!(
        warnings.iter().any(|w| w.contains("keys.TYPO_KEY")),
        "{warnings:#?}"
    );

    let today: jiff::civil::Date = "2026-11-29".parse().expect("date");
    let keys = inventory(&loaded.config, today);
    let key = |name: &str| {
        keys.iter()
            .find(|k| k.name == name)
            .unwrap_or_else(|| panic!("{name}"))
    };
    let stripe = key("STRIPE_KEY");
    assert_eq!(
        stripe.status,
        Status::Overdue,
        "120 days old, 90-day rotation"
    );
    assert_eq!(stripe.age_days, Some(120));
    assert_eq!(
        stripe.due.map(|d| d.to_string()).as_deref(),
        Some("2026-10-30")
    );
    assert_eq!(
        stripe.agents.iter().map(String::as_str).collect::<Vec<_>>(),
        ["billing", "support"]
    );
    assert_eq!(
        stripe
            .environments
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["base"]
    );
    assert_eq!(
        key("BILLING_TOKEN").status,
        Status::DueSoon,
        "80 days of 90"
    );
    assert_eq!(key("OPS_SLACK").status, Status::Ok);
    assert_eq!(key("SUPPORT_TOKEN").status, Status::Unknown);
    assert_eq!(
        key("STRIPE_SANDBOX")
            .environments
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["staging"]
    );
    assert!(
        keys.iter().all(|k| !k.reference.contains("value")),
        "references, never values"
    );
}

#[test]
fn oauth_scopes_beyond_what_operations_need_are_flagged() {
    let loaded = load_text(
        "[services.crm]\nbase_url = \"https://api.crm.test\"\nauth = { oauth2 = { token_url = \"https://auth.crm.test/token\", client_id = \"app\", client_secret = \"${env:KEY}\", scopes = [\"contacts.read\", \"admin.all\"] } }\n[services.crm.operations.get]\nmethod = \"GET\"\npath = \"/contacts/{id}\"\nscopes = [\"contacts.read\"]\n",
    )
    .unwrap_or_else(|f| panic!("{f:#?}"));
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("services.crm.auth.oauth2.scopes")
                && w.contains("admin.all")
                && !w.contains("contacts.read,")),
        "{warnings:#?}"
    );
}

#[test]
fn an_alert_url_with_a_token_is_a_secret_reference() {
    let slack = format!(
        "https://hooks.slack.com/services/{}/{}/{}",
        "T0ABCDEF1", "B0ABCDEF2", "x1y2z3w4v5u6t7s8"
    );
    let literal = load_text(&format!("[alerts]\nurl = \"{slack}\"\nslack = true\n"))
        .expect_err("a token in the file");
    assert!(
        literal[0].to_string().contains("Slack incoming webhook")
            || literal[0].to_string().contains("credential"),
        "{}",
        literal[0]
    );
    assert!(!literal[0].to_string().contains("x1y2z3w4v5u6t7s8"));
    let loaded = load_str(
        "[alerts]\nurl = \"${env:ALERTS_URL}\"\nslack = true\n",
        &std::env::temp_dir().join("wireline-config-tests-no-dotenv/wireline.toml"),
        &env(&[("ALERTS_URL", &slack)]),
    )
    .unwrap_or_else(|f| panic!("{f:#?}"));
    let url = loaded.config.alerts.url.as_ref().expect("url");
    assert_eq!(url.value().as_deref(), Some(slack.as_str()));
    assert_eq!(
        format!("{url:?}"),
        "Secret(${env:ALERTS_URL})",
        "printed as its reference"
    );
    load_text("[alerts]\nurl = \"https://alerts.example.com/hook\"\n")
        .unwrap_or_else(|f| panic!("{f:#?}"));
}

#[test]
fn findings_that_are_advisor_rules_carry_their_ids() {
    let floor = load_text("[services.s]\nbase_url = \"https://x.test\"\nmin_tls = \"1.1\"\n")
        .expect_err("floor");
    assert_eq!(floor[0].rule, Some("tls-floor"));
    let http = load_text("[services.s]\nbase_url = \"http://x.test\"\n").expect_err("http");
    assert_eq!(http[0].rule, Some("plain-http"));
    let unknown = load_text("[services.s]\nbase_url = \"https://x.test\"\nmin_tls = \"2.0\"\n")
        .expect_err("bad");
    assert_eq!(unknown[0].rule, None, "only the floor is the floor rule");
}
