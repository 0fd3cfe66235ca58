//! Shared by the config targets: the loader's inputs and what it must never do.

use std::collections::BTreeMap;
use std::path::Path;

use wireline_config::{Env, Finding};

/// Where the fuzzed config claims to live: a folder that does not exist, so no `.env`,
/// `wireline.keys.toml` or relative `${file:...}` secret is read from disk.
pub const PATH: &str = "/nonexistent-wireline-fuzz/wireline.toml";

/// The environment's values: distinctive, so a finding that quotes one is caught.
pub const VARS: &[(&str, &str)] = &[
    ("WIRELINE_ASSISTANT_TOKEN", "fuzzsecret-token-4f1e9a"),
    ("STRIPE_SECRET_KEY", "sk_live_fuzzsecret51Hx"),
    ("STRIPE_TEST_KEY", "sk_test_fuzzsecret51Hx"),
    ("STRIPE_WEBHOOK_SECRET", "whsec_ZnV6enNlY3JldA=="),
    ("GITHUB_TOKEN", "ghp_fuzzsecretAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    ("SLACK_SIGNING_SECRET", "fuzzsecret-slack-8d2c"),
    ("TOKEN", "fuzzsecret-token-short"),
    ("KEY", "fuzzsecret-key-0011"),
];

/// The environment the loader resolves `${env:...}` in.
pub fn env() -> Env {
    Env::from_map(
        VARS.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
    )
}

/// Loads `text` (in `environment`, if any) and checks what comes back: every finding prints,
/// none shows a secret value the text does not itself contain.
pub fn check(text: &str, environment: Option<&str>, env: &Env) {
    let result = wireline_config::load_str_in(text, Path::new(PATH), env, environment);
    let findings: Vec<Finding> = match result {
        Ok(loaded) => {
            // A loaded config is usable: the storage path resolves, warnings print.
            let _ = loaded.storage_path();
            loaded.warnings
        }
        Err(findings) => {
            assert!(
                findings.iter().any(Finding::is_error),
                "refused without an error: {findings:?}"
            );
            findings
        }
    };
    for finding in &findings {
        let shown = finding.to_string();
        for (_, value) in VARS {
            if !text.contains(value) {
                assert!(
                    !shown.contains(value),
                    "a finding shows a secret value: {shown}"
                );
            }
        }
        // Lines and columns point into the text.
        assert!(
            finding.line <= text.lines().count() + 1,
            "line {} past the end of the text: {shown}",
            finding.line
        );
    }
}
