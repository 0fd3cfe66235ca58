//! `wireline test [PATH]`: declarative end-to-end scenarios for a user's own integrations.
//!
//! A scenario file (TOML) names the config to test and lists steps: switch emulator faults
//! on, make agent calls through the gateway, act on an emulator directly (which sends its
//! webhooks to the gateway), append events, wait, and expect: statuses, headers and JSON
//! fields of answers, events an agent can read, upstream call counts, breaker states. Each
//! scenario gets a fresh gateway (`--env` the scenario's environment, default `dev`, whose
//! `mock = true` brings the emulators) on free ports with temporary storage; the report says
//! what passed and, for a failure, which step expected what and saw what. `--junit FILE`
//! writes JUnit XML for CI systems.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::Value;

/// A scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    /// What the scenario checks.
    name: String,
    /// The config to test, relative to the scenario file (default: `wireline.toml` in the
    /// current folder).
    #[serde(default)]
    config: Option<PathBuf>,
    /// The environment to run in (default `dev`).
    #[serde(default)]
    environment: Option<String>,
    /// The steps, in order.
    steps: Vec<Step>,
}

/// One step: exactly one action, and optionally what to expect of its answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    /// Faults for an emulator or stub service: `{ target = "stripe:/v1/customers",
    /// fail_next = 1 }` (the other keys as in `[mock.faults]`); `clear = true` removes them.
    #[serde(default)]
    fault: Option<toml::Table>,
    /// An agent's call through the gateway.
    #[serde(default)]
    call: Option<Call>,
    /// A call straight to the emulators (as if something happened at the provider).
    #[serde(default)]
    emulator: Option<Call>,
    /// An event appended by an agent (`POST /v1/events`): the CloudEvent's fields.
    #[serde(default)]
    produce: Option<Produce>,
    /// A pause, e.g. `"3s"` (for time-based rules).
    #[serde(default)]
    wait: Option<wireline_core::Duration>,
    /// Expectations of the call's answer.
    #[serde(default)]
    expect: Option<Expect>,
    /// Events an agent can read, waited for up to `within`.
    #[serde(default)]
    expect_events: Option<ExpectEvents>,
    /// Requests an emulator received for a route (`"POST /v1/customers"`).
    #[serde(default)]
    expect_upstream: Option<ExpectUpstream>,
    /// A service's circuit breaker state (`closed`, `open`, `half_open`).
    #[serde(default)]
    expect_breaker: Option<ExpectBreaker>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Call {
    /// The calling agent (its token comes from the config); not for `emulator`.
    #[serde(default)]
    agent: Option<String>,
    #[serde(default = "get")]
    method: String,
    /// The path on the gateway (`/proxy/stripe/v1/customers`) or the emulators
    /// (`/stripe/v1/customers`).
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// A JSON body.
    #[serde(default)]
    json: Option<toml::Value>,
    /// A form body (Stripe).
    #[serde(default)]
    form: Option<BTreeMap<String, String>>,
    /// Send this many times, one after the other (expectations apply to each).
    #[serde(default = "one")]
    times: usize,
    /// Send the `times` calls all at once instead (a burst).
    #[serde(default)]
    concurrent: bool,
}

fn get() -> String {
    "GET".to_owned()
}

