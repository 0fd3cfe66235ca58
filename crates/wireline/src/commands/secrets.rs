//! `wireline secrets scan [PATH] [--git | --staged]` and `wireline secrets install-hook`:
//! credentials in files, in every commit of a repository's history (a removed key stays in
//! history forever), or in what is about to be committed.
//!
//! Findings name the file, line, commit and kind, with the key's recognisable prefix and a
//! fingerprint, never the value. An allowlist (`.wireline-secrets-allow` at the root, or
//! `--allow FILE`) takes path prefixes and `fingerprint:HEX` lines (for documented test keys).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use wireline_config::leaks;

/// Files larger than this are not read (generated data, not code).
const LARGEST: u64 = 2 * 1024 * 1024;
/// Folders never scanned in a working tree.
const SKIPPED: [&str; 4] = [".git", "target", "node_modules", ".venv"];

struct Finding {
    path: String,
    line: usize,
    commit: Option<String>,
    leak: leaks::Leak,
}

struct Allowlist {
    paths: Vec<String>,
    fingerprints: Vec<String>,
}

impl Allowlist {
    fn load(root: &Path, file: Option<&Path>) -> anyhow::Result<Self> {
        let default = root.join(".wireline-secrets-allow");
        let path = match file {
            Some(file) => Some(file.to_path_buf()),
            None => default.exists().then_some(default),
        };
        let mut list = Allowlist {
            paths: Vec::new(),
            fingerprints: Vec::new(),
        };
        if let Some(path) = path {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read the allowlist {}", path.display()))?;
            for line in text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                match line.strip_prefix("fingerprint:") {
                    Some(fingerprint) => list.fingerprints.push(fingerprint.trim().to_owned()),
                    None => list.paths.push(line.trim_start_matches("./").to_owned()),
                }
            }
        }
        Ok(list)
    }

    fn allows(&self, finding: &Finding) -> bool {
        self.fingerprints.contains(&finding.leak.fingerprint)
            || self
                .paths
                .iter()
                .any(|p| finding.path.starts_with(p.as_str()))
    }
}

pub fn scan(path: &Path, git: bool, staged: bool, allow: Option<&Path>) -> anyhow::Result<()> {
    anyhow::ensure!(
        !(git && staged),
        "--git scans the history, --staged what is about to be committed: pick one"
    );
    let root = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let allowlist = Allowlist::load(&root, allow)?;
    let mut findings = Vec::new();
    if git || staged {
        let args: Vec<&str> = if git {
            vec![
                "log",
                "--all",
                "-p",
                "--no-color",
                "--no-ext-diff",
                "-U0",
                "--format=commit %H",
            ]
        } else {
            vec!["diff", "--cached", "--no-color", "--no-ext-diff", "-U0"]
        };
        let output = Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(&args)
            .output()
            .context("cannot run git; install it, or scan files without --git / --staged")?;
        if !output.status.success() {
            bail!(
                "git {} failed in {}: {}",
                args[0],
                root.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        patch(&String::from_utf8_lossy(&output.stdout), &mut findings);
    } else {
        walk(&root, path, &mut findings)?;
    }
    let (allowed, shown): (Vec<Finding>, Vec<Finding>) =
        findings.into_iter().partition(|f| allowlist.allows(f));
    for finding in &shown {
        let commit = finding.commit.as_deref().map_or(String::new(), |c| {
            format!(" in commit {}", &c[..c.len().min(12)])
        });
        println!(
            "{}:{}{commit}: {} ({}…, fingerprint {})",
            finding.path,
            finding.line,
            finding.leak.kind,
            finding.leak.prefix,
            finding.leak.fingerprint
        );
    }
    let scope = if git {
        "the history"
    } else if staged {
        "the staged changes"
    } else {
        "the files"
    };
    if shown.is_empty() {
        println!(
            "no credentials found in {scope} of {} ({} allowed by the allowlist)",
            root.display(),
            allowed.len()
        );
        return Ok(());
    }
    bail!(
        "{} credential(s) in {scope}: move them to the environment or a secret store and rotate them{}; a documented test key can go in .wireline-secrets-allow as fingerprint:HEX",
        shown.len(),
        if git {
            " (they stay in the history: rotating is the fix)"
        } else {
            ""
        }
    )
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn walk(root: &Path, path: &Path, findings: &mut Vec<Finding>) -> anyhow::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for entry in entries {
            let name = entry
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if entry.is_dir() && SKIPPED.contains(&name) {
                continue;
            }
            walk(root, &entry, findings)?;
        }
        return Ok(());
    }
    if std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) > LARGEST {
        return Ok(());
    }
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(());
    };
    if bytes[..bytes.len().min(8192)].contains(&0) {
        return Ok(()); // binary
    }
    let text = String::from_utf8_lossy(&bytes);
    for (index, line) in text.lines().enumerate() {
        for leak in leaks::find(line) {
            findings.push(Finding {
                path: relative(root, path),
                line: index + 1,
                commit: None,
                leak,
            });
        }
    }
    Ok(())
}

/// Added lines of a unified diff (`git log -p` or `git diff`), with their file, line and
/// commit.
fn patch(text: &str, findings: &mut Vec<Finding>) {
    let (mut commit, mut file, mut line) = (None::<String>, String::new(), 0usize);
    for row in text.lines() {
        if let Some(hash) = row.strip_prefix("commit ") {
            commit = Some(hash.trim().to_owned());
        } else if let Some(path) = row.strip_prefix("+++ ") {
            file = path.strip_prefix("b/").unwrap_or(path).to_owned();
        } else if let Some(hunk) = row.strip_prefix("@@ ") {
            // @@ -a,b +c,d @@: added lines start at c.
            line = hunk
                .split_whitespace()
                .find_map(|part| part.strip_prefix('+'))
                .and_then(|range| range.split(',').next())
                .and_then(|start| start.parse().ok())
                .unwrap_or(1);
        } else if let Some(added) = row.strip_prefix('+') {
            for leak in leaks::find(added) {
                findings.push(Finding {
                    path: file.clone(),
                    line,
                    commit: commit.clone(),
                    leak,
                });
            }
            line += 1;
        }
    }
}

pub fn install_hook(repo: &Path) -> anyhow::Result<()> {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "--git-path", "hooks"])
        .output()
        .context("cannot run git")?;
    anyhow::ensure!(
        output.status.success(),
        "{} is not in a git repository",
        repo.display()
    );
    let hooks = repo.join(String::from_utf8_lossy(&output.stdout).trim());
    std::fs::create_dir_all(&hooks)?;
    let hook = hooks.join("pre-commit");
    if let Ok(existing) = std::fs::read_to_string(&hook)
        && !existing.contains("wireline secrets scan")
    {
        bail!(
            "{} exists and is not Wireline's; add this line to it yourself: wireline secrets scan --staged \"$(git rev-parse --show-toplevel)\"",
            hook.display()
        );
    }
    let exe = std::env::current_exe()?;
    let script = format!(
        "#!/bin/sh\n# Installed by `wireline secrets install-hook`: refuse commits that add credentials.\nexec \"{}\" secrets scan --staged \"$(git rev-parse --show-toplevel)\"\n",
        exe.display()
    );
    std::fs::write(&hook, script)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;
    }
    println!(
        "installed {}: commits that add credentials are refused",
        hook.display()
    );
    Ok(())
}
