#!/usr/bin/env bash
# Wall-time overhead of wrapping a command: `repro run --host -- true` against bare `true`,
# in a small git repository, with hyperfine (median of many runs). Usage: benches/overhead.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
REPRO="${CARGO_TARGET_DIR:-$PWD/target}/release/repro"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
repo="$work/repo"
mkdir -p "$repo"
git -C "$repo" init -q -b main
for i in $(seq 1 50); do echo "line $i" > "$repo/file$i.py"; done
git -C "$repo" add . && git -C "$repo" -c user.name=b -c user.email=b@b commit -q -m init
export REPRO_DB="$work/repro.db"
cd "$repo"
hyperfine --warmup 20 --runs "${RUNS:-300}" -N \
    --export-json "$work/overhead.json" \
    'true' \
    "$REPRO run -q --host -- true"
python3 - "$work/overhead.json" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))["results"]
base = res[0]["median"]
print("| command | median [ms] | mean ± σ [ms] | min [ms] | overhead vs bare (median) |")
print("|---|---:|---:|---:|---:|")
for r in res:
    print(f"| `{r['command'].split('/')[-1]}` | {r['median']*1e3:.2f} | {r['mean']*1e3:.2f} ± {r['stddev']*1e3:.2f} | {r['min']*1e3:.2f} | {(r['median']-base)*1e3:+.2f} ms |")
PY
echo "runs recorded: $("$REPRO" ls --limit 1000000 --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["runs"]))')"
