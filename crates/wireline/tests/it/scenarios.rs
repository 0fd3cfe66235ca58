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
