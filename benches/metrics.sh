#!/usr/bin/env bash
# Metric ingest benchmark (issue 13): parse one REPRO_METRICS JSON-lines file and store its points
# in one run, as the run wrapper does when a run ends (examples/metrics_ingest.rs, release build).
#   (a) 1,000,000 lines of {"step": N, "loss": x}            -> 1,000,000 points, 1 key
#   (b)   250,000 lines of {"step", "ts", 4 metrics}          -> 1,000,000 points, 4 keys
#   (c) end to end: `repro run` whose job writes (a) to $REPRO_METRICS, vs the same run without
# Each case: a fresh database with one real run (`repro run --host -- true`), then the ingest,
# RUNS times; the best and the median are printed (the target: <= 2 s for 1,000,000 points).
#
# Usage: benches/metrics.sh [WORKDIR]     (WORKDIR defaults to a new temp dir)
#   RUNS=5   repetitions per case; (c) needs hyperfine
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-$(mktemp -d "${TMPDIR:-/tmp}/repro-metrics-bench.XXXXXX")}
RUNS=${RUNS:-5}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build --release --bin repro --example metrics_ingest)
BIN=$CARGO_TARGET_DIR/release/repro
INGEST=$CARGO_TARGET_DIR/release/examples/metrics_ingest
mkdir -p "$WORK"

python3 - "$WORK" <<'PY'
import json, math, sys
work = sys.argv[1]
with open(f"{work}/a.jsonl", "w") as f:
    for i in range(1_000_000):
        f.write('{"step": %d, "loss": %r}\n' % (i, 2.0 * math.exp(-i / 2e5) + (i % 7) * 1e-3))
with open(f"{work}/b.jsonl", "w") as f:
    for i in range(250_000):
        f.write(json.dumps({"step": i, "ts": 1.7e9 + i * 0.01, "loss": 1 / (1 + i), "acc": i / 250_000,
                            "lr": 0.1 * 0.99 ** (i // 1000), "grad_norm": (i % 13) / 13}) + "\n")
PY

for case in a b; do
  times=()
  for _ in $(seq "$RUNS"); do
    db=$WORK/$case.db
    rm -f "$db" "$db-wal" "$db-shm"
    REPRO_DB=$db "$BIN" -q run --host -- true
    id=$(REPRO_DB=$db "$BIN" ls --json --limit 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["runs"][0]["id"])')
    line=$("$INGEST" "$db" "$id" "$WORK/$case.jsonl")
    echo "$case: $line"
    times+=("$(sed -E 's/.*total ([0-9.]+)s/\1/' <<<"$line")")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v c="$case" '{t[NR]=$1} END {printf "%s: best %.3f s, median %.3f s over %d runs (%s)\n", c, t[1], t[int((NR+1)/2)], NR, "1,000,000 points"}'
done

# (c) End to end, as a user meets it: `repro run` whose job writes the 1,000,000-line file to
# $REPRO_METRICS, next to the same run whose job writes it elsewhere (no ingest). The difference
# is what the ingest adds to a run.
if command -v hyperfine >/dev/null; then
  db=$WORK/c.db
  rm -f "$db" "$db-wal" "$db-shm"
  REPRO_DB=$db hyperfine -N --warmup 1 --runs "$RUNS" \
    -n 'repro run, job writes 1,000,000 lines to $REPRO_METRICS' \
    "$BIN -q run --host -- sh -c 'cat $WORK/a.jsonl >> \"\$REPRO_METRICS\"'" \
    -n 'repro run, job writes them to /dev/null (no ingest)' \
    "$BIN -q run --host -- sh -c 'cat $WORK/a.jsonl > /dev/null'"
  echo "metric points stored: $(REPRO_DB=$db "$BIN" ls --all --json | python3 -c 'import json,sys; print(sum(m["count"] for r in json.load(sys.stdin)["runs"] for m in (r.get("metrics") or {}).values()))')"
fi
