#!/usr/bin/env bash
# Runs the libFuzzer targets of fuzz/ (cargo fuzz) for a set time each and prints, per
# target, the executions, the corpus size and whether anything failed.
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET (default 60)] [TARGET ...]
#
# Targets: params, auth, list_token, decode, filter (fuzz/harness.rs says what each checks). The
# corpus grows in fuzz/corpus/<target>/ (git-ignored), starting from the committed seeds in
# fuzz/seeds/<target>/. A failing input is written to fuzz/artifacts/<target>/: once fixed,
# commit it to fuzz/regressions/<target>/ so that tests/it/fuzz_corpus.rs replays it on every
# test run. Logs: .cache/fuzz/<target>.log.
#
# cargo-fuzz is installed by pinned version into .cache/tools (idempotent). It needs a
# nightly compiler for its sanitizer flags: a `nightly` rustup toolchain when there is one,
# else this machine's stable compiler with RUSTC_BOOTSTRAP=1 (same flags, unsupported use).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cargo_fuzz_version="0.13.2"
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(params auth list_token decode filter)

tools="$root/.cache/tools"
if ! "$tools/bin/cargo-fuzz" --version 2>/dev/null | grep -q "$cargo_fuzz_version"; then
  echo "fuzz: installing cargo-fuzz $cargo_fuzz_version into .cache/tools" >&2
  cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked --root "$tools"
fi
export PATH="$tools/bin:$PATH"

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi

mkdir -p "$root/.cache/fuzz"
cd "$root"
"${fuzz[@]}" build  # all targets at once: one compile of the crate
summary=()
status=0
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  log="$root/.cache/fuzz/$target.log"
  echo "fuzz: $target for ${secs}s" >&2
  if "${fuzz[@]}" run "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    result="ok"
  else
    result="FAILED (see $log and fuzz/artifacts/$target/)"
    status=1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
  summary+=("$target: ${execs:-?} executions in ${secs}s, corpus $corpus files, $result")
done
printf 'fuzz: %s\n' "${summary[@]}"
exit $status
