//! `wireline test`: the example project's scenarios pass; a wrong expectation fails with the
//! step and what was seen, in the report and in JUnit XML.

use std::path::PathBuf;

const ENV: [(&str, &str); 5] = [
    ("STRIPE_TEST_KEY", "sk_test_scenarios"),
    ("SENDGRID_TEST_KEY", "SG.scenarios"),
    ("STRIPE_WEBHOOK_SECRET", "whsec_scenarios_signing"),
    ("SHOP_BILLING_TOKEN", "billing-token-scenarios"),
    ("SHOP_GROWTH_TOKEN", "growth-token-scenarios"),
];

fn shop() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/shop")
}

#[test]
fn the_example_scenarios_pass_and_a_wrong_expectation_fails_with_its_step() {
    let dir = tempfile::tempdir().expect("dir");
    let junit = dir.path().join("junit.xml");
    let output = crate::wireline()
        .args(["test"])
        .arg(shop().join("scenarios"))
        .arg("--junit")
        .arg(&junit)
        .envs(ENV)
        .env_remove("WIRELINE_ENV")
        .output()
        .expect("runs");
    let stdout = crate::text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        crate::text(&output.stderr)
    );
    assert!(
        stdout.contains("2 scenario(s): 2 passed, 0 failed"),
        "{stdout}"
    );
    let xml = std::fs::read_to_string(&junit).expect("junit written");
    assert!(xml.contains("tests=\"2\" failures=\"0\""), "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), 2);

    let failing = dir.path().join("wrong.toml");
    std::fs::write(
        &failing,
        format!(
            "name = \"expects too much\"\nconfig = {:?}\n[[steps]]\ncall = {{ agent = \"billing-bot\", method = \"GET\", path = \"/proxy/stripe/v1/customers/cus_nope\" }}\nexpect = {{ status = 200 }}\n",
            shop().join("wireline.toml").display().to_string()
        ),
    )
    .expect("write");
    let output = crate::wireline()
        .args(["test"])
        .arg(&failing)
        .arg("--junit")
        .arg(&junit)
        .envs(ENV)
        .env_remove("WIRELINE_ENV")
        .output()
        .expect("runs");
    let stdout = crate::text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL")
            && stdout.contains("step 1")
            && stdout.contains("expected status 200, got 404")
            && stdout.contains("resource_missing"),
        "{stdout}"
    );
    let xml = std::fs::read_to_string(&junit).expect("junit written");
    assert!(
        xml.contains("<failure message=\"step 1: call GET /proxy/stripe/v1/customers/cus_nope"),
        "{xml}"
    );
}

/// The emulators sign webhooks with their own code; Wireline's verifiers accept them: two
/// independent implementations of each provider's scheme agree.
#[test]
fn wireline_verifies_the_webhooks_every_emulator_sends() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("wireline.toml"),
        r#"
[server]
listen = "127.0.0.1:7480"
[agents.reader]
token = "${env:READER_TOKEN}"
scopes = ["events:read"]
[[subscriptions]]
agent = "reader"
events = ["github.*", "shopify.*", "slack.*", "stripe.*"]
[services.github]
base_url = "https://api.github.com"
webhook = { scheme = "github", secret = "${env:GITHUB_HOOK_SECRET}" }
[services.shopify]
base_url = "https://example.myshopify.com"
webhook = { scheme = "shopify", secret = "${env:SHOPIFY_HOOK_SECRET}" }
[services.slack]
base_url = "https://slack.com"
webhook = { scheme = "slack", secret = "${env:SLACK_SIGNING_SECRET}" }
[services.stripe]
base_url = "https://api.stripe.com"
webhook = { scheme = "stripe", secret = "${env:STRIPE_HOOK_SECRET}" }
[mock]
listen = "127.0.0.1:7490"
services = ["github", "shopify", "slack", "stripe"]
webhooks.github = { url = "http://127.0.0.1:7480/hooks/github", secret = "${env:GITHUB_HOOK_SECRET}" }
webhooks.shopify = { url = "http://127.0.0.1:7480/hooks/shopify", secret = "${env:SHOPIFY_HOOK_SECRET}" }
webhooks.slack = { url = "http://127.0.0.1:7480/hooks/slack", secret = "${env:SLACK_SIGNING_SECRET}" }
webhooks.stripe = { url = "http://127.0.0.1:7480/hooks/stripe", secret = "${env:STRIPE_HOOK_SECRET}" }
[environments.dev]
mock = true
"#,
    )
    .expect("config");
    std::fs::write(
        dir.path().join("hooks.toml"),
        r##"
name = "every emulator's signed webhook is verified and stored"
config = "wireline.toml"
[[steps]]
emulator = { method = "POST", path = "/github/repos/acme/app/issues", json = { title = "Checkout fails" }, headers = { Authorization = "Bearer ghp_test" } }
expect = { status = 201 }
[[steps]]
emulator = { method = "POST", path = "/shopify/admin/api/2024-01/orders.json", json = { order = { line_items = [{ title = "Mug", price = "9.00", quantity = 1 }] } }, headers = { X-Shopify-Access-Token = "shpat_test" } }
expect = { status = 201 }
[[steps]]
emulator = { method = "POST", path = "/slack/api/chat.postMessage", json = { channel = "#ops", text = "deployed" }, headers = { Authorization = "Bearer xoxb-test" } }
expect = { status = 200, json = { ok = true } }
[[steps]]
emulator = { method = "POST", path = "/stripe/v1/customers", form = { email = "ada@example.com" }, headers = { Authorization = "Bearer sk_test_hooks" } }
expect = { status = 200 }
[[steps]]
expect_events = { agent = "reader", types = "github.*", count = 1 }
[[steps]]
expect_events = { agent = "reader", types = "shopify.*", count = 1 }
[[steps]]
expect_events = { agent = "reader", types = "slack.*", count = 1 }
[[steps]]
expect_events = { agent = "reader", types = "stripe.customer.created", count = 1 }
"##,
    )
    .expect("scenario");
    let output = crate::wireline()
        .arg("test")
        .arg(dir.path().join("hooks.toml"))
        .envs([
            ("READER_TOKEN", "reader-token-1"),
            ("GITHUB_HOOK_SECRET", "gh-hook-secret"),
            ("SHOPIFY_HOOK_SECRET", "shpss_hook_secret"),
            ("SLACK_SIGNING_SECRET", "slack-signing-secret"),
            ("STRIPE_HOOK_SECRET", "whsec_stripe_hook_secret"),
        ])
        .env_remove("WIRELINE_ENV")
        .output()
        .expect("runs");
    let stdout = crate::text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        crate::text(&output.stderr)
    );
}
