#!/usr/bin/env bash
# Metric query benchmark (issue 13): `repro ls --sort metric:acc --limit 20` and
# `repro ls --where 'metric:acc>=0.9'` over N runs (default 1,000,000, filled by
# examples/fill_db.rs: 98 % of runs have `acc` and `loss`, about 11 % reach acc >= 0.9), wall time
# with hyperfine including process start; then the peer: MLflow's
# search_runs(order_by=["metrics.acc DESC"], max_results=20) on a local SQLite tracking store holding
# the same PEER_N runs (default 10,000; benches/metrics_peer.py), next to repro on those runs.
# Usage: benches/metrics_query.sh   (N=… PEER_N=… RUNS=… BENCH_DIR=… to change; databases are reused;
#        CLIENT_N=… makes only that many MLflow runs through its client and copies the rest in SQL)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-1000000}"
PEER_N="${PEER_N:-10000}"
RUNS="${RUNS:-20}"
dir="${BENCH_DIR:-$PWD/target/bench-metrics}"
venv="${REPRO_TEST_MLFLOW_VENV:-$PWD/target/py-mlflow}"
mkdir -p "$dir"
cargo build --release -q --bin repro --example fill_db
REPRO="$PWD/target/release/repro"
fill() { # fill N: a database of N runs with metrics (kept between runs of this script)
    local db="$dir/runs-$1.db"
    if [ ! -s "$dir/probes-$1.env" ]; then
        rm -f "$db" "$db-wal" "$db-shm"
        /usr/bin/time -f "fill $1: %e s wall" "$PWD/target/release/examples/fill_db" "$db" "$1" > "$dir/probes-$1.env"
    fi
    echo "$db"
}
big=$(fill "$N")
export REPRO_NOW="2026-11-26T00:00:00Z"
REPRO_DB="$big" "$REPRO" ls --all --status failed --format csv --columns id > /dev/null # warm the cache
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
REPRO_DB="$big" hyperfine -N --warmup 3 --runs "$RUNS" --export-markdown "$dir/queries-$N.md" \
    -n 'ls --sort metric:acc --limit 20' "$REPRO ls --sort metric:acc --limit 20" \
    -n "ls --where 'metric:acc>=0.9'" "$REPRO ls --where metric:acc>=0.9" \
    -n "ls --where 'metric:acc>=0.9499' (rare)" "$REPRO ls --where metric:acc>=0.9499" \
    -n "ls --sort metric:acc --where 'metric:loss<0.1' --status failed" "$REPRO ls --sort metric:acc --where metric:loss<0.1 --status failed" \
    -n 'ls --sort metric:loss --reverse --columns id,name,metric:acc,metric:loss' "$REPRO ls --sort metric:loss --reverse --columns id,name,metric:acc,metric:loss" \
    -n 'ls --sort metric:acc --limit 20 --json' "$REPRO ls --sort metric:acc --limit 20 --json"

small=$(fill "$PEER_N")
REPRO_DB="$small" hyperfine -N --warmup 3 --runs "$RUNS" --export-markdown "$dir/peer-repro-$PEER_N.md" \
    -n "repro ls --sort metric:acc --limit 20 ($PEER_N runs)" "$REPRO ls --sort metric:acc --limit 20"
REPRO_DB="$small" "$REPRO" ls --sort metric:acc --limit 5 --format csv --columns id | tail -n +2 | tr -d '\r' | tr '\n' ' ' | sed 's/^/repro top 5: /'; echo
(cd "$dir" && "$venv/bin/python" "$OLDPWD/benches/metrics_peer.py" "$small" "mlflow-$PEER_N" "$RUNS")
cat "$dir/queries-$N.md" "$dir/peer-repro-$PEER_N.md"
