#!/usr/bin/env bash
# Benchmarks. Sets up a Python venv with ONNX Runtime (pinned) as the peer to compare the
# network against, builds the release binary, then runs `imgsearch bench embed`.
# Extra arguments go to `imgsearch bench embed`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
venv="$root/.cache/bench-venv"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "import onnxruntime, numpy" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check onnxruntime==1.32.0 numpy==2.2.6
fi
cargo build --release --quiet
"$root/target/release/imgsearch" bench embed --peer-python "$venv/bin/python" "$@"
