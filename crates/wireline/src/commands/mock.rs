//! `wireline mock`: the built-in emulators on loopback, until Ctrl-C / SIGTERM.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use wireline_mock::{Kind, Mock, Options};

use crate::cli::LogFormat;
use crate::telemetry;

pub fn run(
    config: Option<&Path>,
    services: &[String],
    port: Option<u16>,
    seed: Option<u64>,
    log_format: LogFormat,
) -> anyhow::Result<()> {
    telemetry::init_logs(log_format);
    // A config file is optional: without one the emulators run with their defaults. A named
    // file must exist; without a name, ./wireline.toml is used if it is there.
    let section = match config {
        Some(path) if !path.exists() => anyhow::bail!(
            "{} does not exist; leave out -c to run the emulators with their defaults",
            path.display()
        ),
        Some(path) => Some(super::load_config(path)?.config.mock),
        None if Path::new("wireline.toml").exists() => {
            Some(super::load_config(Path::new("wireline.toml"))?.config.mock)
        }
        None => None,
    };
    let section = section.unwrap_or_default();
    let mut options = Options::from_config(&section).map_err(anyhow::Error::msg)?;
    if !services.is_empty() {
        options.services = services
            .iter()
            .map(|name| Kind::parse(name.trim()))
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?;
    }
    if let Some(seed) = seed {
        options.seed = seed;
    }
    let mut address = section.listen;
    if let Some(port) = port {
        address = SocketAddr::new(address.ip(), port);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let running = Mock::start(options, address).await.with_context(|| {
            format!("cannot listen on {address}; pick another port with --port")
        })?;
        println!("wireline emulators on http://{}", running.address);
        for kind in running.mock.services() {
            println!("  {:<11} {}", kind.name(), running.url(*kind));
        }
        println!(
            "  admin       http://{}/__admin (faults, requests, webhooks)",
            running.address
        );
        tracing::info!(address = %running.address, "wireline emulators listening");
        let _ = tokio::signal::ctrl_c().await;
        running.shutdown().await;
        anyhow::Ok(())
    })
}
