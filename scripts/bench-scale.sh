#!/usr/bin/env bash
# A big catalogue on a real server: writes N synthetic images (thumbnails, both
# descriptors, a near copy every 50th) into DIR with `imgsearch bench catalogue` (once;
# kept for re-runs), starts `imgsearch serve` on it, and times (1) start-up until /readyz,
# (2) the web console's first page, `Next` pages and Duplicates review in chromium
# (scripts/console_load.mjs),
# (3) `imgsearch dedup` over the whole database. Needs chromium and tests/browser's
# node_modules (scripts/test.sh installs both). Usage: bash scripts/bench-scale.sh [N] [DIR]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
n="${1:-100000}"
dir="${2:-$root/.cache/bench/scale-$n}"
bin="$root/target/release/imgsearch"
key=AKIDscale0001
secret=scale-secret-0123456789
db=catalogue
"$bin" bench catalogue --data "$dir" --tenant "$key" --db "$db" --images "$n" >&2

log="$(mktemp)"
started=$(date +%s.%N)
IMGSEARCH_ACCESS_KEYS="$key:$secret" "$bin" serve --listen 127.0.0.1:0 --data "$dir" 2>"$log" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null; rm -f "$log"' EXIT
port=""
for _ in $(seq 1 1200); do
  port="$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -n1)"
  [[ -n "$port" ]] && curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.5
done
[[ -n "$port" ]] || { cat "$log" >&2; exit 1; }
ready_s=$(echo "$(date +%s.%N) - $started" | bc)
echo "{\"images\": $n, \"start_until_ready_s\": $ready_s}"

node scripts/console_load.mjs "http://127.0.0.1:$port" "$key" "$secret" "$db" 10

export IMGSEARCH_ENDPOINT="http://127.0.0.1:$port" IMGSEARCH_ACCESS_KEY_ID="$key" \
  IMGSEARCH_ACCESS_KEY_SECRET="$secret"
t0=$(date +%s.%N)
"$bin" dedup --db "$db" --jobs 4 --format csv >"$dir/dedup.csv" 2>"$dir/dedup.log"
dedup_s=$(echo "$(date +%s.%N) - $t0" | bc)
echo "{\"dedup_s\": $dedup_s, \"dedup_summary\": \"$(tail -n1 "$dir/dedup.log")\", \"rows\": $(($(wc -l <"$dir/dedup.csv") - 1))}"
