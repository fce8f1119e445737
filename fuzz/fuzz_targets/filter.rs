//! libFuzzer target `filter`: see `fuzz/harness.rs` for what it feeds and checks.
#![no_main]

#[path = "../harness.rs"]
#[allow(dead_code)]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run("filter", data));
