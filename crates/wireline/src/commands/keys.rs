//! `wireline keys [--json]` and `wireline keys rotate NAME`: the credential inventory, by name
//! and never by value.

use std::path::Path;

use wireline_config::keys::{self, KeyInfo};

use crate::cli::KeysAction;

pub fn run(path: &Path, json: bool, action: Option<KeysAction>) -> anyhow::Result<()> {
    // The config is read, not its secrets: the inventory needs references only, and a machine
    // without production keys can still list them.
    let config = super::read_config_unresolved(path)?;
    let inventory = keys::inventory(
        &config,
        jiff::tz::Offset::UTC
            .to_datetime(jiff::Timestamp::now())
            .date(),
    );
    match action {
        Some(KeysAction::Rotate { name }) => {
            let Some(info) = inventory.iter().find(|k| k.name == name) else {
                let names: Vec<&str> = inventory.iter().map(|k| k.name.as_str()).collect();
                anyhow::bail!(
                    "no credential named {name}; the config has: {}",
                    names.join(", ")
                );
            };
            println!(
                "Rotating {} ({}), used at {}:",
                info.name,
                info.reference,
                info.used_at.join(", ")
            );
            for (index, step) in keys::rotation_steps(&config, info).iter().enumerate() {
                println!("  {}. {step}", index + 1);
            }
            Ok(())
        }
        None if json => {
            for info in &inventory {
                println!("{}", serde_json::to_string(&as_json(info))?);
            }
            Ok(())
        }
        None => {
            println!(
                "{:<28} {:<13} {:>5} {:<11} {:<16} AGENTS",
                "NAME", "STATUS", "AGE", "DUE", "ENVIRONMENTS"
            );
            for info in &inventory {
                println!(
                    "{:<28} {:<13} {:>5} {:<11} {:<16} {}",
                    info.name,
                    info.status.as_str(),
                    info.age_days.map_or("-".to_owned(), |d| format!("{d}d")),
                    info.due.map_or("-".to_owned(), |d| d.to_string()),
                    info.environments
                        .iter()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(","),
                    if info.agents.is_empty() {
                        "-".to_owned()
                    } else {
                        info.agents.iter().cloned().collect::<Vec<_>>().join(",")
                    }
                );
            }
            let unknown = inventory.iter().filter(|k| k.meta.is_none()).count();
            if unknown > 0 {
                println!(
                    "\n{unknown} credential(s) without [keys.NAME] created = \"YYYY-MM-DD\": their age is unknown"
                );
            }
            Ok(())
        }
    }
}

fn as_json(info: &KeyInfo) -> serde_json::Value {
    serde_json::json!({
        "name": info.name,
        "reference": info.reference,
        "status": info.status.as_str(),
        "age_days": info.age_days,
        "due": info.due.map(|d| d.to_string()),
        "environments": info.environments,
        "agents": info.agents,
        "used_at": info.used_at,
        "owner": info.meta.as_ref().and_then(|m| m.owner.clone()),
    })
}
