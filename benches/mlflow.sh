#!/usr/bin/env bash
# MLflow push benchmark (issue 14). Starts a local MLflow tracking server (venv from
# scripts/install-deps.sh; SQLite backend, proxied artifacts, --workers $WORKERS, default 4 as
# `mlflow server`'s own default) and
# measures:
#
#   (a) re-push of M unchanged runs (50 params each): M runs are pushed once, the server is
#       stopped (so any request would fail), then hyperfine times `repro mlflow push` — the
#       runs are selected as rows only and the ledger's fingerprint (row + change stamp, migration
#       11) says "unchanged" for each run without loading it, no request is made — next to
#       `repro ls --all --json` over the same database (the cost of loading the runs), and once
#       with every fingerprint cleared (the full comparison a ledger row from before migration
#       10, or a repro upgrade, takes once).
#   (b) first push of N runs, each with 50 params and 20 metrics x 100 steps, by `repro mlflow
#       push` (JOBS runs at once) and by MLflow's own Python client doing the same, run after
#       run: create_run, log_batch (params, tags and the 2,000 metric points with their steps and
#       timestamps; the client splits it into requests of <= 1,000 entities), log_text of the same
#       two artifacts (repro/run.json, repro/rerun.sh), set_terminated.
#   (c) a kept output of OUT_MIB MiB (default 512, random bytes) uploaded under outputs/: the first
#       push of its run by `repro mlflow push` (streamed from the object store, hashed as read;
#       wall time and peak RSS, which shows the file is never held in memory) next to MLflow's
#       Python client `log_artifact` of the same file to a new run of the same server, and the
#       re-push (no upload).
#
# Runs are made as a user makes them: one real `repro run`, copied with new ids and params through
# `repro import`; metric points are stored through the run wrapper's own ingest path
# (examples/metrics_ingest.rs: capture::metrics::read_path + Store::insert_metrics).
#
# Usage: benches/mlflow.sh   (N=1000 M=10000 JOBS=8 RUNS=10 WORKERS=4 PARTS="a b c" OUT_MIB=512 BENCH_DIR=… to change;
#        REPRO=… INGEST=… to use those binaries instead of building the release ones)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-1000}"
M="${M:-10000}"
JOBS="${JOBS:-8}"
WORKERS="${WORKERS:-4}"
PARTS="${PARTS:-a b c}"
OUT_MIB="${OUT_MIB:-512}"
venv="${REPRO_TEST_MLFLOW_VENV:-$PWD/target/py-mlflow}"
[ -x "$venv/bin/mlflow" ] || { echo "no mlflow in $venv: run scripts/install-deps.sh" >&2; exit 1; }
dir="${BENCH_DIR:-$PWD/target/bench-mlflow}"
# REUSE_A=1: keep the database of (a) pushed by an earlier run of this script (its first push of
# M runs takes long on a single-worker server), and only time the re-push again.
if [ "${REUSE_A:-}" = 1 ] && [ -f "$dir/many.db" ]; then
    rm -rf "$dir/b" && mkdir -p "$dir/b"
else
    REUSE_A="" && rm -rf "$dir" && mkdir -p "$dir/b"
fi
if [ -z "${REPRO:-}" ] || [ -z "${INGEST:-}" ]; then
    cargo build --release -q --bin repro --example metrics_ingest
fi
REPRO="${REPRO:-$PWD/target/release/repro}"
INGEST="${INGEST:-$PWD/target/release/examples/metrics_ingest}"

server=""
start_server() {
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false MLFLOW_TRUNCATE_LONG_VALUES=false setsid \
        "$venv/bin/mlflow" server --backend-store-uri "sqlite:///$1/mlflow.db" \
        --artifacts-destination "$1/artifacts" --serve-artifacts --host 127.0.0.1 --port "$port" \
        --workers "$WORKERS" > "$1/server.log" 2>&1 &
    server=$!
    disown "$server"  # stopped by pid below; no "Killed" job notice
    export MLFLOW_TRACKING_URI="http://127.0.0.1:$port"
    for _ in $(seq 240); do curl -sf "$MLFLOW_TRACKING_URI/health" > /dev/null && return; sleep 0.5; done
    cat "$1/server.log"; exit 1
}
stop_server() {
    [ -n "$server" ] || return 0
    kill -TERM -- -"$server" 2>/dev/null || true; sleep 2; kill -KILL -- -"$server" 2>/dev/null || true
    server=""
}
trap stop_server EXIT

