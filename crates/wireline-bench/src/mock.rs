//! `wireline-bench mock`: the emulators must not be what a benchmark measures.
//!
//! The release binary's `wireline mock --service stripe,github` as a child process; 64
//! connections send `--requests` GETs of one Stripe customer
//! (`GET /stripe/v1/customers/{id}`: API key check, `Request-Id`, state lookup, JSON) and of
//! a GitHub issue. Baseline in the same run: a bare axum handler answering a fixed JSON body
//! (the proxy benchmark's fast upstream), same connections, same client.

use std::io::BufRead;
use std::process::{Command, Stdio};

use anyhow::Context;

use crate::print_table;
use crate::proxy::{binary, load, upstream};

const STRIPE_KEY: &str = "sk_test_bench_0123456789";

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) async fn run(runs: usize, requests: usize) -> anyhow::Result<()> {
    let mut child = Command::new(binary()?)
        .args(["mock", "--port", "0", "--service", "stripe,github"])
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let child = Child(child);
    let mut lines = std::io::BufReader::new(stdout).lines();
    let first = lines.next().context("wireline mock printed nothing")??;
    let address = first
        .strip_prefix("wireline emulators on ")
        .context("unexpected first line")?
        .to_owned();
    std::thread::spawn(move || for _ in lines {});
    let client = wireline_direct::client::build(None).map_err(anyhow::Error::msg)?;
    let customer: serde_json::Value = client
        .post(format!("{address}/stripe/v1/customers"))
        .bearer_auth(STRIPE_KEY)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=bench%40example.com")
        .send()
        .await?
        .json()
        .await?;
    let id = customer["id"].as_str().context("customer id")?;
    client
        .post(format!("{address}/github/repos/acme/app/issues"))
        .bearer_auth("ghp_bench")
        .json(&serde_json::json!({"title": "bench"}))
        .send()
        .await?;
    let stripe_url = format!("{address}/stripe/v1/customers/{id}");
    let github_url = format!("{address}/github/repos/acme/app/issues/1");
    let bare = upstream(false).await?;
    let bare_url = format!("http://{}/v1/customers/cus_1", bare.address);
    load(&stripe_url, 8, 2_000, Some(STRIPE_KEY)).await?;
    load(&bare_url, 8, 2_000, None).await?;
    let (mut baseline, mut stripe, mut github) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        baseline.push(load(&bare_url, 64, requests, None).await?.per_second);
        stripe.push(
            load(&stripe_url, 64, requests, Some(STRIPE_KEY))
                .await?
                .per_second,
        );
        // GitHub's hourly limit is 5,000 per token: a token per run keeps it out of the way.
        let token = format!("ghp_bench_{}", rand::random::<u32>());
        github.push(
            load(&github_url, 64, requests.min(4_900), Some(&token))
                .await?
                .per_second,
        );
    }
    drop(child);
    let ratio: Vec<f64> = stripe
        .iter()
        .zip(&baseline)
        .map(|(s, b)| s / b * 100.0)
        .collect();
    print_table(
        runs,
        vec![
            (
                "baseline: bare axum handler, fixed JSON, 64 connections".to_owned(),
                baseline,
                "requests/s",
            ),
            (
                "Stripe emulator: GET /v1/customers/{id}, 64 connections".to_owned(),
                stripe,
                "requests/s",
            ),
            ("  as a share of the baseline".to_owned(), ratio, "%"),
            (
                "GitHub emulator: GET /repos/acme/app/issues/1, 64 connections (4,900 requests)"
                    .to_owned(),
                github,
                "requests/s",
            ),
        ],
    );
    Ok(())
}
