//! `wireline secrets scan` and its pre-commit hook, on a throwaway git repository.

use std::path::Path;
use std::process::Command;

fn git(repo: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .arg("-C")
        .arg(repo)
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("git runs")
}

#[test]
fn a_key_removed_from_the_files_is_still_found_in_the_history_and_the_hook_refuses_new_ones() {
    let dir = tempfile::tempdir().expect("dir");
    let repo = dir.path();
    assert!(git(repo, &["init", "-q"]).status.success());
    // Built at run time, so this source file holds no key-shaped text.
    let key = format!("{}{}", "sk_live_", "9fQ2xLw7Tz4KpR8mVn3Bc6Hd");
    std::fs::write(
        repo.join("settings.env"),
        format!("STRIPE_SECRET_KEY={key}\n"),
    )
    .expect("write");
    git(repo, &["add", "."]);
    assert!(
        git(repo, &["commit", "-q", "-m", "settings"])
            .status
            .success()
    );
    let first = crate::text(&git(repo, &["rev-parse", "HEAD"]).stdout)
        .trim()
        .to_owned();
    std::fs::write(
        repo.join("settings.env"),
        "STRIPE_SECRET_KEY=${env:STRIPE_SECRET_KEY}\n",
    )
    .expect("write");
    git(repo, &["add", "."]);
    assert!(
        git(repo, &["commit", "-q", "-m", "move the key out"])
            .status
            .success()
    );

    let scan = |args: &[&str]| {
        crate::wireline()
            .args(["secrets", "scan"])
            .args(args)
            .arg(repo)
            .output()
            .expect("runs")
    };
    let files = scan(&[]);
    assert!(files.status.success(), "{}", crate::text(&files.stdout));
    let history = scan(&["--git"]);
    let out = crate::text(&history.stdout);
    assert_eq!(history.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!("settings.env:1 in commit {}", &first[..12])),
        "{out}"
    );
    assert!(out.contains("Stripe secret key (sk_live_…"), "{out}");
    let everything = format!("{out}{}", crate::text(&history.stderr));
    assert!(!everything.contains(&key), "the value is never printed");
    assert!(
        crate::text(&history.stderr).contains("rotat"),
        "the fix is named"
    );
    // A documented test key can be allowed by its fingerprint.
    let fingerprint = out
        .split("fingerprint ")
        .nth(1)
        .expect("fingerprint")
        .trim_end_matches([')', '\n'])
        .to_owned();
    std::fs::write(
        repo.join(".wireline-secrets-allow"),
        format!("fingerprint:{fingerprint}\n"),
    )
    .expect("write");
    assert!(scan(&["--git"]).status.success());

    // The hook refuses a commit that adds a token, and lets a clean one through.
    let hook = crate::wireline()
        .args(["secrets", "install-hook"])
        .arg(repo)
        .output()
        .expect("runs");
    assert!(hook.status.success(), "{}", crate::text(&hook.stderr));
    let token = format!("{}{}", "ghp_", "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9b");
    std::fs::write(
        repo.join("deploy.sh"),
        format!("export GITHUB_TOKEN={token}\n"),
    )
    .expect("write");
    git(repo, &["add", "deploy.sh"]);
    let refused = git(repo, &["commit", "-q", "-m", "deploy script"]);
    assert!(!refused.status.success(), "the hook refused the commit");
    let said = format!(
        "{}{}",
        crate::text(&refused.stdout),
        crate::text(&refused.stderr)
    );
    assert!(said.contains("deploy.sh:1: GitHub token (ghp_…"), "{said}");
    assert!(!said.contains(&token));
    std::fs::write(
        repo.join("deploy.sh"),
        "export GITHUB_TOKEN=${GITHUB_TOKEN:?}\n",
    )
    .expect("write");
    git(repo, &["add", "deploy.sh"]);
    let accepted = git(repo, &["commit", "-q", "-m", "deploy script"]);
    assert!(
        accepted.status.success(),
        "{}",
        crate::text(&accepted.stderr)
    );
}
