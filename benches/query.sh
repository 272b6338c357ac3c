#!/usr/bin/env bash
# Query benchmark: fills a database with 1,000,000 runs of realistic shape (examples/fill_db.rs)
# and measures, with hyperfine, wall time including process start of
#   repro ls (default), ls --digest PREFIX, ls --code PREFIX --status failed, show PREFIX,
# a few more filters, and `repro import` of 100,000 runs.
# Usage: benches/query.sh   (N=… IMPORT_N=… BENCH_DIR=… to change; the filled database is reused)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-1000000}"
IMPORT_N="${IMPORT_N:-100000}"
dir="${BENCH_DIR:-$PWD/target/bench-query}"
mkdir -p "$dir"
cargo build --release -q --bin repro --example fill_db
REPRO="$PWD/target/release/repro"
db="$dir/runs-$N.db"
if [ ! -s "$dir/probes-$N.env" ]; then
    rm -f "$db" "$db-wal" "$db-shm"
    echo "filling $db with $N runs (and $IMPORT_N more in $dir/import.jsonl)…" >&2
    /usr/bin/time -f "fill: %e s wall, %M KB max RSS" \
        "$PWD/target/release/examples/fill_db" "$db" "$N" "$dir/import.jsonl" "$IMPORT_N" \
        > "$dir/probes-$N.env"
fi
# shellcheck disable=SC1090
. "$dir/probes-$N.env"
echo "database: $(du -h "$db" | cut -f1), probes: id $PROBE_ID digest $PROBE_DIGEST commit $PROBE_COMMIT" >&2
export REPRO_DB="$db" REPRO_NOW="2026-11-26T00:00:00Z"
# Warm the page cache and checkpoint once so every command sees the same file.
"$REPRO" ls --all --status failed --format csv --columns id > /dev/null

hyperfine -N --warmup 3 --runs "${RUNS:-30}" --export-markdown "$dir/queries.md" \
    -n 'ls' "$REPRO ls" \
    -n "ls --digest $PROBE_DIGEST" "$REPRO ls --digest $PROBE_DIGEST" \
    -n "ls --code $PROBE_COMMIT --status failed" "$REPRO ls --code $PROBE_COMMIT --status failed" \
    -n "show $PROBE_ID" "$REPRO show $PROBE_ID" \
    -n 'ls --status failed' "$REPRO ls --status failed" \
    -n 'ls --since 7d' "$REPRO ls --since 7d" \
    -n 'ls --until 30d' "$REPRO ls --until 30d" \
    -n 'ls --image model-3' "$REPRO ls --image model-3" \
    -n 'ls --dataset coco@v3' "$REPRO ls --dataset coco@v3" \
    -n 'ls --tag best' "$REPRO ls --tag best" \
    -n 'ls --param lr=0.3 --host gpu-07' "$REPRO ls --param lr=0.3 --host gpu-07" \
    -n 'ls --branch exp-7 --json' "$REPRO ls --branch exp-7 --json"

imp="$dir/import.db"
hyperfine -N --runs "${IMPORT_RUNS:-3}" --export-markdown "$dir/import.md" \
    --prepare "rm -f $imp $imp-wal $imp-shm" \
    -n "import $IMPORT_N runs (empty db)" "$REPRO -q --db $imp import $dir/import.jsonl"
echo "re-import of the same $IMPORT_N runs (all unchanged):" >&2
/usr/bin/time -f "%e s wall" "$REPRO" -q --db "$imp" import "$dir/import.jsonl"
cat "$dir/queries.md" "$dir/import.md"
