#!/usr/bin/env bash
# The whole test suite from a fresh checkout: set-up, format and lint checks, then every
# unit and end-to-end test in release mode (the network and the decoders are slow in debug).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --release --all-targets --quiet -- -D warnings
cargo test --release --all-targets
