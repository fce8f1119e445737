#!/usr/bin/env bash
# Our ANN index against faiss HNSW on the same vectors, in one run (issue: "beat faiss HNSW
# on recall per millisecond"): writes N synthetic clustered, non-negative, unit-length
# vectors (seed SEED) as fvecs, runs `imgsearch bench index` on them with an efSearch sweep,
# then scripts/bench_ann_peer.py builds faiss IndexHNSWFlat (M=32, efConstruction 100) on
# the same files and prints both sweeps and the QPS ratio at equal recall.
# faiss comes from PyPI (scripts/bench-peer-requirements.txt, pinned) into .cache/bench-venv.
#
# Usage: bash scripts/bench-ann-peer.sh [N] [SEED] [DIM]   (defaults 100000 2 1280)
# Extra flags for our side go in OURS_FLAGS (e.g. "--connectivity 24 --rerank 80").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
n="${1:-100000}"
seed="${2:-2}"
dim="${3:-1280}"
ef="${EF:-16,24,32,48,64,96,128,192,256}"
bin="$root/target/release/imgsearch"
venv="$root/.cache/bench-venv"
req="$root/scripts/bench-peer-requirements.txt"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  echo "$want" >"$venv/.requirements.sha256"
fi
work="$root/.cache/bench/ann-peer-$n-$seed-$dim"
mkdir -p "$work"
if [[ ! -f "$work/base.fvecs" ]]; then
  "$bin" bench index --synthetic "$n" --dim "$dim" --num-queries 1000 --seed "$seed" \
    --non-negative --write-fvecs "$work" >&2
fi
# shellcheck disable=SC2086
"$bin" bench index --base "$work/base.fvecs" --queries "$work/queries.fvecs" \
  --ef-search "$ef" ${OURS_FLAGS:-} >"$work/ours.json"
"$venv/bin/python" scripts/bench_ann_peer.py "$work/base.fvecs" "$work/queries.fvecs" \
  "$work/ours.json" --ef "$ef"
