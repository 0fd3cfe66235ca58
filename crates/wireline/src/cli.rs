//! The command line: commands, flags, and their help texts.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Wireline: the integration layer between AI agents and the services they act on.
///
/// One binary, one wireline.toml: agents call services through Wireline, and receive the
/// services' events from it, with every connection authenticated, scoped, rate-limited,
/// retried, circuit-broken, deduplicated and recorded.
#[derive(Debug, Parser)]
#[command(name = "wireline", version, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty, env = "WIRELINE_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// The environment (`[environments.NAME]`: dev, staging, prod) whose service URLs and
    /// credentials to use, with its guards.
    #[arg(long = "env", global = true, env = "WIRELINE_ENV", value_name = "NAME")]
    pub environment: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// For people: one readable line per event.
    Pretty,
    /// For machines: one JSON object per line.
    Json,
}

/// The config file flag every command that reads one shares.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The config file.
    #[arg(short, long, default_value = "wireline.toml", env = "WIRELINE_CONFIG")]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter wireline.toml, .env.example and .env into DIR.
    Init {
        /// The folder to write into (created if missing).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Replace an existing wireline.toml and .env.example.
        #[arg(long)]
        force: bool,
    },
    /// Validate the config and print every finding; exit 1 if any is an error.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Also fail on credentials past their rotation date (`[keys.NAME]`).
        #[arg(long)]
        strict: bool,
        /// Lines for people, or one JSON document for tools.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
        /// `--deny warnings`: exit 1 on warnings too (config and advisor).
        #[arg(long, value_name = "LEVEL", value_parser = ["warnings"])]
        deny: Option<String>,
    },
    /// Start the server.
    Run {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Call a named operation of a service, as the operator (all scopes, the service's own
    /// credential), through the same policy stack agents use. Prints the response body.
    Call {
        #[command(flatten)]
        config: ConfigArg,
        /// The service (a key of [services]).
        service: String,
        /// The operation (a key of [services.SERVICE.operations]).
        operation: String,
        /// A parameter, `name=value`; the value is read as JSON when it parses (numbers,
        /// true/false), else as a string. Repeat for more.
        #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// An Idempotency-Key for the call.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// The event log: list and follow events, replay them, show an event's audit trail, apply
    /// retention.
    Events {
        #[command(subcommand)]
        action: EventsAction,
    },
    /// Projections (`[projections.NAME]`): list them, show a subject's state, rebuild one
    /// from the log.
    Projections {
        #[command(subcommand)]
        action: ProjectionsAction,
    },
    /// Push deliveries that were given up (dead letters): list them, or send them again.
    Deliveries {
        #[command(subcommand)]
        action: DeliveriesAction,
    },
    /// The hybrid pattern's capture report: what the webhooks delivered, missed and
    /// doubled, and how late each path was.
    Reconcile {
        #[command(subcommand)]
        action: ReconcileAction,
    },
    /// See Wireline work in one command, without any account: the five integration patterns
    /// with faults switched on, against the built-in emulators, with a temporary store; ends
    /// with a summary and exits 0 when every step behaved as intended.
    Demo,
    /// Run scenario tests: each file's steps (faults, agent calls, emulator actions, events,
    /// expectations) against a fresh gateway and the emulators. Exit 1 if any fails.
    Test {
        /// A scenario file, or a folder of them (`*.toml`).
        #[arg(default_value = "scenarios")]
        path: PathBuf,
        /// Also write the results as JUnit XML here (for CI systems).
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
    /// Credentials in files or git history: `scan` finds them, `install-hook` refuses commits
    /// that add them.
    Secrets {
        #[command(subcommand)]
        action: SecretsAction,
    },
    /// Credentials by name (never value): age, environment, the agents that use them, when
    /// rotation is due; `rotate NAME` walks through a zero-downtime rotation.
    Keys {
        #[command(flatten)]
        config: ConfigArg,
        /// One JSON object per credential instead of a table.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: Option<KeysAction>,
    },
    /// Write the integration architecture document from the config: inventory, patterns,
    /// security, resilience, cost, testing, data flow. Deterministic, so it can be committed.
    Plan {
        #[command(flatten)]
        config: ConfigArg,
        /// Write it here instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Markdown, or the same model as JSON.
        #[arg(long, value_enum, default_value_t = PlanFormat::Md)]
        format: PlanFormat,
        /// Exit 1 if FILE differs from what the config generates now.
        #[arg(long, value_name = "FILE")]
        check: Option<PathBuf>,
    },
    /// Run the built-in service emulators (Stripe, Slack, GitHub, Shopify, SendGrid, HubSpot,
    /// Salesforce) on loopback, with the faults and webhook targets of `[mock]` when a config
    /// file is there. Ctrl-C stops them.
    Mock {
        /// The config file whose `[mock]` section to use (optional).
        #[arg(short, long, env = "WIRELINE_CONFIG")]
        config: Option<PathBuf>,
        /// Only these emulators, comma-separated (default: `[mock] services`, else all).
        #[arg(long, value_delimiter = ',')]
        service: Vec<String>,
        /// The port (default: `[mock] listen`, else 7490).
        #[arg(long)]
        port: Option<u16>,
        /// The seed of ids and faults (default: `[mock] seed`, else 0).
        #[arg(long)]
        seed: Option<u64>,
        /// A stub service from WireMock mappings: `NAME=PATH` (a file or a folder), served
        /// under `/NAME`. Repeatable; adds to `[mock] stubs`.
        #[arg(long = "stubs", value_name = "NAME=PATH")]
        stubs: Vec<String>,
    },
    /// Print the JSON Schema of wireline.toml (for editors), or its Markdown reference.
    Schema {
        /// Output format.
        #[arg(long, value_enum, default_value_t = SchemaFormat::Json)]
        format: SchemaFormat,
    },
}

/// How `wireline check` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    /// One finding per line.
    Text,
    /// One JSON document.
    Json,
}

/// What `wireline plan` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// The Markdown document.
    Md,
    /// The document's model as JSON.
    Json,
}

/// What `wireline schema` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaFormat {
    /// JSON Schema (draft 2020-12), for Taplo / Even Better TOML.
    Json,
    /// The Markdown reference (docs/configuration.md).
    Markdown,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}

