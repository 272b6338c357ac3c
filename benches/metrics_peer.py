"""MLflow peer of the metric query benchmark (issue 13, benches/metrics.sh).

Loads the `acc` metric of every run of a repro database (filled by examples/fill_db.rs) into a
local SQLite MLflow tracking store through MLflow's own client (one MLflow run per repro run,
named by its repro id, `acc` logged with its step), then times
    MlflowClient().search_runs(order_by=["metrics.acc DESC"], max_results=20)
in-process (after a warm-up) and as a fresh `python` process (import + call), like `repro ls`
is timed with its process start.

Usage: python metrics_peer.py REPRO_DB MLFLOW_DIR [REPEAT]
Prints the timings and the first five run names (repro ids) MLflow returns.
"""
import math
import os
import sqlite3
import statistics
import subprocess
import sys
import time

repro_db, mlflow_dir = sys.argv[1], sys.argv[2]
repeat = int(sys.argv[3]) if len(sys.argv) > 3 else 20
os.makedirs(mlflow_dir, exist_ok=True)
uri = f"sqlite:///{mlflow_dir}/mlflow.db"

import mlflow  # noqa: E402
from mlflow.entities import Metric  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

mlflow.set_tracking_uri(uri)
client = MlflowClient()
exp = client.get_experiment_by_name("repro-bench")
if exp is None:
    exp_id = client.create_experiment("repro-bench", artifact_location=f"{mlflow_dir}/artifacts")
    rows = sqlite3.connect(repro_db).execute(
        "SELECT m.run_id, m.last, m.last_step FROM run_metrics AS m WHERE m.key = 'acc' ORDER BY m.run_id"
    ).fetchall()
    t0 = time.time()
    for i, (run_id, last, step) in enumerate(rows):
        r = client.create_run(exp_id, run_name=run_id)
        value = math.nan if last is None else last
        client.log_batch(r.info.run_id, metrics=[Metric("acc", value, int(t0 * 1000), step or 0)])
        if i % 1000 == 999:
            print(f"loaded {i + 1} runs ({time.time() - t0:.0f} s)", file=sys.stderr)
    print(f"loaded {len(rows)} runs into MLflow in {time.time() - t0:.1f} s", file=sys.stderr)
else:
    exp_id = exp.experiment_id


def search():
    return client.search_runs(
        experiment_ids=[exp_id], order_by=["metrics.acc DESC"], max_results=20
    )


search()
times = []
for _ in range(repeat):
    t = time.perf_counter()
    got = search()
    times.append((time.perf_counter() - t) * 1000)
print(
    f"mlflow search_runs in-process: mean {statistics.mean(times):.1f} ms, "
    f"min {min(times):.1f} ms, max {max(times):.1f} ms over {repeat}"
)
print("mlflow top 5:", " ".join(r.info.run_name for r in got[:5]))
code = (
    "import mlflow; from mlflow.tracking import MlflowClient; "
    f"mlflow.set_tracking_uri({uri!r}); "
    f"MlflowClient().search_runs(experiment_ids=[{exp_id!r}], order_by=['metrics.acc DESC'], max_results=20)"
)
procs = []
for _ in range(3):
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    procs.append((time.perf_counter() - t) * 1000)
print(
    f"mlflow search_runs as a new process: mean {statistics.mean(procs):.0f} ms, "
    f"min {min(procs):.0f} ms over 3"
)
