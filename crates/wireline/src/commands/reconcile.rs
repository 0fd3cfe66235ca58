//! `wireline reconcile report`: the hybrid capture report, read from the store the server
//! uses.

use anyhow::{Context, bail};
use jiff::Timestamp;

use crate::cli::ReconcileAction;

pub fn run(action: ReconcileAction) -> anyhow::Result<()> {
    let ReconcileAction::Report {
        config,
        service,
        since,
        json,
    } = action;
    let loaded = super::load_config(&config.config)?;
    let span: wireline_core::Duration = since
        .parse()
        .map_err(|error| anyhow::anyhow!("--since {since:?}: {error}"))?;
    let since = Timestamp::now()
        .checked_sub(jiff::SignedDuration::try_from(span.get()).context("--since is too long")?)
        .context("--since reaches before year -9999")?;
    let hybrid: Vec<String> = loaded
        .config
        .services
        .iter()
        .filter(|(_, s)| s.webhook.is_some() && s.poll.as_ref().is_some_and(|p| p.reconcile))
        .map(|(name, _)| name.clone())
        .filter(|name| service.as_ref().is_none_or(|wanted| wanted == name))
        .collect();
    if hybrid.is_empty() {
        bail!(
            "no service {}has a webhook and a poll with reconcile = true; the report covers the hybrid pattern only",
            service.map(|s| format!("named {s} ")).unwrap_or_default()
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = super::open_store(&loaded)?;
        let mut reports = Vec::new();
        for name in &hybrid {
            reports.push(
                wireline_poll::report::capture_report(store.as_ref(), name, Some(since), None)
                    .await,
            );
        }
        store.close().await?;
        for report in reports {
            let report = report?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
                continue;
            }
            let lag = |lag: Option<(i64, i64)>| {
                lag.map_or("-".to_owned(), |(p50, p99)| {
                    format!("p50 {p50} ms, p99 {p99} ms")
                })
            };
            println!("{} (events since {since})", report.service);
            println!("  events                 {}", report.total);
            println!("  first seen by webhook  {}", report.first_by_webhook);
            println!("  first seen by poll     {}", report.first_by_poll);
            println!("  missed by webhooks     {}", report.webhook_missed);
            println!("  webhook late           {}", report.webhook_late);
            println!("  duplicate webhooks     {}", report.webhook_duplicates);
            println!(
                "  webhook capture        {}",
                report
                    .webhook_capture_rate
                    .map_or("-".to_owned(), |rate| format!("{:.2} %", rate * 100.0))
            );
            println!("  webhook lag            {}", lag(report.webhook_lag_ms));
            println!("  poll lag               {}", lag(report.poll_lag_ms));
        }
        anyhow::Ok(())
    })
}
