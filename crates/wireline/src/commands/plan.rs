//! `wireline plan`: the integration architecture document from the config.

use std::path::Path;

use crate::cli::PlanFormat;

pub fn run(
    path: &Path,
    output: Option<&Path>,
    format: PlanFormat,
    check: Option<&Path>,
) -> anyhow::Result<()> {
    let config = super::read_config_unresolved(path)?;
    // Scenario files beside the config (`scenarios/*.toml`) count as test coverage.
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("scenarios");
    let mut scenarios: Vec<(String, String)> = std::fs::read_dir(&folder)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .filter_map(|p| {
                    Some((
                        p.file_name()?.to_string_lossy().into_owned(),
                        std::fs::read_to_string(&p).ok()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    scenarios.sort();
    let plan = wireline_plan::build_with_scenarios(&config, &scenarios);
    let text = match format {
        PlanFormat::Md => wireline_plan::markdown(&plan, &config),
        PlanFormat::Json => format!("{}\n", serde_json::to_string_pretty(&plan)?),
    };
    if let Some(committed) = check {
        let current = std::fs::read_to_string(committed).map_err(|error| {
            anyhow::anyhow!(
                "cannot read {} ({error}); generate it with `wireline plan -o {}`",
                committed.display(),
                committed.display()
            )
        })?;
        if current != text {
            anyhow::bail!(
                "{} is out of date with {}; regenerate it with `wireline plan -c {} -o {}`",
                committed.display(),
                path.display(),
                path.display(),
                committed.display()
            );
        }
        println!("{} is up to date", committed.display());
        return Ok(());
    }
    match output {
        Some(file) => std::fs::write(file, text)
            .map_err(|error| anyhow::anyhow!("cannot write {} ({error})", file.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}