/// `wireline deliveries ...`.
#[derive(Debug, Subcommand)]
pub enum DeliveriesAction {
    /// List dead letters: subscription, offset, event, attempts, last error.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this subscription's.
        #[arg(long)]
        subscription: Option<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Queue dead letters to be sent again; the running server sends them before new events.
    Retry {
        #[command(flatten)]
        config: ConfigArg,
        /// The subscription (its `name`, or AGENT-N).
        subscription: String,
        /// Only the letter at this offset (default: all of the subscription's).
        #[arg(long)]
        offset: Option<u64>,
    },
}

/// `wireline reconcile ...`.
#[derive(Debug, Subcommand)]
pub enum ReconcileAction {
    /// A table per service with a webhook and a reconciling poll.
    Report {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
        /// Events of the last DURATION (e.g. 24h, 7d).
        #[arg(long, default_value = "24h")]
        since: String,
        /// The reports as JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
}

/// `wireline keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// The steps to rotate one credential without downtime.
    Rotate {
        /// The credential's name (the variable of `${env:NAME}`).
        name: String,
    },
}

/// `wireline secrets ...`.
#[derive(Debug, Subcommand)]
pub enum SecretsAction {
    /// Find credentials (Stripe, Slack, GitHub, AWS, SendGrid, Shopify, private keys,
    /// `whsec_`, high-entropy values of key-like names): file, line, commit and kind, never
    /// the value. Exit 1 on findings.
    Scan {
        /// A folder or a file (a repository's root with --git / --staged).
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Scan every commit of the repository's history instead of the files.
        #[arg(long)]
        git: bool,
        /// Scan what is staged for the next commit (the pre-commit hook uses this).
        #[arg(long)]
        staged: bool,
        /// The allowlist (default: PATH/.wireline-secrets-allow): path prefixes, and
        /// `fingerprint:HEX` lines for documented test keys.
        #[arg(long, value_name = "FILE")]
        allow: Option<PathBuf>,
    },
    /// Install a git pre-commit hook that runs `secrets scan --staged`.
    InstallHook {
        /// The repository.
        #[arg(default_value = ".")]
        repo: PathBuf,
    },
}