fn one() -> usize {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Produce {
    agent: String,
    #[serde(rename = "type")]
    ty: String,
    id: String,
    #[serde(default = "default_source")]
    source: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    data: Option<toml::Value>,
}

fn default_source() -> String {
    "wireline-test".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(default)]
    status: Option<u16>,
    /// Header values (names in any case).
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Values at dotted paths of the JSON body: `{ "error.code" = "card_declined" }`.
    #[serde(default)]
    json: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectEvents {
    agent: String,
    /// A type glob.
    types: String,
    /// Exactly this many (default: at least one).
    #[serde(default)]
    count: Option<usize>,
    /// Only events about this subject.
    #[serde(default)]
    subject: Option<String>,
    #[serde(default = "default_within")]
    within: wireline_core::Duration,
}

fn default_within() -> wireline_core::Duration {
    wireline_core::Duration::from_secs(10)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectUpstream {
    /// The emulator or stub service.
    service: String,
    /// `METHOD /path` as the emulator saw it.
    route: String,
    count: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectBreaker {
    service: String,
    state: String,
}

/// What a scenario came to.
struct Ran {
    file: String,
    name: String,
    seconds: f64,
    steps: usize,
    failure: Option<String>,
}

pub fn run(path: &Path, junit: Option<&Path>) -> anyhow::Result<()> {
    let files = scenario_files(path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut results = Vec::new();
    for file in &files {
        let started = Instant::now();
        let outcome = runtime.block_on(run_file(file));
        let ran = match outcome {
            Ok((name, steps, failure)) => Ran {
                file: file.display().to_string(),
                name,
                seconds: started.elapsed().as_secs_f64(),
                steps,
                failure,
            },
            Err(error) => Ran {
                file: file.display().to_string(),
                name: file.display().to_string(),
                seconds: started.elapsed().as_secs_f64(),
                steps: 0,
                failure: Some(format!("{error:#}")),
            },
        };
        match &ran.failure {
            None => println!(
                "PASS  {}: {} ({} steps, {:.1} s)",
                ran.file, ran.name, ran.steps, ran.seconds
            ),
            Some(failure) => println!(
                "FAIL  {}: {} ({:.1} s)\n      {failure}",
                ran.file, ran.name, ran.seconds
            ),
        }
        results.push(ran);
    }
    let failed = results.iter().filter(|r| r.failure.is_some()).count();
    if let Some(junit) = junit {
        std::fs::write(junit, junit_xml(&results))
            .with_context(|| format!("cannot write {}", junit.display()))?;
    }
    println!(
        "{} scenario(s): {} passed, {failed} failed",
        results.len(),
        results.len() - failed
    );
    if failed > 0 {
        anyhow::bail!("{failed} scenario(s) failed");
    }
    Ok(())
}

fn scenario_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).with_context(|| {
        format!(
            "cannot read {}: give a scenario file or a folder of them (*.toml)",
            path.display()
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    anyhow::ensure!(
        !files.is_empty(),
        "no scenario files (*.toml) in {}",
        path.display()
    );
    Ok(files)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn junit_xml(results: &[Ran]) -> String {
    let failures = results.iter().filter(|r| r.failure.is_some()).count();
    let total: f64 = results.iter().map(|r| r.seconds).sum();
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"wireline test\" tests=\"{}\" failures=\"{failures}\" time=\"{total:.3}\">\n  <testsuite name=\"wireline\" tests=\"{}\" failures=\"{failures}\" time=\"{total:.3}\">\n",
        results.len(),
        results.len()
    );
    for ran in results {
        xml.push_str(&format!(
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
            escape(&ran.file),
            escape(&ran.name),
            ran.seconds
        ));
        match &ran.failure {
            None => xml.push_str("/>\n"),
            Some(failure) => xml.push_str(&format!(
                ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                escape(failure.lines().next().unwrap_or_default()),
                escape(failure)
            )),
        }
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

struct Gateway {
    child: Child,
    config: PathBuf,
    storage: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
        let _ = &self.storage;
    }
}

/// Replaces `from` with `to` in every string of `value`.
fn rewrite(value: &mut toml::Value, from: &str, to: &str) {
    match value {
        toml::Value::String(text) => *text = text.replace(from, to),
        toml::Value::Array(items) => items.iter_mut().for_each(|v| rewrite(v, from, to)),
        toml::Value::Table(table) => table.iter_mut().for_each(|(_, v)| rewrite(v, from, to)),
        _ => {}
    }
}

struct Session {
    http: reqwest::Client,
    gateway: String,
    mock: String,
    tokens: BTreeMap<String, String>,
}

async fn run_file(file: &Path) -> anyhow::Result<(String, usize, Option<String>)> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let scenario: Scenario =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let config_path = match &scenario.config {
        Some(config) => file.parent().unwrap_or(Path::new(".")).join(config),
        None => PathBuf::from("wireline.toml"),
    };
    let environment = scenario
        .environment
        .clone()
        .unwrap_or_else(|| "dev".to_owned());
    let loaded = wireline_config::load_in(
        &config_path,
        &wireline_config::Env::process(),
        Some(&environment),
    )
    .map_err(|findings| {
        let first = findings
            .iter()
            .find(|f| f.is_error())
            .map(ToString::to_string)
            .unwrap_or_default();
        anyhow::anyhow!("the config does not load in environment {environment}: {first}")
    })?;
    anyhow::ensure!(
        loaded
            .config
            .environments
            .get(&environment)
            .is_some_and(|e| e.mock),
        "environment {environment} has no mock = true: scenarios run against the emulators; add [environments.{environment}] mock = true"
    );
    // A copy of the config on free ports with temporary storage, beside the original so its
    // relative paths (.env, stubs, ${file:...}) still hold.
    let (gateway_port, mock_port) = (super::free_port()?, super::free_port()?);
    let (old_gateway, old_mock) = (
        loaded.config.server.listen.to_string(),
        loaded.config.mock.listen.to_string(),
    );
    let (new_gateway, new_mock) = (
        format!("127.0.0.1:{gateway_port}"),
        format!("127.0.0.1:{mock_port}"),
    );
    let mut table: toml::Value = toml::from_str(&std::fs::read_to_string(&config_path)?)?;
    rewrite(&mut table, &old_gateway, &new_gateway);
    rewrite(&mut table, &old_mock, &new_mock);
    let storage = tempfile::Builder::new()
        .prefix("wireline-test-")
        .tempdir()?;
    if let toml::Value::Table(root) = &mut table {
        let server = root
            .entry("server")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(server) = server {
            server.insert("listen".into(), toml::Value::String(new_gateway.clone()));
            server.insert("shutdown_grace".into(), toml::Value::String("1s".into()));
        }
        let store = root
            .entry("storage")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(store) = store {
            store.insert(
                "path".into(),
                toml::Value::String(storage.path().join("wireline.db").display().to_string()),
            );
        }
        let mock = root
            .entry("mock")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(mock) = mock {
            mock.insert("listen".into(), toml::Value::String(new_mock.clone()));
        }
    }
    let folder = config_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let copy = folder.join(format!(".wireline-test-{gateway_port}.toml"));
    std::fs::write(&copy, toml::to_string(&table)?)?;
    let child = Command::new(std::env::current_exe()?)
        .args(["--log-format", "json", "--env", &environment, "run", "-c"])
        .arg(&copy)
        .env("WIRELINE_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start the gateway")?;
    let _gateway = Gateway {
        child,
        config: copy,
        storage,
    };
    let context = Session {
        http: wireline_direct::client::build(None).map_err(anyhow::Error::msg)?,
        gateway: format!("http://{new_gateway}"),
        mock: format!("http://{new_mock}"),
        tokens: loaded
            .config
            .agents
            .iter()
            .filter_map(|(name, agent)| {
                Some((
                    name.clone(),
                    agent.token.value()?.expose_secret().to_owned(),
                ))
            })
            .collect(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(response) = context
            .http
            .get(format!("{}/readyz", context.gateway))
            .send()
            .await
            && response.status() == 200
        {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the gateway did not become ready in 20 s (run `wireline --env {environment} run -c {}` by hand to see why)",
            config_path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (index, step) in scenario.steps.iter().enumerate() {
        if let Err(failure) = run_step(&context, step).await {
            return Ok((
                scenario.name,
                scenario.steps.len(),
                Some(format!("step {}: {failure:#}", index + 1)),
            ));
        }
    }
    Ok((scenario.name, scenario.steps.len(), None))
}

fn to_json(value: &toml::Value) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

async fn send(
    context: &Session,
    call: &Call,
    base: &str,
) -> anyhow::Result<(u16, reqwest::header::HeaderMap, String)> {
    let method: reqwest::Method = call
        .method
        .to_uppercase()
        .parse()
        .with_context(|| format!("method {:?}", call.method))?;
    let mut request = context.http.request(method, format!("{base}{}", call.path));
    if let Some(agent) = &call.agent {
        let token = context
            .tokens
            .get(agent)
            .with_context(|| format!("no agent {agent:?} in the config"))?;
        request = request.bearer_auth(token);
    }
    for (name, value) in &call.headers {
        request = request.header(name, value);
    }
    if let Some(json) = &call.json {
        request = request.json(&to_json(json));
    }
    if let Some(form) = &call.form {
        let mut body = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in form {
            body.append_pair(k, v);
        }
        request = request
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.finish());
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Ok((status, headers, response.text().await.unwrap_or_default()))
}

fn check(
    expect: &Expect,
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &str,
) -> anyhow::Result<()> {
    let shown = || body.chars().take(300).collect::<String>();
    if let Some(expected) = expect.status {
        anyhow::ensure!(
            status == expected,
            "expected status {expected}, got {status}: {}",
            shown()
        );
    }
    for (name, expected) in &expect.headers {
        let got = headers
            .get(name.to_lowercase())
            .and_then(|v| v.to_str().ok());
        anyhow::ensure!(
            got == Some(expected.as_str()),
            "expected header {name}: {expected}, got {got:?}"
        );
    }
    if !expect.json.is_empty() {
        let parsed: Value = serde_json::from_str(body)
            .with_context(|| format!("expected a JSON body, got: {}", shown()))?;
        for (path, expected) in &expect.json {
            let got = wireline_core::json::at(&parsed, path);
            let expected = to_json(expected);
            anyhow::ensure!(
                got == Some(&expected),
                "expected {path} = {expected}, got {}",
                got.map_or("nothing".to_owned(), ToString::to_string)
            );
        }
    }
    Ok(())
}

async fn run_step(context: &Session, step: &Step) -> anyhow::Result<()> {
    if let Some(fault) = &step.fault {
        let mut fault = fault.clone();
        let target = fault
            .remove("target")
            .and_then(|t| t.as_str().map(str::to_owned))
            .context("a fault needs target = \"SERVICE\" or \"SERVICE:/path\"")?;
        let url = format!("{}/__admin/faults/{target}", context.mock);
        let response = if fault.remove("clear").and_then(|c| c.as_bool()) == Some(true) {
            context.http.delete(url).send().await?
        } else {
            context
                .http
                .put(url)
                .json(&to_json(&toml::Value::Table(fault)))
                .send()
                .await?
        };
        anyhow::ensure!(
            response.status().is_success(),
            "the emulators refused the fault on {target}: {}",
            response.text().await.unwrap_or_default()
        );
    }
    for (call, base, what) in [
        (&step.call, &context.gateway, "call"),
        (&step.emulator, &context.mock, "emulator call"),
    ] {
        let Some(call) = call else { continue };
        let answers = if call.concurrent {
            futures_util::future::join_all(
                (0..call.times.max(1)).map(|_| send(context, call, base)),
            )
            .await
        } else {
            let mut answers = Vec::new();
            for _ in 0..call.times.max(1) {
                answers.push(send(context, call, base).await);
            }
            answers
        };
        for answer in answers {
            let (status, headers, body) =
                answer.with_context(|| format!("{what} {} {} failed", call.method, call.path))?;
            if let Some(expect) = &step.expect {
                check(expect, status, &headers, &body)
                    .with_context(|| format!("{what} {} {}", call.method, call.path))?;
            }
        }
    }
    if let Some(produce) = &step.produce {
        let token = context
            .tokens
            .get(&produce.agent)
            .with_context(|| format!("no agent {:?} in the config", produce.agent))?;
        let mut event = serde_json::json!({"specversion": "1.0", "id": produce.id, "source": produce.source, "type": produce.ty});
        if let Some(subject) = &produce.subject {
            event["subject"] = Value::String(subject.clone());
        }
        if let Some(data) = &produce.data {
            event["data"] = to_json(data);
        }
        let response = context
            .http
            .post(format!("{}/v1/events", context.gateway))
            .bearer_auth(token)
            .json(&event)
            .send()
            .await?;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        match &step.expect {
            Some(expect) => check(expect, status, &reqwest::header::HeaderMap::new(), &body)?,
            None => anyhow::ensure!(
                status == 200 || status == 201,
                "appending {} answered {status}: {body}",
                produce.ty
            ),
        }
    }
    if let Some(wait) = step.wait {
        tokio::time::sleep(wait.get()).await;
    }
    if let Some(expected) = &step.expect_events {
        let token = context
            .tokens
            .get(&expected.agent)
            .with_context(|| format!("no agent {:?} in the config", expected.agent))?;
        let deadline = Instant::now() + expected.within.get();
        loop {
            let page: Value = context
                .http
                .get(format!(
                    "{}/v1/events?types={}&limit=1000",
                    context.gateway, expected.types
                ))
                .bearer_auth(token)
                .send()
                .await?
                .json()
                .await?;
            let found = page["events"].as_array().map_or(0, |events| {
                events
                    .iter()
                    .filter(|e| {
                        expected
                            .subject
                            .as_deref()
                            .is_none_or(|s| e["event"]["subject"] == s)
                    })
                    .count()
            });
            let enough = match expected.count {
                Some(count) => found == count,
                None => found > 0,
            };
            if enough {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "expected {} event(s) of {}{} readable by {}, found {found} within {}",
                expected.count.map_or("some".to_owned(), |c| c.to_string()),
                expected.types,
                expected
                    .subject
                    .as_deref()
                    .map_or(String::new(), |s| format!(" about {s}")),
                expected.agent,
                expected.within
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    if let Some(expected) = &step.expect_upstream {
        let counts: Value = context
            .http
            .get(format!("{}/__admin/requests", context.mock))
            .send()
            .await?
            .json()
            .await?;
        let got = counts[&expected.service][&expected.route]
            .as_u64()
            .unwrap_or(0);
        anyhow::ensure!(
            got == expected.count,
            "expected {} upstream request(s) {} to {}, the emulator saw {got}",
            expected.count,
            expected.route,
            expected.service
        );
    }
    if let Some(expected) = &step.expect_breaker {
        let metrics = context
            .http
            .get(format!("{}/metrics", context.gateway))
            .send()
            .await?
            .text()
            .await?;
        let needle = format!(
            "wireline_direct_breaker_state{{service=\"{}\"}}",
            expected.service
        );
        let value = metrics
            .lines()
            .find_map(|line| line.strip_prefix(&needle))
            .map(str::trim)
            .unwrap_or("0");
        // The gauge: 0 closed, 1 half-open, 2 open.
        let state = match value {
            "2" => "open",
            "1" => "half_open",
            _ => "closed",
        };
        anyhow::ensure!(
            state == expected.state,
            "expected the {} breaker {}, it is {state}",
            expected.service,
            expected.state
        );
    }
    Ok(())
}
