#!/usr/bin/env bash
# Starts imgsearch from a fresh checkout: fetches the model and ONNX Runtime (once), builds
# the release binary (incrementally) and runs it. Arguments go to the binary; with none it
# runs the server (`imgsearch serve`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
cargo build --release --quiet
if [[ $# -eq 0 ]]; then set -- serve; fi
exec "$root/target/release/imgsearch" "$@"
