#!/usr/bin/env bash
# MLflow push benchmark (issue 14). Starts a local MLflow tracking server (venv from
# scripts/install-deps.sh), makes N runs with 50 params each (one real `repro run`, then copies
# with new ids through `repro import`), and times side by side:
#   repro mlflow push of N runs            vs   MLflow's Python client (create_run, log_batch of
#                                                the same params and tags, the same two artifacts,
#                                                set_terminated), one run after another
#   and a re-push of M unchanged runs (no request is made).
# Usage: benches/mlflow.sh   (N=1000 M=10000 JOBS=8 BENCH_DIR=… REPRO=path/to/repro to change)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-1000}"
M="${M:-10000}"
JOBS="${JOBS:-8}"
venv="${REPRO_TEST_MLFLOW_VENV:-$PWD/target/py-mlflow}"
[ -x "$venv/bin/mlflow" ] || { echo "no mlflow in $venv: run scripts/install-deps.sh" >&2; exit 1; }
dir="${BENCH_DIR:-$PWD/target/bench-mlflow}"
rm -rf "$dir" && mkdir -p "$dir"
if [ -z "${REPRO:-}" ]; then
    cargo build --release -q --bin repro
    REPRO="$PWD/target/release/repro"
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false MLFLOW_TRUNCATE_LONG_VALUES=false setsid \
    "$venv/bin/mlflow" server --backend-store-uri "sqlite:///$dir/mlflow.db" \
    --artifacts-destination "$dir/artifacts" --serve-artifacts --host 127.0.0.1 --port "$port" \
    --workers 1 > "$dir/server.log" 2>&1 &
server=$!
trap 'kill -TERM -- -$server 2>/dev/null; sleep 2; kill -KILL -- -$server 2>/dev/null || true' EXIT
export MLFLOW_TRACKING_URI="http://127.0.0.1:$port"
for _ in $(seq 240); do curl -sf "$MLFLOW_TRACKING_URI/health" > /dev/null && break; sleep 0.5; done
curl -sf "$MLFLOW_TRACKING_URI/health" > /dev/null || { cat "$dir/server.log"; exit 1; }

# One real run with 50 params, copied with new ids.
repo="$dir/repo" && mkdir -p "$repo" && git -C "$repo" init -q -b main
git -C "$repo" -c user.name=b -c user.email=b@example.com commit -q --allow-empty -m init
params=(); for i in $(seq 1 50); do params+=(--param "p$i=value-$i"); done
(cd "$repo" && REPRO_DB="$dir/seed.db" "$REPRO" run -q --host --name bench "${params[@]}" --tag bench -- true)
REPRO_DB="$dir/seed.db" "$REPRO" export > "$dir/seed.jsonl"
make_db() { # count db
    python3 - "$1" "$dir/seed.jsonl" > "$dir/runs-$1.jsonl" <<'PY'
import json, sys, random
n, seed = int(sys.argv[1]), json.loads(open(sys.argv[2]).readline())
alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
rng = random.Random(14)
for i in range(n):
    r = dict(seed)
    r["id"] = seed["id"][:10] + "".join(rng.choice(alphabet) for _ in range(16))
    r["name"] = f"bench-{i}"
    r["params"] = {f"p{k}": f"value-{k}-{i}" for k in range(1, 51)}
    print(json.dumps(r))
PY
    REPRO_DB="$2" "$REPRO" import -q "$dir/runs-$1.jsonl"
}
make_db "$N" "$dir/push.db"

t0=$(date +%s.%N)
REPRO_DB="$dir/push.db" "$REPRO" mlflow push -q --experiment bench-repro --jobs "$JOBS" > /dev/null
t1=$(date +%s.%N)
repro_s=$(echo "$t1 - $t0" | bc)

# The same data through MLflow's own client (log_batch), one run after another as it logs.
REPRO_DB="$dir/push.db" "$REPRO" ls --all --json > "$dir/runs.json"
REPRO_DB="$dir/push.db" "$REPRO" script "$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["runs"][0]["id"])' "$dir/runs.json")" > "$dir/rerun.sh"
"$venv/bin/python" - "$dir/runs.json" "$dir/rerun.sh" "$dir/python-seconds" > /dev/null <<'PY'
import json, sys, time
from mlflow import MlflowClient
from mlflow.entities import Param, RunTag
runs = json.load(open(sys.argv[1]))["runs"]
script = open(sys.argv[2]).read()
c = MlflowClient()
exp = c.create_experiment("bench-python")
t0 = time.time()
for r in runs:
    run = c.create_run(exp, run_name=r["name"], tags={"repro.run_id": r["id"]})
    rid = run.info.run_id
    tags = [RunTag("mlflow.user", r["user"]), RunTag("mlflow.source.type", "JOB"), RunTag("bench", ""),
            RunTag("repro.status", r["status"]), RunTag("repro.host", r["host"])]
    c.log_batch(rid, params=[Param(k, v) for k, v in r["params"].items()], tags=tags)
    c.log_text(rid, json.dumps(r, indent=2), "repro/run.json")
    c.log_text(rid, script, "repro/rerun.sh")
    c.set_terminated(rid, "FINISHED")
open(sys.argv[3], "w").write(f"{time.time() - t0:.2f}")
PY
py_s=$(cat "$dir/python-seconds")
echo "push of $N runs (50 params each): repro ${repro_s}s, MLflow Python client ${py_s}s"

make_db "$M" "$dir/many.db"
t0=$(date +%s.%N)
REPRO_DB="$dir/many.db" "$REPRO" mlflow push -q --experiment bench-many --jobs "$JOBS" > /dev/null
t1=$(date +%s.%N)
echo "first push of $M runs: $(echo "$t1 - $t0" | bc)s"
# Unchanged runs make no request: the server is stopped first to show it.
kill -TERM -- -"$server" 2>/dev/null || true; sleep 2; kill -KILL -- -"$server" 2>/dev/null || true
hyperfine -N --warmup 1 --runs "${RUNS:-10}" --export-markdown "$dir/repush.md" \
    "env REPRO_DB=$dir/many.db $REPRO mlflow push -q --experiment bench-many" \
    "env REPRO_DB=$dir/many.db $REPRO ls --all --json"