/// `wireline projections ...`.
#[derive(Debug, Subcommand)]
pub enum ProjectionsAction {
    /// Each projection: its generation, how far it has read the log, whether it is rebuilding.
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// One subject's state in a projection (or every subject's, up to --limit).
    Show {
        #[command(flatten)]
        config: ConfigArg,
        /// The projection.
        name: String,
        /// The subject (leave out for all).
        subject: Option<String>,
        /// At most this many subjects.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Drop a projection and rebuild it from offset 0; readers keep the old state until the
    /// new one has caught up. A running server does the work; this shows its progress.
    Rebuild {
        #[command(flatten)]
        config: ConfigArg,
        /// The projection.
        name: String,
        /// Do not wait for the rebuild to finish.
        #[arg(long)]
        no_wait: bool,
    },
}

/// Filters shared by `wireline events list` and `tail`.
#[derive(Debug, clap::Args)]
pub struct EventFilter {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Only these types (a glob such as `stripe.payment_intent.*`).
    #[arg(long = "type", value_name = "GLOB")]
    pub types: Option<String>,
    /// Only events from this source (e.g. `wireline://hooks/stripe`).
    #[arg(long)]
    pub source: Option<String>,
    /// Only events about this subject (a customer id, an order id).
    #[arg(long)]
    pub subject: Option<String>,
    /// Only events with time at or after this (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Only events with time before this (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// One CloudEvent (with its offset) per line as JSON instead of a readable line.
    #[arg(long)]
    pub json: bool,
}

/// `wireline events ...`.
#[derive(Debug, Subcommand)]
pub enum EventsAction {
    /// Events in log order that match the filters.
    List {
        #[command(flatten)]
        filter: EventFilter,
        /// Only events after this offset.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Deliver past events again, from a time or an offset on, to a push subscription (by
    /// its name) or a pull consumer (`consumer:AGENT:NAME`): same ids, log order, optionally
    /// only some types. Shows progress and a summary for a subscription served by a running
    /// server.
    Replay {
        #[command(flatten)]
        config: ConfigArg,
        /// From this time on (RFC 3339, by event time), or from this offset on (a number).
        #[arg(long)]
        from: String,
        /// Only events of these types (a glob) are replayed; new events after the replay are
        /// delivered as the subscription says.
        #[arg(long = "type", value_name = "GLOB")]
        types: Option<String>,
        /// The subscription's name (AGENT-N or its `name`), or `consumer:AGENT:NAME`.
        #[arg(long)]
        to: String,
        /// Do not wait for a running server to deliver them.
        #[arg(long)]
        no_wait: bool,
    },
    /// One event and its audit trail: who produced it (service, agent, poller, trigger rule)
    /// and, for a derived event, the events that caused it, back to the first.
    Show {
        #[command(flatten)]
        config: ConfigArg,
        /// The event's offset.
        offset: u64,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Apply `[events.retention]` now (`wireline run` does it hourly): delete old events or
    /// drop their payloads.
    Expire {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// The last events that match, then every new one as it is appended (Ctrl-C to stop).
    Tail {
        #[command(flatten)]
        filter: EventFilter,
        /// How many existing events to show first.
        #[arg(long, short = 'n', default_value_t = 10)]
        lines: usize,
    },
}
