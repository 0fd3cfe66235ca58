//! The config loader (`wireline_config::load_str`: TOML parse, credential scan, typed model,
//! validation, secret resolution) on arbitrary UTF-8 text. Must not panic; every finding
//! prints, and none shows a secret value the text does not contain.
#![no_main]

use std::sync::LazyLock;

static ENV: LazyLock<wireline_config::Env> = LazyLock::new(wireline_fuzz::config::env);

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        wireline_fuzz::config::check(text, None, &ENV);
    }
});
