//! The `shopify` webhook signature scheme: header parsing and verification, raw and signed-then-
//! mutated inputs (see `wireline_fuzz::webhook` for what is asserted).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wireline_fuzz::webhook::run(wireline_fuzz::webhook::Kind::Shopify, data);
});
