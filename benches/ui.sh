#!/usr/bin/env bash
# `repro ui` benchmark (issue 27): the runs page's request `/api/runs?limit=50&sort=metric:acc`
# against a `repro ui` serving N runs (default 1,000,000, filled by examples/fill_db.rs as in
# benches/metrics_query.sh), timed with hyperfine around curl (process start of curl included),
# plus curl's own time_total (the server's answer, no process start). Then the peer: MLflow's UI
# request, `POST /api/2.0/mlflow/runs/search` with max_results=100 ordered by `metrics.acc DESC`,
# against `mlflow server` on its SQLite store holding PEER_N runs (default 10,000, made by
# benches/metrics_peer.py from the same runs), next to `repro ui` over the same PEER_N runs with
# limit=100.
# Issue 27's slow cases are timed too: a metric condition with a status, and deep pages (offset
# 1,000, 100,000 and 990,000 runs in, by start and by a metric); and the Datasets and Images
# pages' requests (/api/datasets, /api/images).
# Usage: benches/ui.sh   (N=… PEER_N=… RUNS=… WARMUP=… BENCH_DIR=… to change; databases are
#        reused; REPRO=… FILL=… use those binaries instead of building the release ones;
#        PEER=no: only the requests of repro ui over N runs (no browser, no MLflow), e.g. to time
#        an older binary next to this one; CLIENT_N=… MLflow runs made through its client,
#        default 200, the rest copied in SQL)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-1000000}"
PEER_N="${PEER_N:-10000}"
RUNS="${RUNS:-30}"
WARMUP="${WARMUP:-3}"
dir="${BENCH_DIR:-$PWD/target/bench-ui}"
venv="${REPRO_TEST_MLFLOW_VENV:-$PWD/target/py-mlflow}"
[ -x "$venv/bin/mlflow" ] || { echo "no mlflow in $venv: run scripts/install-deps.sh" >&2; exit 1; }
mkdir -p "$dir"
if [ -z "${REPRO:-}" ] || [ -z "${FILL:-}" ]; then
    cargo build --release -q --bin repro --example fill_db
fi
REPRO="${REPRO:-$PWD/target/release/repro}"
FILL="${FILL:-$PWD/target/release/examples/fill_db}"
fill() { # fill N: a database of N runs with metrics (kept between runs of this script)
    local db="$dir/runs-$1.db"
    if [ ! -s "$dir/probes-$1.env" ]; then
        rm -f "$db" "$db-wal" "$db-shm"
        /usr/bin/time -f "fill $1: %e s wall" "$FILL" "$db" "$1" > "$dir/probes-$1.env"
    fi
    echo "$db"
}
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
serve() { # serve DB: starts repro ui on it; its URL (no trailing /) in $served
    rm -f "$dir/url"
    setsid "$REPRO" --db "$1" ui --listen 127.0.0.1:0 > "$dir/url" 2> /dev/null &
    pids+=($!)
    for _ in $(seq 100); do [ -s "$dir/url" ] && break; sleep 0.1; done
    served=$(sed 's:/$::' "$dir/url")
}
server_ms() { # server_ms URL [curl args…]: mean of curl's time_total over RUNS requests, in ms
    local u="$1"; shift
    for _ in $(seq "$RUNS"); do curl -s -o /dev/null -w '%{time_total}\n' "$@" "$u"; done |
        awk '{s+=$1; if (min==""||$1<min) min=$1} END {printf "mean %.1f ms, min %.1f ms", s/NR*1000, min*1000}'
}

big=$(fill "$N")
serve "$big"; url=$served
q="$url/api/runs?limit=50&sort=metric:acc"
curl -sf "$q" > /dev/null # warm the cache
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
# name|query string: the requests timed by hyperfine (and by curl's time_total).
requests=(
    "limit=50&sort=metric:acc|limit=50&sort=metric%3Aacc"
    "limit=50|limit=50"
    "limit=50&where=metric:acc>=0.9&status=failed|limit=50&where=metric%3Aacc%3E%3D0.9&status=failed"
    "limit=50&where=metric:acc>=0.9|limit=50&where=metric%3Aacc%3E%3D0.9"
    "limit=50&offset=1000|limit=50&offset=1000"
    "limit=50&offset=100000|limit=50&offset=100000"
    "limit=50&offset=990000|limit=50&offset=990000"
    "limit=50&sort=metric:acc&offset=100000|limit=50&sort=metric%3Aacc&offset=100000"
)
args=()
for r in "${requests[@]}"; do
    name="${r%%|*}" query="${r#*|}"
    echo "repro ui over $N runs, /api/runs?$name: $(server_ms "$url/api/runs?$query") (curl time_total)"
    args+=(-n "GET /api/runs?$name ($N runs)" "curl -sf -o /dev/null $url/api/runs?$query")
