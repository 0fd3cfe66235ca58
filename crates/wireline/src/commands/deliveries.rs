//! `wireline deliveries list|retry`: dead letters, read from and queued in the store the
//! server uses (SQLite allows this while the server runs).

use std::path::Path;

use anyhow::bail;
use wireline_core::Offset;
use wireline_webhook::delivery;

use crate::cli::DeliveriesAction;

pub fn run(action: DeliveriesAction) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match action {
        DeliveriesAction::List {
            config,
            subscription,
            json,
        } => runtime.block_on(list(&config.config, subscription.as_deref(), json)),
        DeliveriesAction::Retry {
            config,
            subscription,
            offset,
        } => runtime.block_on(retry(&config.config, &subscription, offset.map(Offset))),
    }
}

fn known(loaded: &wireline_config::Loaded, subscription: &str) -> anyhow::Result<()> {
    let names: Vec<String> = loaded
        .config
        .named_subscriptions()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    if !names.iter().any(|name| name == subscription) {
        bail!(
            "no subscription named {subscription:?}; the config has: {}",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        );
    }
    Ok(())
}

async fn list(path: &Path, subscription: Option<&str>, json: bool) -> anyhow::Result<()> {
    let loaded = super::load_config(path)?;
    if let Some(name) = subscription {
        known(&loaded, name)?;
    }
    let store = super::open_store(&loaded)?;
    let letters = delivery::dead_letters(store.as_ref(), subscription).await;
    store.close().await?;
    let letters = letters?;
    if json {
        for letter in &letters {
            println!("{}", serde_json::to_string(letter)?);
        }
        return Ok(());
    }
    if letters.is_empty() {
        println!("no dead letters");
        return Ok(());
    }
    println!(
        "{:<20} {:>8}  {:<28} {:<32} {:>8}  last error",
        "subscription", "offset", "event id", "type", "attempts"
    );
    for letter in &letters {
        println!(
            "{:<20} {:>8}  {:<28} {:<32} {:>8}  {}",
            letter.subscription,
            letter.offset,
            letter.event_id,
            letter.event_type,
            letter.attempts,
            letter.last_error
        );
    }
    println!("\nsend them again with: wireline deliveries retry SUBSCRIPTION [--offset N]");
    Ok(())
}

async fn retry(path: &Path, subscription: &str, offset: Option<Offset>) -> anyhow::Result<()> {
    let loaded = super::load_config(path)?;
    known(&loaded, subscription)?;
    let store = super::open_store(&loaded)?;
    let queued = delivery::redrive(store.as_ref(), subscription, offset).await;
    store.close().await?;
    match queued? {
        0 => bail!(
            "no dead letters for {subscription}{}; see `wireline deliveries list`",
            offset
                .map(|o| format!(" at offset {o}"))
                .unwrap_or_default()
        ),
        n => println!(
            "queued {n} dead letter(s) of {subscription}; the running server sends them before new events"
        ),
    }
    Ok(())
}
