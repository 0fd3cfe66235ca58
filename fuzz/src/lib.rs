//! Helpers shared by the fuzz targets in `fuzz_targets/` (see `../FUZZING.md`).

pub mod config;
pub mod toml_gen;
pub mod webhook;

/// A header value from fuzz bytes, or `None` where `http` would refuse it (the server never
/// hands the verifier such a value).
pub fn header_value(bytes: &[u8]) -> Option<http::HeaderValue> {
    http::HeaderValue::from_bytes(bytes).ok()
}