# One real run with 50 params, copied with new ids.
rm -rf "$dir/repo" "$dir/seed.db" "$dir/seed.db-wal" "$dir/seed.db-shm"
repo="$dir/repo" && mkdir -p "$repo" && git -C "$repo" init -q -b main
git -C "$repo" -c user.name=b -c user.email=b@example.com commit -q --allow-empty -m init
params=(); for i in $(seq 1 50); do params+=(--param "p$i=value-$i"); done
(cd "$repo" && REPRO_DB="$dir/seed.db" "$REPRO" run -q --host --name bench "${params[@]}" --tag bench -- true)
REPRO_DB="$dir/seed.db" "$REPRO" export > "$dir/seed.jsonl"
make_db() { # COUNT DB [METRICS_DIR]: COUNT copies; with METRICS_DIR, 20 metrics x 100 steps each
    python3 - "$1" "$dir/seed.jsonl" "${3:-}" > "$dir/runs-$1.jsonl" <<'PY'
import json, os, sys, random
n, seed, mdir = int(sys.argv[1]), json.loads(open(sys.argv[2]).readline()), sys.argv[3]
alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
rng = random.Random(14)
if mdir:
    os.makedirs(mdir, exist_ok=True)
for i in range(n):
    r = dict(seed)
    r["id"] = seed["id"][:10] + "".join(rng.choice(alphabet) for _ in range(16))
    r["name"] = f"bench-{i}"
    r["params"] = {f"p{k}": f"value-{k}-{i}" for k in range(1, 51)}
    print(json.dumps(r))
    if mdir:
        with open(f"{mdir}/{r['id']}.jsonl", "w") as f:
            for s in range(100):
                line = {"step": s, "ts": 1796000000 + i * 1000 + s}
                line.update({f"m{k:02}": (i + 1) / (s + k + 1) for k in range(20)})
                f.write(json.dumps(line) + "\n")
PY
    REPRO_DB="$2" "$REPRO" import -q "$dir/runs-$1.jsonl"
    if [ -n "${3:-}" ]; then
        for f in "$3"/*.jsonl; do
            id=$(basename "$f" .jsonl)
            "$INGEST" "$2" "$id" "$f" > /dev/null
        done
    fi
}
load() { echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (2 cores)"; }
# CPU seconds the server's processes (its session: mlflow server and its uvicorn worker) have used.
server_cpu() { ps -o times= -s "$server" | awk '{s += $1} END {print s + 0}'; }

if [[ " $PARTS " == *" b "* ]]; then
    start_server "$dir/b"
    make_db "$N" "$dir/push.db" "$dir/metrics"
    load
    c0=$(server_cpu)
    t0=$(date +%s.%N)
    REPRO_DB="$dir/push.db" "$REPRO" mlflow push -q --experiment bench-repro --jobs "$JOBS" > /dev/null
    t1=$(date +%s.%N)
    repro_s=$(echo "$t1 - $t0" | bc)
    c1=$(server_cpu)
    load

    # The same data through MLflow's own client, one run after another as a script logs it.
    REPRO_DB="$dir/push.db" "$REPRO" ls --all --json > "$dir/runs.json"
    first=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["runs"][0]["id"])' "$dir/runs.json")
    REPRO_DB="$dir/push.db" "$REPRO" script "$first" > "$dir/rerun.sh"
    "$venv/bin/python" - "$dir/runs.json" "$dir/rerun.sh" "$dir/metrics" "$dir/python-seconds" > /dev/null <<'PY'
import json, sys, time
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
runs = json.load(open(sys.argv[1]))["runs"]
script = open(sys.argv[2]).read()
mdir = sys.argv[3]
c = MlflowClient()
exp = c.create_experiment("bench-python")
t0 = time.time()
for r in runs:
    metrics = []
    for line in open(f"{mdir}/{r['id']}.jsonl"):
        p = json.loads(line)
        ts = int(p.pop("ts") * 1000)
        step = p.pop("step")
        metrics.extend(Metric(k, v, ts, step) for k, v in p.items())
    run = c.create_run(exp, run_name=r["name"], start_time=1796000000000,
                       tags={"repro.run_id": r["id"]})
    rid = run.info.run_id
    tags = [RunTag("mlflow.user", r["user"]), RunTag("mlflow.source.type", "JOB"), RunTag("bench", ""),
            RunTag("repro.status", r["status"]), RunTag("repro.host", r["host"])]
    c.log_batch(rid, metrics=metrics, params=[Param(k, v) for k, v in r["params"].items()], tags=tags)
    c.log_text(rid, json.dumps(r, indent=2), "repro/run.json")
    c.log_text(rid, script, "repro/rerun.sh")
    c.set_terminated(rid, "FINISHED")
open(sys.argv[4], "w").write(f"{time.time() - t0:.2f}")
PY
    py_s=$(cat "$dir/python-seconds")
    c2=$(server_cpu)
    load
    echo "server CPU: $((c1 - c0)) s while repro pushed, $((c2 - c1)) s while the Python client logged (setup included)"
    # Both pushed everything: the same number of metric points on the server for each.
    for e in bench-repro bench-python; do
        "$venv/bin/python" - "$e" <<'PY'
import sys
from mlflow import MlflowClient
c = MlflowClient()
e = c.get_experiment_by_name(sys.argv[1])
runs = c.search_runs([e.experiment_id], max_results=5000)
r = runs[0]
n = sum(len(c.get_metric_history(r.info.run_id, k)) for k in r.data.metrics)
print(f"{sys.argv[1]}: {len(runs)} runs; one has {len(r.data.params)} params, {len(r.data.metrics)} metrics, {n} points")
PY
    done
    echo "(b) first push of $N runs (50 params, 20 metrics x 100 steps): repro ${repro_s}s (--jobs $JOBS), MLflow Python client ${py_s}s, ratio $(echo "scale=2; $py_s / $repro_s" | bc)"
    stop_server
fi

if [[ " $PARTS " == *" a "* ]]; then
    if [ -z "$REUSE_A" ]; then
        mkdir -p "$dir/a"
        start_server "$dir/a"
        make_db "$M" "$dir/many.db"
        t0=$(date +%s.%N)
        REPRO_DB="$dir/many.db" "$REPRO" mlflow push -q --experiment bench-many --jobs "$JOBS" > /dev/null
        t1=$(date +%s.%N)
        echo "first push of $M runs (setup of (a)): $(echo "$t1 - $t0" | bc)s"
        echo "$MLFLOW_TRACKING_URI" > "$dir/a/uri"
        # Unchanged runs make no request: the server is stopped first to show it.
        stop_server
    fi
    # The ledger is per server: the same URI, with no server behind it any more.
    MLFLOW_TRACKING_URI=$(cat "$dir/a/uri")
    export MLFLOW_TRACKING_URI
    ! curl -sf "$MLFLOW_TRACKING_URI/health" > /dev/null || { echo "a server still answers" >&2; exit 1; }
    load
    hyperfine -N --warmup 1 --runs "${RUNS:-10}" --export-markdown "$dir/repush.md" \
        "env REPRO_DB=$dir/many.db $REPRO mlflow push -q --experiment bench-many" \
        "env REPRO_DB=$dir/many.db $REPRO ls --all --json"
    load
    # The full comparison, once: every fingerprint cleared (as in a ledger from before
    # migration 10); the push compares full hashes, sends nothing and fills them in.
    python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("UPDATE mlflow_pushes SET fingerprint = NULL"); c.commit()' "$dir/many.db"
    t0=$(date +%s.%N)
    REPRO_DB="$dir/many.db" "$REPRO" mlflow push --experiment bench-many > /dev/null 2> "$dir/full.log"
    t1=$(date +%s.%N)
    echo "re-push of $M unchanged runs without fingerprints (full comparison): $(echo "$t1 - $t0" | bc)s; $(tail -1 "$dir/full.log")"
    load
fi

if [[ " $PARTS " == *" c "* ]]; then
    mkdir -p "$dir/c"
    start_server "$dir/c"
    (cd "$repo" && REPRO_DB="$dir/c.db" "$REPRO" run -q --host --output big.bin -- \
        sh -c "head -c $((OUT_MIB << 20)) /dev/urandom > big.bin")
    load
    /usr/bin/time -f "%e %M" -o "$dir/c/repro.time" \
        env REPRO_DB="$dir/c.db" "$REPRO" mlflow push -q --experiment bench-outputs > "$dir/c/push.out"
    read -r repro_s repro_kb < "$dir/c/repro.time"
    grep -q "outputs: 1 file" "$dir/c/push.out" || { cat "$dir/c/push.out"; exit 1; }
    "$venv/bin/python" - "$repo/big.bin" "$dir/c/python.time" <<'PY'
import sys, time
from mlflow import MlflowClient
c = MlflowClient()
exp = c.create_experiment("bench-outputs-python")
rid = c.create_run(exp).info.run_id
t0 = time.time()
c.log_artifact(rid, sys.argv[1], "outputs")
open(sys.argv[2], "w").write(f"{time.time() - t0:.2f}")
PY
    py_s=$(cat "$dir/c/python.time")
    t0=$(date +%s.%N)
    REPRO_DB="$dir/c.db" "$REPRO" mlflow push --experiment bench-outputs > /dev/null 2> "$dir/c/repush.log"
    t1=$(date +%s.%N)
    load
    echo "(c) kept output of $OUT_MIB MiB: repro mlflow push ${repro_s}s (whole first push, peak RSS $((repro_kb / 1024)) MiB), MLflow Python client log_artifact ${py_s}s, ratio $(echo "scale=2; $py_s / $repro_s" | bc)"
    echo "    re-push: $(echo "$t1 - $t0" | bc)s; $(tail -1 "$dir/c/repush.log")"
    stop_server
fi
