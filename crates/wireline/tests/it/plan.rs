//! `wireline plan` on the example configs (golden documents, kept current by `--check`), and
//! the advisor in `wireline check` (rule ids, JSON, `--deny warnings`).

use std::path::PathBuf;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/plans")
}

#[test]
fn the_golden_documents_are_current_and_a_changed_config_is_noticed() {
    for example in ["payments", "crm-sync", "email"] {
        let dir = examples().join(example);
        let output = crate::wireline()
            .args(["plan", "-c"])
            .arg(dir.join("wireline.toml"))
            .arg("--check")
            .arg(dir.join("ARCHITECTURE.md"))
            .output()
            .expect("runs");
        assert!(
            output.status.success(),
            "{example}: {} (regenerate with `cargo run -- plan -c examples/plans/{example}/wireline.toml -o examples/plans/{example}/ARCHITECTURE.md`)",
            crate::text(&output.stderr)
        );
    }
    let dir = tempfile::tempdir().expect("dir");
    let original = std::fs::read_to_string(examples().join("email/wireline.toml")).expect("read");
    std::fs::write(
        dir.path().join("wireline.toml"),
        original.replace("40000/month", "90000/month"),
    )
    .expect("write");
    let stale = crate::wireline()
        .args(["plan", "-c"])
        .arg(dir.path().join("wireline.toml"))
        .arg("--check")
        .arg(examples().join("email/ARCHITECTURE.md"))
        .output()
        .expect("runs");
    assert_eq!(stale.status.code(), Some(1));
    assert!(
        crate::text(&stale.stderr).contains("out of date"),
        "{}",
        crate::text(&stale.stderr)
    );
    let json = crate::wireline()
        .args(["plan", "--format", "json", "-c"])
        .arg(examples().join("payments/wireline.toml"))
        .output()
        .expect("runs");
    let model: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(model["provider_monthly"], 72.28);
    let stripe = model["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["name"] == "stripe")
        .expect("stripe");
    assert_eq!(stripe["pattern"], "Hybrid");
}

#[test]
fn check_reports_advisor_rules_as_json_and_denies_warnings_on_request() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("wireline.toml");
    std::fs::write(
        &config,
        "[services.pay]\nbase_url = \"https://pay.example.com\"\ncritical = true\nretry = { attempts = 9 }\n",
    )
    .expect("write");
    let plain = crate::wireline()
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .expect("runs");
    let text = crate::text(&plain.stdout);
    assert!(plain.status.success(), "warnings alone pass: {text}");
    assert!(
        text.contains("warning[retry-multiplies-load]: services.pay.retry")
            && text.contains("fix:"),
        "{text}"
    );
    let denied = crate::wireline()
        .args(["check", "--deny", "warnings", "--format", "json", "-c"])
        .arg(&config)
        .output()
        .expect("runs");
    assert_eq!(denied.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&denied.stdout).expect("json");
    let rules: Vec<&str> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["rule"].as_str().expect("rule"))
        .collect();
    for rule in [
        "retry-multiplies-load",
        "fallback-for-critical",
        "alerts-for-critical",
    ] {
        assert!(rules.contains(&rule), "{rules:?}");
    }
}

#[test]
fn config_level_rules_carry_their_ids_in_json() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("wireline.toml");
    std::fs::write(
        &config,
        "[services.api]\nbase_url = \"http://api.example.com\"\n",
    )
    .expect("write");
    let output = crate::wireline()
        .args(["check", "--format", "json", "-c"])
        .arg(&config)
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let finding = &report["findings"][0];
    assert_eq!(finding["rule"], "plain-http");
    assert_eq!(finding["severity"], "error");
    assert_eq!(finding["line"], 2);
}
