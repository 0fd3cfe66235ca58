//! `wireline check`: every finding, one per line, on stdout; exit 1 if any is an error.

use std::path::Path;

use anyhow::bail;
use wireline_config::Env;

pub fn run(path: &Path) -> anyhow::Result<()> {
    let findings = match wireline_config::load_in(path, &Env::process(), super::environment()) {
        Ok(loaded) => loaded.warnings,
        Err(findings) => findings,
    };
    for finding in &findings {
        println!("{finding}");
    }
    let errors = findings.iter().filter(|f| f.is_error()).count();
    let warnings = findings.len() - errors;
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
