//! `wireline run`: load the config, open the store, serve until SIGINT/SIGTERM.

use std::path::Path;

use tracing::{debug, warn};

use crate::cli::LogFormat;
use crate::{server, telemetry};

pub fn run(path: &Path, log_format: LogFormat) -> anyhow::Result<()> {
    telemetry::init_logs(log_format);
    let loaded = super::load_config(path)?;
    // Secrets print as their references (`Secret(${env:NAME})`), never as values.
    debug!(config = ?loaded.config, "config loaded");
    for finding in &loaded.warnings {
        warn!(finding = %finding, "config warning");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(server::serve(loaded))
}
