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
    stubs: &[String],
    port: Option<u16>,
    seed: Option<u64>,
    log_format: LogFormat,
) -> anyhow::Result<()> {
    telemetry::init_logs(log_format);
    // A config file is optional: without one the emulators run with their defaults. A named
    // file must exist; without a name, ./wireline.toml is used if it is there.
    let loaded = match config {
        Some(path) if !path.exists() => anyhow::bail!(
            "{} does not exist; leave out -c to run the emulators with their defaults",
            path.display()
        ),
        Some(path) => Some(super::load_config(path)?),
        None if Path::new("wireline.toml").exists() => {
            Some(super::load_config(Path::new("wireline.toml"))?)
        }
        None => None,
    };
    let (section, base_dir) = match loaded {
        Some(loaded) => (loaded.config.mock, loaded.base_dir),
        None => (Default::default(), std::path::PathBuf::from(".")),
    };
    let mut options = Options::from_config(&section, &base_dir).map_err(anyhow::Error::msg)?;
    for stub in stubs {
        let (name, path) = stub
            .split_once('=')
            .context("write --stubs NAME=PATH (a WireMock mapping file or a folder of them)")?;
        let loaded = wireline_mock::stubs::load(Path::new(path)).map_err(anyhow::Error::msg)?;
        options.stubs.insert(name.to_owned(), loaded);
    }
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
        for name in running.mock.stub_services() {
            println!("  {name:<11} http://{}/{name} (stubs)", running.address);
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
