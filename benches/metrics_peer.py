"""MLflow peer of the metric query benchmark (issue 13, benches/metrics.sh).

Loads the `acc` metric of every run of a repro database (filled by examples/fill_db.rs) into a
local SQLite MLflow tracking store (one MLflow run per repro run, named by its repro id, `acc`
with its step): the first CLIENT_N (default: all) through MLflow's own client, any rest as SQL
copies of a client-made run (the client is too slow to make 10,000 under load), then times
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
import uuid

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
exp_id = (
    exp.experiment_id
    if exp is not None
    else client.create_experiment("repro-bench", artifact_location=f"{mlflow_dir}/artifacts")
)
rows = sqlite3.connect(repro_db).execute(
    "SELECT run_id, last, last_step FROM run_metrics WHERE key = 'acc' ORDER BY run_id"
).fetchall()
db = sqlite3.connect(f"{mlflow_dir}/mlflow.db")
have = {
    n
    for (n,) in db.execute("SELECT name FROM runs WHERE experiment_id = ?", (exp_id,))
}
todo = [r for r in rows if r[0] not in have]
t0 = time.time()
# The first CLIENT_N runs through MLflow's client (create_run + log_batch), as a user would.
client_n = int(os.environ.get("CLIENT_N", "100000000"))
made_by_client = []
for i, (run_id, last, step) in enumerate(todo[: max(0, client_n - len(have))]):
    r = client.create_run(exp_id, run_name=run_id)
    value = math.nan if last is None else last
    client.log_batch(r.info.run_id, metrics=[Metric("acc", value, int(t0 * 1000), step or 0)])
    made_by_client.append(run_id)
    if i % 100 == 99:
        print(f"client: {i + 1} runs ({time.time() - t0:.0f} s)", file=sys.stderr)
todo = todo[len(made_by_client):]
if todo:
    # The rest: the client writes a few runs a second on a loaded machine, so each further run is
    # a row-for-row copy (runs, tags, metrics, latest_metrics) of a run the client made, with its
    # own uuid, name and acc value: the tables and indexes search_runs reads are as MLflow writes them.
    (template,) = db.execute(
        "SELECT run_uuid FROM runs WHERE experiment_id = ? LIMIT 1", (exp_id,)
    ).fetchone()
    cols = {
        t: [c for (c,) in db.execute(f"SELECT name FROM pragma_table_info('{t}')")]
        for t in ("runs", "tags", "metrics", "latest_metrics", "params")
    }
    for run_id, last, step in todo:
        new = uuid.uuid4().hex
        for t, cs in cols.items():
            sel = ",".join("?" if c == "run_uuid" else c for c in cs)
            db.execute(
                f"INSERT INTO {t} ({','.join(cs)}) SELECT {sel} FROM {t} WHERE run_uuid = ?",
                (new, template),
            )
        nan = last is None
        for t in ("metrics", "latest_metrics"):
            db.execute(
                f"UPDATE {t} SET value = ?, is_nan = ?, step = ? WHERE run_uuid = ? AND key = 'acc'",
                (0.0 if nan else last, 1 if nan else 0, step or 0, new),
            )
        db.execute("UPDATE runs SET name = ? WHERE run_uuid = ?", (run_id, new))
        db.execute(
            "UPDATE tags SET value = ? WHERE run_uuid = ? AND key = 'mlflow.runName'", (run_id, new)
        )
    db.commit()
    print(f"copied {len(todo)} runs in SQL", file=sys.stderr)
(n,) = db.execute("SELECT count(*) FROM runs WHERE experiment_id = ?", (exp_id,)).fetchone()
print(f"MLflow experiment holds {n} runs ({len(made_by_client) + len(have)} made by the client)")


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
