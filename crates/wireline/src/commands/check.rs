//! `wireline check`: every finding, one per line, on stdout; exit 1 if any is an error.

use std::path::Path;

use anyhow::bail;
use wireline_config::Env;

pub fn run(path: &Path, strict: bool) -> anyhow::Result<()> {
    let (findings, config) =
        match wireline_config::load_in(path, &Env::process(), super::environment()) {
            Ok(loaded) => (loaded.warnings, Some(loaded.config)),
            Err(findings) => (findings, None),
        };
    for finding in &findings {
        println!("{finding}");
    }
    let mut errors = findings.iter().filter(|f| f.is_error()).count();
    let mut warnings = findings.len() - errors;
    // Credential age: a warning from 80 % of the rotation period, an error past it with --strict.
    let today = jiff::tz::Offset::UTC
        .to_datetime(jiff::Timestamp::now())
        .date();
    for key in config
        .iter()
        .flat_map(|c| wireline_config::keys::inventory(c, today))
    {
        let (Some(due), Some(age)) = (key.due, key.age_days) else {
            continue;
        };
        let severity = match key.status {
            wireline_config::keys::Status::Overdue if strict => "error",
            wireline_config::keys::Status::Overdue | wireline_config::keys::Status::DueSoon => {
                "warning"
            }
            _ => continue,
        };
        if severity == "error" {
            errors += 1;
        } else {
            warnings += 1;
        }
        println!(
            "{}: {severity}: keys.{}: {} is {age} days old; rotation {} {due} (`wireline keys rotate {}` shows how)",
            path.display(),
            key.name,
            key.reference,
            if key.status == wireline_config::keys::Status::Overdue {
                "was due"
            } else {
                "is due"
            },
            key.name
        );
    }
    if errors > 0 {
        bail!(
            "{}: {errors} error(s), {warnings} warning(s); fix the errors above",
            path.display()
        );
    }
    match super::environment() {
        Some(name) => println!(
            "{} (environment {name}): ok ({warnings} warning(s))",
            path.display()
        ),
        None => println!("{}: ok ({warnings} warning(s))", path.display()),
    }
    Ok(())
}
