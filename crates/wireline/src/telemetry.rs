//! Logs and metrics: one `tracing` subscriber on stderr, one Prometheus recorder.
//!
//! Vocabulary: the error field is always `error`; metrics are `wireline_<area>_<what>_<unit>`.
//! No secret reaches either: secrets are `SecretString`s, whose `Debug` is redacted, and no
//! code formats their exposed value into a field.

use std::io::IsTerminal;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Starts logging to stderr. The level comes from `WIRELINE_LOG` (default `info`).
pub fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_env("WIRELINE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

/// Installs the Prometheus recorder and returns the handle `/metrics` renders.
pub fn init_metrics() -> anyhow::Result<PrometheusHandle> {
    const LATENCY_BUCKETS: [f64; 12] = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &LATENCY_BUCKETS)?
        .install_recorder()?;
    metrics::gauge!("wireline_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}
