//! The integration tests, one binary (linking the crate once instead of once per file):
//! - `offline`: the `imgsearch` binary's local commands (embed, classify, model export);
//! - `model`: the embedding model's acceptance against the reference outputs;
//! - `connections`: slow headers, idle and surplus connections, a stalled body, SIGTERM;
//! - `fuzz_corpus`: every committed fuzz input replayed through the fuzz harness;
//! - `end_to_end`: the real server on a free port, driven by the client commands and the
//!   library client.
//!
//! Data comes from ../shared; a missing data set fails the test. The SDK, crash and browser
//! suites live in tests/sdk and tests/browser (run by scripts/test.sh).

mod common;
mod connections;
mod end_to_end;
mod fuzz_corpus;
mod model;
mod offline;
