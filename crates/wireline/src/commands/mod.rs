//! One file per command; each returns `anyhow::Result` and leaves printing the error to main.

mod call;
mod check;
mod deliveries;
mod demo;
mod events;
mod init;
mod keys;
mod mock;
mod plan;
mod projections;
mod reconcile;
mod run;
mod schema;
mod secrets;
mod test;

use std::path::Path;

use anyhow::bail;
use wireline_config::{Env, Finding, Loaded};

use crate::cli::{Cli, Command};

/// The environment of `--env` / `WIRELINE_ENV`, for every command that loads the config.
static ENVIRONMENT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

fn environment() -> Option<&'static str> {
    ENVIRONMENT.get().and_then(Option::as_deref)
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let _ = ENVIRONMENT.set(cli.environment.clone());
    match cli.command {
        Command::Init { dir, force } => init::run(&dir, force),
        Command::Check {
            config,
            strict,
            format,
            deny,
        } => check::run(&config.config, strict, format, deny.is_some()),
        Command::Run { config } => run::run(&config.config, cli.log_format),
        Command::Schema { format } => schema::run(format),
        Command::Demo => demo::run(),
        Command::Plan {
            config,
            output,
            format,
            check,
        } => plan::run(&config.config, output.as_deref(), format, check.as_deref()),
        Command::Keys {
            config,
            json,
            action,
        } => keys::run(&config.config, json, action),
        Command::Secrets { action } => match action {
            crate::cli::SecretsAction::Scan {
                path,
                git,
                staged,
                allow,
            } => secrets::scan(&path, git, staged, allow.as_deref()),
            crate::cli::SecretsAction::InstallHook { repo } => secrets::install_hook(&repo),
        },
        Command::Test { path, junit } => test::run(&path, junit.as_deref()),
        Command::Mock {
            config,
            service,
            port,
            seed,
            stubs,
        } => mock::run(
            config.as_deref(),
            &service,
            &stubs,
            port,
            seed,
            cli.log_format,
        ),
        Command::Deliveries { action } => deliveries::run(action),
        Command::Events { action } => events::run(action),
        Command::Projections { action } => projections::run(action),
        Command::Reconcile { action } => reconcile::run(action),
        Command::Call {
            config,
            service,
            operation,
            params,
            idempotency_key,
        } => call::run(
            &config.config,
            &service,
            &operation,
            &params,
            idempotency_key,
        ),
    }
}

/// Loads the config for a command that needs a valid one; the error is one line: the first
/// error, and how many more `check` would show.
fn load_config(path: &Path) -> anyhow::Result<Loaded> {
    match wireline_config::load_in(path, &Env::process(), environment()) {
        Ok(loaded) => Ok(loaded),
        Err(findings) => {
            let errors: Vec<&Finding> = findings.iter().filter(|f| f.is_error()).collect();
            let Some(first) = errors.first() else {
                bail!("{} could not be loaded", path.display());
            };
            if errors.len() == 1 {
                bail!("{first}");
            }
            bail!(
                "{first} (and {} more errors: run `wireline check -c {}`)",
                errors.len() - 1,
                path.display()
            );
        }
    }
}

/// The store of a loaded config: the encryption wrapper around the SQLite file when
/// `[security] encryption_key` is set, so commands read what agents would.
pub(crate) fn open_store(
    loaded: &Loaded,
) -> anyhow::Result<std::sync::Arc<dyn wireline_store::Store>> {
    let sqlite = wireline_store::sqlite::SqliteStore::open(&loaded.storage_path())?;
    crate::server::wrap_store(&loaded.config, sqlite)
}

/// The config as written, without resolving secrets (for documents and inventories that need
/// references only, on machines without the keys), with the key-metadata sidecar merged.
pub(crate) fn read_config_unresolved(path: &Path) -> anyhow::Result<wireline_config::Config> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| anyhow::anyhow!("cannot read {} ({error})", path.display()))?;
    let mut config: wireline_config::Config = toml::from_str(&text)
        .map_err(|error| anyhow::anyhow!("{}: {error} (run `wireline check`)", path.display()))?;
    let base_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    wireline_config::keys::merge_sidecar(&mut config, base_dir).map_err(anyhow::Error::msg)?;
    Ok(config)
}

/// A loopback port free right now (for the gateway and emulators `demo` and `test` start).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
