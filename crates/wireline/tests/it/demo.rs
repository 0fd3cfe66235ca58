//! `wireline demo`, the README's run command, end to end: every step behaves as intended.

#[test]
fn the_demo_runs_every_pattern_and_exits_0() {
    let output = crate::wireline()
        .arg("demo")
        .env_remove("WIRELINE_ENV")
        .output()
        .expect("wireline demo runs");
    let stdout = crate::text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        crate::text(&output.stderr)
    );
    for step in [
        "after 2 upstream attempts",
        "Idempotent-Replayed: true",
        "1 missed by webhooks and recovered",
        "derived app.user.no_login for [\"ada\"]",
        "only 3 reached SendGrid",
        "none was refused with 429",
        "Every step behaved as intended",
    ] {
        assert!(stdout.contains(step), "{step:?} missing from:\n{stdout}");
    }
    assert!(!stdout.contains("FAILED"), "{stdout}");
}
