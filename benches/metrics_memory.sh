#!/usr/bin/env bash
# Metric ingest memory (issue 22 item 12): the peak RSS of a whole `repro run` whose job writes a
# 1,000,000-line JSON-lines file to $REPRO_METRICS (case (a) of benches/metrics.sh), next to the
# same run whose job writes the file to /dev/null (no ingest). The difference is the memory the
# ingest adds; the goal is at most 2x the file's size. Peak RSS is GNU time's %M (the largest
# resident set of the process, in KiB); each run uses a fresh database.
#
# Usage: benches/metrics_memory.sh [WORKDIR]   (WORKDIR defaults to a new temp dir)
#   RUNS=5   runs of each command; the median is reported (and every run printed)
#   BIN=PATH a repro binary to measure instead of building this tree's release one
#            (to compare builds side by side, under the same load)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-$(mktemp -d "${TMPDIR:-/tmp}/repro-metrics-mem.XXXXXX")}
RUNS=${RUNS:-5}
TIME=/usr/bin/time
if [ ! -x "$TIME" ]; then
  echo "GNU time is needed at $TIME (apt-get install time)" >&2
  exit 1
fi
if [ -z "${BIN:-}" ]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
  (cd "$ROOT" && cargo build --release --bin repro)
  BIN=$CARGO_TARGET_DIR/release/repro
fi
mkdir -p "$WORK"

if [ ! -s "$WORK/a.jsonl" ]; then
  python3 - "$WORK" <<'PY'
import math, sys
with open(f"{sys.argv[1]}/a.jsonl", "w") as f:
    for i in range(1_000_000):
        f.write('{"step": %d, "loss": %r}\n' % (i, 2.0 * math.exp(-i / 2e5) + (i % 7) * 1e-3))
PY
fi
size=$(stat -c %s "$WORK/a.jsonl")

# One run: prints "<peak RSS KiB> <wall s>"; $1 is the job's shell command.
measure() {
  local db=$WORK/m.db out
  rm -rf "$db" "$db-wal" "$db-shm" "$WORK/metrics"
  out=$(REPRO_DB=$db "$TIME" -f '%M %e' "$BIN" -q run --host -- sh -c "$1" 2>&1 >/dev/null | tail -n 1)
  echo "$out"
}

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

with=() without=() secs=()
for _ in $(seq "$RUNS"); do
  read -r kib s < <(measure "cat '$WORK/a.jsonl' >> \"\$REPRO_METRICS\"")
  with+=("$kib"); secs+=("$s")
  read -r kib _ < <(measure "cat '$WORK/a.jsonl' > /dev/null")
  without+=("$kib")
  echo "run: with ingest ${with[-1]} KiB (${secs[-1]} s), without ${without[-1]} KiB"
done
w=$(printf '%s\n' "${with[@]}" | median)
n=$(printf '%s\n' "${without[@]}" | median)
t=$(printf '%s\n' "${secs[@]}" | median)
awk -v size="$size" -v w="$w" -v n="$n" -v t="$t" -v runs="$RUNS" 'BEGIN {
  extra = (w - n) * 1024
  printf "file: %.1f MB (%d bytes), 1,000,000 points\n", size / 1e6, size
  printf "peak RSS, median of %d: with ingest %.1f MB, without %.1f MB; ingest adds %.1f MB = %.2fx the file (goal <= 2x); wall %.2f s\n",
    runs, w * 1024 / 1e6, n * 1024 / 1e6, extra / 1e6, extra / size, t
}'
