//! `wireline projections list|show|rebuild`, against the store a running server uses.

use std::time::Duration;

use wireline_events::projection;
use wireline_store::Store;

use crate::cli::ProjectionsAction;

pub fn run(action: ProjectionsAction) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (config, name) = match &action {
            ProjectionsAction::List { config } => (config, None),
            ProjectionsAction::Show { config, name, .. }
            | ProjectionsAction::Rebuild { config, name, .. } => (config, Some(name)),
        };
        let loaded = super::load_config(&config.config)?;
        if let Some(name) = name {
            anyhow::ensure!(
                loaded.config.projections.contains_key(name),
                "no projection {name:?}; the config has: {}",
                names(&loaded)
            );
        }
        let store = super::open_store(&loaded)?;
        let result = match action {
            ProjectionsAction::List { .. } => list(&loaded, store.as_ref()).await,
            ProjectionsAction::Show {
                name,
                subject,
                limit,
                ..
            } => show(store.as_ref(), &name, subject.as_deref(), limit).await,
            ProjectionsAction::Rebuild { name, no_wait, .. } => {
                rebuild(store.as_ref(), &name, no_wait).await
            }
        };
        store.close().await?;
        result
    })
}

fn names(loaded: &wireline_config::Loaded) -> String {
    let names: Vec<&str> = loaded
        .config
        .projections
        .keys()
        .map(String::as_str)
        .collect();
    if names.is_empty() {
        "none (declare one under [projections.NAME])".to_owned()
    } else {
        names.join(", ")
    }
}

async fn list(loaded: &wireline_config::Loaded, store: &dyn Store) -> anyhow::Result<()> {
    let head = store.head().await?;
    for (name, declared) in &loaded.config.projections {
        let pointer = projection::pointer(store, name).await?;
        let position = projection::position(store, name).await?;
        let types: Vec<&str> = declared.events.iter().map(|g| g.as_str()).collect();
        println!(
            "{name:<24} generation {:<4} at offset {position} of {head}{}  [{}]",
            pointer.current,
            if projection::rebuilding(store, name).await? {
                "  (rebuilding)"
            } else {
                ""
            },
            types.join(", ")
        );
    }
    Ok(())
}

async fn show(
    store: &dyn Store,
    name: &str,
    subject: Option<&str>,
    limit: usize,
) -> anyhow::Result<()> {
    let states = match subject {
        Some(subject) => match projection::read(store, name, subject).await? {
            Some(state) => vec![state],
            None => anyhow::bail!("projection {name} has no subject {subject:?}"),
        },
        None => projection::list(store, name, limit).await?,
    };
    for state in states {
        println!("{}", serde_json::to_string(&state)?);
    }
    Ok(())
}

async fn rebuild(store: &dyn Store, name: &str, no_wait: bool) -> anyhow::Result<()> {
    projection::request_rebuild(store, name).await?;
    let head = store.head().await?;
    println!("rebuild of {name} from offset 0 to {head} requested");
    if no_wait {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let before = projection::pointer(store, name).await?.current;
    loop {
        let pointer = projection::pointer(store, name).await?;
        if pointer.current > before {
            eprintln!();
            println!(
                "rebuilt {name} (generation {}) in {:.1} s; readers now see it",
                pointer.current,
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        match pointer.building {
            Some(building) => {
                let at = store
                    .load_offset(&format!("projection:{name}:{building}"))
                    .await?
                    .unwrap_or(wireline_core::Offset::START);
                let width = 30usize;
                let filled = (at.0 as f64 / head.0.max(1) as f64 * width as f64) as usize;
                eprint!(
                    "\r[{}{}] {at}/{head}",
                    "#".repeat(filled.min(width)),
                    ".".repeat(width - filled.min(width))
                );
            }
            None if started.elapsed() > Duration::from_secs(5) => {
                anyhow::bail!(
                    "no running server picked the rebuild up within 5 s; it stays requested and runs when `wireline run` starts"
                );
            }
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
