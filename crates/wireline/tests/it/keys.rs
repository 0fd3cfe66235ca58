//! Key lifecycle through the binary: both tokens work while an agent rotates; `keys` lists
//! names, ages and agents (never values); `check --strict` fails on an overdue key; `keys
//! rotate` walks through the switch.

use crate::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_accepts_both_tokens_and_the_inventory_never_shows_values() {
    let dir = tempfile::tempdir().expect("dir");
    let config = crate::server::write_config(
        dir.path(),
        r#"
[agents.bot]
token = "${env:BOT_TOKEN}"
next_token = "${env:BOT_TOKEN_NEXT}"
scopes = ["events:read"]
[[subscriptions]]
agent = "bot"
events = ["app.*"]
"#,
    );
    // The metadata may live in a sidecar beside the config.
    std::fs::write(
        dir.path().join("wireline.keys.toml"),
        "[keys.BOT_TOKEN]\ncreated = \"2025-01-01\"\nowner = \"platform team\"\n",
    )
    .expect("sidecar");
    let envs = [
        ("BOT_TOKEN", "old-token-value-1"),
        ("BOT_TOKEN_NEXT", "new-token-value-2"),
    ];
    let server = Server::start(&config, &envs);
    let http = crate::server::client();
    for (token, status) in [
        ("old-token-value-1", 200),
        ("new-token-value-2", 200),
        ("wrong", 401),
    ] {
        let response = http
            .get(server.url("/v1/consumers/c"))
            .bearer_auth(token)
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), status, "{token}");
    }
    drop(server);
    let run = |args: &[&str]| {
        crate::wireline()
            .args(args)
            .arg("-c")
            .arg(&config)
            .envs(envs)
            .output()
            .expect("runs")
    };
    let listed = run(&["keys"]);
    let table = crate::text(&listed.stdout);
    assert!(listed.status.success(), "{}", crate::text(&listed.stderr));
    assert!(
        table.contains("BOT_TOKEN") && table.contains("OVERDUE") && table.contains("bot"),
        "{table}"
    );
    assert!(
        !table.contains("old-token-value-1") && !table.contains("new-token-value-2"),
        "{table}"
    );
    let json = run(&["keys", "--json"]);
    let first: serde_json::Value =
        serde_json::from_str(crate::text(&json.stdout).lines().next().expect("a line"))
            .expect("json");
    assert_eq!(first["owner"], "platform team");
    let lenient = run(&["check"]);
    assert!(lenient.status.success(), "{}", crate::text(&lenient.stdout));
    assert!(
        crate::text(&lenient.stdout).contains("warning[rotate-credentials]: keys.BOT_TOKEN"),
        "{}",
        crate::text(&lenient.stdout)
    );
    let strict = run(&["check", "--strict"]);
    assert_eq!(
        strict.status.code(),
        Some(1),
        "{}",
        crate::text(&strict.stdout)
    );
    assert!(crate::text(&strict.stdout).contains("error[rotate-credentials]: keys.BOT_TOKEN"));
    let rotate = crate::wireline()
        .args(["keys", "-c"])
        .arg(&config)
        .args(["rotate", "BOT_TOKEN"])
        .output()
        .expect("runs");
    let steps = crate::text(&rotate.stdout);
    assert!(rotate.status.success(), "{}", crate::text(&rotate.stderr));
    assert!(
        steps.contains("next_token") && steps.contains("[agents.bot]"),
        "{steps}"
    );
}