done
# The Datasets and Images pages' requests (one row a version / a reference and digest).
for page in /api/datasets /api/images; do
    echo "repro ui over $N runs, $page: $(server_ms "$url$page") (curl time_total)"
    args+=(-n "GET $page ($N runs)" "curl -sf -o /dev/null $url$page")
done
hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-markdown "$dir/ui-$N.md" "${args[@]}"
[ "${PEER:-yes}" = no ] && { cat "$dir/ui-$N.md"; exit 0; }

# The runs page in headless Chromium (selenium venv): from navigation to the table of 50 runs.
sel="${REPRO_TEST_SELENIUM_VENV:-$PWD/target/py-selenium}"
if [ -x "$sel/bin/python" ] && [ -x /usr/bin/chromedriver ]; then
    "$sel/bin/python" - "$url" "$RUNS" <<'PY'
import statistics, sys, tempfile, time
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
base, runs = sys.argv[1], int(sys.argv[2])
o = webdriver.ChromeOptions()
for f in ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--user-data-dir=" + tempfile.mkdtemp()]:
    o.add_argument(f)
o.binary_location = "/usr/bin/chromium"
d = webdriver.Chrome(options=o, service=Service("/usr/bin/chromedriver"))
for view in ["/?sort=metric:acc", "/"]:
    times = []
    for i in range(min(runs, 10) + 1):
        d.get("about:blank")
        t = time.perf_counter()
        d.get(base + view)
        while len(d.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")) < 50:
            time.sleep(0.005)
        if i:
            times.append((time.perf_counter() - t) * 1000)
    print(f"runs page {view} in headless Chromium, navigation to 50 rows: mean {statistics.mean(times):.0f} ms, max {max(times):.0f} ms over {len(times)}")
d.quit()
PY
fi

small=$(fill "$PEER_N")
serve "$small"; url_small=$served
q_small="$url_small/api/runs?limit=100&sort=metric:acc"
curl -sf "$q_small" > /dev/null
# The MLflow store of the same runs (metrics_peer.py makes it, and times the Python client too).
(cd "$dir" && CLIENT_N="${CLIENT_N:-200}" "$venv/bin/python" "$OLDPWD/benches/metrics_peer.py" "$small" "mlflow-$PEER_N" 3 >&2)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid "$venv/bin/mlflow" server \
    --backend-store-uri "sqlite:///$dir/mlflow-$PEER_N/mlflow.db" \
    --artifacts-destination "$dir/mlflow-$PEER_N/artifacts" --host 127.0.0.1 --port "$port" \
    --workers 1 > "$dir/mlflow-server.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$port/health" > /dev/null && break; sleep 0.5; done
exp=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT experiment_id FROM experiments WHERE name='repro-bench'\").fetchone()[0])" "$dir/mlflow-$PEER_N/mlflow.db")
echo "{\"experiment_ids\":[\"$exp\"],\"order_by\":[\"metrics.acc DESC\"],\"max_results\":100}" > "$dir/search.json"
body="@$dir/search.json"
search="http://127.0.0.1:$port/api/2.0/mlflow/runs/search"
curl -sf -X POST -H 'Content-Type: application/json' -d "$body" "$search" > "$dir/mlflow-search.json"
python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['runs']; print('mlflow returned', len(r), 'runs; top:', r[0]['info']['run_name'])" "$dir/mlflow-search.json"
echo "repro top: $(curl -sf "$url_small/api/runs?limit=1&sort=metric:acc" | python3 -c 'import json,sys; print(json.load(sys.stdin)["runs"][0]["id"])')"
echo "repro ui over $PEER_N runs, limit=100 sort=metric:acc: $(server_ms "$q_small")"
echo "mlflow server over $PEER_N runs, runs/search max_results=100 metrics.acc DESC: $(server_ms "$search" -X POST -H 'Content-Type: application/json' -d "$body")"
hyperfine -N --warmup 3 --runs "$RUNS" --export-markdown "$dir/peer-$PEER_N.md" \
    -n "repro ui: GET /api/runs?limit=100&sort=metric:acc ($PEER_N runs)" "curl -sf -o /dev/null $q_small" \
    -n "mlflow server: POST runs/search max_results=100 metrics.acc DESC ($PEER_N runs)" \
    "curl -sf -o /dev/null -X POST -H Content-Type:application/json -d $body $search"
cat "$dir/ui-$N.md" "$dir/peer-$PEER_N.md"
