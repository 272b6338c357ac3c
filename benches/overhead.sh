#!/usr/bin/env bash
# Wall-time overhead of wrapping a command: `repro run --host -- true` against bare `true`,
# in a small git repository, with hyperfine (median of many runs). Usage: benches/overhead.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
REPRO="$PWD/target/release/repro"
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
    --export-markdown "$work/overhead.md" \
    'true' \
    "$REPRO run -q --host -- true"
cat "$work/overhead.md"
echo "runs recorded: $("$REPRO" ls --limit 1000000 --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["runs"]))')"
