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

# ---- Web console browser test (tests/browser) ----------------------------------------
# Debian's chromium (apt, only when missing) driven by playwright-core from npm (pinned in
# tests/browser/package-lock.json; `npm ci`, never a browser download). Node/npm come with
# the machine. Screenshots land in target/browser/ (paths printed).
if [[ ! -x /usr/bin/chromium ]]; then
  echo "test: installing chromium (apt)" >&2
  sudo_cmd=""; [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
IMGSEARCH_BIN="$root/target/release/imgsearch" node --test tests/browser/console.test.mjs
