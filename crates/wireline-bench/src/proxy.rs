//! `wireline-bench proxy`: what going through Wireline costs an agent.
//!
//! A fast upstream (axum, a small JSON answer) runs as a child process, and so does the real
//! `wireline` binary (release build, next to this one) with a config pointing at it, and a
//! bare forwarding proxy (the floor under any proxy). The same load generator drives every
//! path in the same run: requests per second, latency, and the proxies' CPU time per request,
//! straight to the upstream and through `/proxy`, at 1 and at 64 connections. Then chaos: an
//! upstream failing half the time (attempts per agent request, with the retry budget), and an
//! open breaker (rejection latency).
//!
//! With `--pin` the proxies run on CPU 1 and the load generator and upstream on CPU 0, so a
//! proxy's cost shows as its own core's limit rather than as a share of the cores its client
//! and upstream also need.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;

pub(crate) const TOKEN: &str = "bench-agent-token-0123456789";

pub(crate) struct Upstream {
    pub(crate) address: std::net::SocketAddr,
    hits: Arc<AtomicU64>,
}

/// The fast upstream's answers: a small JSON customer, or with `chaos` a 503 half the time.
fn upstream_app(hits: Arc<AtomicU64>, chaos: bool) -> Router {
    Router::new()
        .fallback(
            |State((hits, chaos)): State<(Arc<AtomicU64>, bool)>| async move {
                hits.fetch_add(1, Ordering::Relaxed);
                if chaos && rand::random::<bool>() {
                    return (StatusCode::SERVICE_UNAVAILABLE, "{\"error\":\"down\"}")
                        .into_response();
                }
                (
                    [("content-type", "application/json")],
                    "{\"id\":\"cus_1\",\"object\":\"customer\"}",
                )
                    .into_response()
            },
        )
        .with_state((hits, chaos))
}

/// The fast upstream inside this process (where a benchmark needs its hit count).
pub(crate) async fn upstream(fail_every_other: bool) -> anyhow::Result<Upstream> {
    let hits = Arc::new(AtomicU64::new(0));
    let app = upstream_app(Arc::clone(&hits), fail_every_other);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Upstream { address, hits })
}

/// `wireline-bench upstream`: the fast upstream as a process of its own; prints `listening ADDR`.
pub async fn serve_upstream() -> anyhow::Result<()> {
    let app = upstream_app(Arc::new(AtomicU64::new(0)), false);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

pub(crate) struct Wireline {
    child: Child,
    pub(crate) address: String,
    _dir: Option<tempfile::TempDir>,
}

impl Wireline {
    /// The child's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Wireline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The release `wireline` binary next to this one.
pub(crate) fn binary() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let binary = exe
        .parent()
        .map(|dir| dir.join("wireline"))
        .context("no folder")?;
    if !binary.exists() {
        bail!(
            "{} not found: build it first with `cargo build --release --workspace`",
            binary.display()
        );
    }
    Ok(binary)
}

/// The CPU the proxies run on with `--pin`.
const PROXY_CPU: &str = "1";
/// The CPU the load generator and the upstream run on with `--pin`.
const LOADGEN_CPU: &str = "0";

/// `binary`, started on `cpu` through `taskset` when given (taskset execs it: same process).
fn command_on(binary: &Path, cpu: Option<&str>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.args(["-c", cpu]).arg(binary);
            command
        }
        None => Command::new(binary),
    }
}

/// Pins every thread of this process to CPU 0 (threads made later inherit it).
fn pin_self() -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if cpus < 2 {
        bail!("--pin needs two CPUs; this machine offers {cpus}");
    }
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", LOADGEN_CPU])
        .arg(std::process::id().to_string())
        .stdout(Stdio::null())
        .status()
        .context("--pin needs `taskset` (util-linux)")?;
    if !status.success() {
        bail!("taskset could not pin the benchmark to CPU 0 ({status})");
    }
    Ok(())
}

fn start_wireline(service: &str, services: &str, cpu: Option<&str>) -> anyhow::Result<Wireline> {
    let binary = binary()?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("wireline.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[agents.bench]\ntoken = \"${{env:BENCH_TOKEN}}\"\nscopes = [\"{service}:read\"]\n{services}"
        ),
    )?;
    spawn_on(&binary, &config, Some(dir), cpu)
}

pub(crate) fn spawn(
    binary: &Path,
    config: &Path,
    dir: Option<tempfile::TempDir>,
) -> anyhow::Result<Wireline> {
    spawn_on(binary, config, dir, None)
}

