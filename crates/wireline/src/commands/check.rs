//! `wireline check`: every finding of the config (errors and warnings, located), the
//! advisor's architecture findings (stable rule ids, a fix each) and credential ages; one per
//! line, or one JSON document with `--format json`. Exit 1 on errors, or on warnings too with
//! `--deny warnings`.

use std::path::Path;

use anyhow::bail;
use serde_json::json;
use wireline_config::Env;

use crate::cli::CheckFormat;

pub fn run(
    path: &Path,
    strict: bool,
    format: CheckFormat,
    deny_warnings: bool,
) -> anyhow::Result<()> {
    let (findings, config) =
        match wireline_config::load_in(path, &Env::process(), super::environment()) {
            Ok(loaded) => (loaded.warnings, Some(loaded.config)),
            Err(findings) => (findings, None),
        };
    let today = jiff::tz::Offset::UTC
        .to_datetime(jiff::Timestamp::now())
        .date();
    let mut items = Vec::new(); // (severity, rule, key path, line, column, message, fix)
    for finding in &findings {
        let severity = if finding.is_error() {
            "error"
        } else {
            "warning"
        };
        items.push((
            severity,
            finding.rule.unwrap_or("config").to_owned(),
            finding.key_path.clone(),
            finding.line,
            finding.column,
            finding.message.clone(),
            String::new(),
        ));
    }
    if let Some(config) = &config {
        for advice in wireline_plan::advisor::advise(config, today) {
            let severity = match advice.level {
                _ if advice.past_due && strict => "error",
                wireline_plan::advisor::Level::Warning => "warning",
                wireline_plan::advisor::Level::Info => "info",
            };
            items.push((
                severity,
                advice.rule.to_owned(),
                advice.at,
                0,
                0,
                advice.message,
                advice.fix,
            ));
        }
    }
    let errors = items.iter().filter(|i| i.0 == "error").count();
    let warnings = items.iter().filter(|i| i.0 == "warning").count();
    match format {
        CheckFormat::Json => {
            let list: Vec<serde_json::Value> = items
                .iter()
                .map(|(severity, rule, at, line, column, message, fix)| json!({"severity": severity, "rule": rule, "key_path": at, "line": line, "column": column, "message": message, "fix": fix}))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &json!({"file": path.display().to_string(), "errors": errors, "warnings": warnings, "findings": list})
                )?
            );
        }
        CheckFormat::Text => {
            for finding in &findings {
                println!("{finding}");
            }
            for (severity, rule, at, _, _, message, fix) in items.iter().filter(|i| i.1 != "config")
            {
                println!(
                    "{}: {severity}[{rule}]: {at}: {message}; fix: {fix}",
                    path.display()
                );
            }
        }
    }
    if errors > 0 {
        bail!(
            "{}: {errors} error(s), {warnings} warning(s); fix the errors above",
            path.display()
        );
    }
    if deny_warnings && warnings > 0 {
        bail!(
            "{}: {warnings} warning(s), and --deny warnings is set",
            path.display()
        );
    }
    if format == CheckFormat::Text {
        match super::environment() {
            Some(name) => println!(
                "{} (environment {name}): ok ({warnings} warning(s))",
                path.display()
            ),
            None => println!("{}: ok ({warnings} warning(s))", path.display()),
        }
    }
    Ok(())
}
