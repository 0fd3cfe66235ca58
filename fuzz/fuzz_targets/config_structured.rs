//! The config loader on generated, plausible `wireline.toml` documents (`[server]`,
//! `[agents.x]`, `[services.y]` with webhook, poll, retry, operations tables, subscriptions,
//! environments ...), loaded with and without an environment, to reach the model, validation
//! and secret resolution. Same assertions as `config_text`.
#![no_main]

use std::sync::LazyLock;

use arbitrary::{Arbitrary, Unstructured};
use wireline_fuzz::toml_gen::Doc;

static ENV: LazyLock<wireline_config::Env> = LazyLock::new(wireline_fuzz::config::env);

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(doc) = Doc::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let text = doc.render();
    wireline_fuzz::config::check(&text, doc.environment(), &ENV);
});