fn spawn_on(
    binary: &Path,
    config: &Path,
    dir: Option<tempfile::TempDir>,
    cpu: Option<&str>,
) -> anyhow::Result<Wireline> {
    let mut child = command_on(binary, cpu)
        .args(["--log-format", "json", "run", "-c"])
        .arg(config)
        .env("BENCH_TOKEN", TOKEN)
        .env("WIRELINE_LOG", "warn,wireline::server=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let address = loop {
        let line = lines.next().context(
            "wireline exited before listening (run the config by hand with `wireline check`)",
        )??;
        if line.starts_with("error:") {
            bail!("wireline did not start: {line}");
        }
        if line.contains("wireline listening") {
            let parsed: serde_json::Value = serde_json::from_str(&line)?;
            break parsed["address"].as_str().context("address")?.to_owned();
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Ok(Wireline {
        child,
        address,
        _dir: dir,
    })
}

pub(crate) struct Load {
    pub(crate) per_second: f64,
    pub(crate) latencies: Vec<Duration>,
}

/// `connections` clients, each with one connection, sending `total` GETs in all.
pub(crate) async fn load(
    url: &str,
    connections: usize,
    total: usize,
    token: Option<&str>,
) -> anyhow::Result<Load> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..connections {
        let client = wireline_direct::client::build(None).map_err(anyhow::Error::msg)?;
        let url = url.to_owned();
        let token = token.map(str::to_owned);
        let count = (worker..total).step_by(connections).count();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(count);
            for _ in 0..count {
                let begun = Instant::now();
                let mut request = client.get(&url);
                if let Some(token) = &token {
                    request = request.bearer_auth(token);
                }
                let response = request.send().await?;
                let _ = response.bytes().await?;
                latencies.push(begun.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Ok(Load {
        per_second: total as f64 / elapsed.as_secs_f64(),
        latencies,
    })
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub(crate) fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

pub async fn run(runs: usize, requests: usize, pin: bool) -> anyhow::Result<()> {
    let cpu = pin.then_some(PROXY_CPU);
    if pin {
        pin_self()?;
    }
    // The upstream is a process of its own, as a real upstream is: the direct baseline then
    // pays the same process switches per request as any client of a real service does. (The
    // same server inside this process, sharing the load generator's runtime, is measured too:
    // its requests cross no process boundary, a floor no deployment has.)
    let fast = ChildServer::start(&["upstream"], pin.then_some(LOADGEN_CPU))?;
    let in_process = upstream(false).await?;
    let wireline = start_wireline(
        "svc",
        &format!("[services.svc]\nbase_url = \"http://{}\"\n", fast.address),
        cpu,
    )?;
    let direct_url = format!("http://{}/v1/customers/cus_1", fast.address);
    let in_process_url = format!("http://{}/v1/customers/cus_1", in_process.address);
    let proxy_url = format!("http://{}/proxy/svc/v1/customers/cus_1", wireline.address);
    let null = ChildServer::start(&["null-proxy", "--upstream", &fast.address], cpu)?;
    let null_url = format!("http://{}/v1/customers/cus_1", null.address);
    // Warm the paths (connections, caches).
    load(&direct_url, 8, 2_000, None).await?;
    load(&in_process_url, 8, 2_000, None).await?;
    load(&proxy_url, 8, 2_000, Some(TOKEN)).await?;
    load(&null_url, 8, 2_000, None).await?;

    let mut rows: Vec<(String, Vec<f64>, &str)> = Vec::new();
    for connections in [1usize, 64] {
        let total = if connections == 1 {
            requests / 4
        } else {
            requests
        };
        let mut direct_rps = Vec::new();
        let mut proxy_rps = Vec::new();
        let mut ratio = Vec::new();
        let mut added_p50 = Vec::new();
        let mut added_p99 = Vec::new();
        let mut direct_p50 = Vec::new();
        let mut proxy_p50 = Vec::new();
        let mut null_ratio = Vec::new();
        let mut null_added_p50 = Vec::new();
        let mut of_null = Vec::new();
        let mut proxy_cpu = Vec::new();
        let mut null_cpu = Vec::new();
        let mut in_process_rps = Vec::new();
        let mut in_process_p50 = Vec::new();
        let mut proxy_user = Vec::new();
        let mut null_user = Vec::new();
        let per_request =
            |before: Duration, after: Duration| micros(after.saturating_sub(before)) / total as f64;
        for _ in 0..runs {
            let direct = load(&direct_url, connections, total, None).await?;
            let before = cpu_time(wireline.pid())?;
            let proxied = load(&proxy_url, connections, total, Some(TOKEN)).await?;
            // The CPU a run's calls cost includes their audit events, which Wireline stores
            // up to `[events] audit_flush` (50 ms) after the replies: count that too.
            tokio::time::sleep(SETTLE).await;
            let after = cpu_time(wireline.pid())?;
            proxy_cpu.push(per_request(before.total(), after.total()));
            proxy_user.push(per_request(before.user, after.user));
            let before = cpu_time(null.child.id())?;
            let bare = load(&null_url, connections, total, None).await?;
            tokio::time::sleep(SETTLE).await;
            let after = cpu_time(null.child.id())?;
            null_cpu.push(per_request(before.total(), after.total()));
            null_user.push(per_request(before.user, after.user));
            let own = load(&in_process_url, connections, total, None).await?;
            in_process_rps.push(own.per_second);
            in_process_p50.push(micros(percentile(&own.latencies, 0.5)));
            null_ratio.push(bare.per_second / direct.per_second * 100.0);
            null_added_p50.push(
                micros(percentile(&bare.latencies, 0.5))
                    - micros(percentile(&direct.latencies, 0.5)),
            );
            of_null.push(proxied.per_second / bare.per_second * 100.0);
            direct_rps.push(direct.per_second);
            proxy_rps.push(proxied.per_second);
            ratio.push(proxied.per_second / direct.per_second * 100.0);
            direct_p50.push(micros(percentile(&direct.latencies, 0.5)));
            proxy_p50.push(micros(percentile(&proxied.latencies, 0.5)));
            added_p50.push(
                micros(percentile(&proxied.latencies, 0.5))
                    - micros(percentile(&direct.latencies, 0.5)),
            );
            added_p99.push(
                micros(percentile(&proxied.latencies, 0.99))
                    - micros(percentile(&direct.latencies, 0.99)),
            );
        }
        rows.push((
            format!("direct to upstream, {connections} connection(s)"),
            direct_rps,
            "requests/s",
        ));
        rows.push((
            format!("through Wireline /proxy, {connections} connection(s)"),
            proxy_rps,
            "requests/s",
        ));
        rows.push((
            format!("through Wireline as % of direct, {connections} connection(s)"),
            ratio,
            "%",
        ));
        rows.push((
            format!("p50 latency direct, {connections} connection(s)"),
            direct_p50,
            "µs",
        ));
        rows.push((
            format!("p50 latency through Wireline, {connections} connection(s)"),
            proxy_p50,
            "µs",
        ));
        rows.push((
            format!("added p50 latency, {connections} connection(s)"),
            added_p50,
            "µs",
        ));
        rows.push((
            format!("added p99 latency, {connections} connection(s)"),
            added_p99,
            "µs",
        ));
        rows.push((
            format!("bare forwarding proxy as % of direct, {connections} connection(s)"),
            null_ratio,
            "%",
        ));
        rows.push((
            format!("bare forwarding proxy: added p50 latency, {connections} connection(s)"),
            null_added_p50,
            "µs",
        ));
        rows.push((
            format!("through Wireline as % of the bare proxy, {connections} connection(s)"),
            of_null,
            "%",
        ));
        rows.push((
            format!("CPU per request in Wireline, {connections} connection(s)"),
            proxy_cpu,
            "µs",
        ));
        rows.push((
            format!("CPU per request in the bare proxy, {connections} connection(s)"),
            null_cpu,
            "µs",
        ));
        rows.push((
            format!("user-space CPU per request in Wireline, {connections} connection(s)"),
            proxy_user,
            "µs",
        ));
        rows.push((
            format!("user-space CPU per request in the bare proxy, {connections} connection(s)"),
            null_user,
            "µs",
        ));
        rows.push((
            format!("upstream inside the load generator's process: requests/s, {connections} connection(s)"),
            in_process_rps,
            "requests/s",
        ));
        rows.push((
            format!("upstream inside the load generator's process: p50 latency, {connections} connection(s)"),
            in_process_p50,
            "µs",
        ));
    }
    drop(wireline);

    // Chaos: half the upstream's answers are 503. Retries are allowed (GETs), the budget
    // bounds them; the breaker is set out of reach so the budget alone is measured.
    let flaky = upstream(true).await?;
    let wireline = start_wireline(
        "svc",
        &format!(
            "[services.svc]\nbase_url = \"http://{}\"\nretry = {{ backoff = \"1ms\", max_wait = \"5ms\" }}\ncircuit_breaker = {{ failures = 1000000 }}\n",
            flaky.address
        ),
        cpu,
    )?;
    let proxy_url = format!("http://{}/proxy/svc/v1/customers/cus_1", wireline.address);
    let mut attempts = Vec::new();
    for _ in 0..runs {
        let before = flaky.hits.load(Ordering::Relaxed);
        let agent_requests = requests / 4;
        load(&proxy_url, 16, agent_requests, Some(TOKEN)).await?;
        let hits = flaky.hits.load(Ordering::Relaxed) - before;
        attempts.push(hits as f64 / agent_requests as f64);
    }
    rows.push((
        "chaos (50 % 503): upstream attempts per agent request, with retry budget".into(),
        attempts,
        "attempts",
    ));
    drop(wireline);

    // An open breaker: the service's port is closed; the first calls open it, the rest are
    // refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let wireline = start_wireline(
        "down",
        &format!(
            "[services.down]\nbase_url = \"http://127.0.0.1:{closed}\"\nretry = {{ attempts = 1 }}\ncircuit_breaker = {{ failures = 1, open_for = \"10m\" }}\n"
        ),
        cpu,
    )?;
    let down_url = format!("http://{}/proxy/down/v1/x", wireline.address);
    load(&down_url, 1, 10, Some(TOKEN)).await?;
    let mut rejection_p50 = Vec::new();
    let mut rejection_p99 = Vec::new();
    for _ in 0..runs {
        let rejected = load(&down_url, 1, 2_000, Some(TOKEN)).await?;
        rejection_p50.push(micros(percentile(&rejected.latencies, 0.5)));
        rejection_p99.push(micros(percentile(&rejected.latencies, 0.99)));
    }
    rows.push((
        "open breaker: rejection latency p50 (client-observed)".into(),
        rejection_p50,
        "µs",
    ));
    rows.push((
        "open breaker: rejection latency p99 (client-observed)".into(),
        rejection_p99,
        "µs",
    ));
    drop(wireline);

    crate::print_table(runs, rows);
    Ok(())
}

/// A server this benchmark runs as a child process (`wireline-bench ARGS`): the bare forwarding
/// proxy (see `null_proxy.rs`) or the upstream. It prints `listening ADDR` on stdout.
struct ChildServer {
    child: Child,
    address: String,
}

impl ChildServer {
    fn start(args: &[&str], cpu: Option<&str>) -> anyhow::Result<Self> {
        let mut child = command_on(&std::env::current_exe()?, cpu)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let address = line
            .trim()
            .strip_prefix("listening ")
            .with_context(|| format!("`wireline-bench {}` did not start", args.join(" ")))?
            .to_owned();
        Ok(Self { child, address })
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long a proxy is given after a load run to finish the run's work (Wireline stores a
/// call's audit event up to `[events] audit_flush`, 50 ms by default, after its reply) before its
/// CPU time is read.
const SETTLE: Duration = Duration::from_millis(100);

/// CPU time process `pid` has used so far (all threads), from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuTime {
    /// In the process's own code.
    pub user: Duration,
    /// In the kernel on its behalf (for a proxy: mostly loopback TCP and waking the peers).
    pub system: Duration,
}

impl CpuTime {
    pub(crate) fn total(self) -> Duration {
        self.user + self.system
    }
}

/// Linux counts CPU time in ticks of 10 ms, so a run of 20,000 requests reads to within
/// 0.5 us per request (each end of it to within a tick).
pub(crate) fn cpu_time(pid: u32) -> anyhow::Result<CpuTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .context("CPU accounting reads /proc (Linux)")?;
    // The command name (field 2) may hold spaces; the fields after its `)` are plain.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("a /proc stat line")?
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15, counted from 1 with the name as 2: after `)`,
    // field 3 comes first.
    let field = |index: usize| -> anyhow::Result<u64> {
        Ok(fields
            .get(index)
            .context("a /proc stat line with fewer fields than Linux writes")?
            .parse()?)
    };
    // USER_HZ is 100 on every Linux architecture Rust targets.
    let ticks = |count: u64| Duration::from_millis(count * 10);
    Ok(CpuTime {
        user: ticks(field(11)?),
        system: ticks(field(12)?),
    })
}
