#!/usr/bin/env bash
# System metrics (issue 26 item 4): what sampling costs, side by side with sampling off.
#   1. Wall time of `repro run --host` with --sys-metrics-interval 0s (off) vs 1s vs 100ms, for a
#      job that ends at once (`true`: the sampler's start, final sample and stop) and for a
#      job of SHORT seconds (`sleep`), with hyperfine.
#   2. The sampler's own CPU: the wrapper's user+system time (wait4 rusage of `repro run`,
#      which includes its `sleep` child, ~1 ms) around a LONG-second `sleep` job at 0s, 10s
#      (the default), 1s and 100ms, REPS of each started at once; the difference to 0s divided by
#      the job's length is the share of one core the sampling costs (goal: < 1 %).
#   benches/sysmetrics.sh                     # SHORT=2 LONG=20 REPS=3 RUNS=30
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
REPRO="${CARGO_TARGET_DIR:-$PWD/target}/release/repro"
SHORT="${SHORT:-2}" LONG="${LONG:-20}" REPS="${REPS:-3}" RUNS="${RUNS:-30}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
echo "processes on this machine: $(ls -d /proc/[0-9]* | wc -l), cores: $(nproc)" >&2

run() { echo "env REPRO_DB=$work/$1.db $REPRO run -q --host --sys-metrics-interval $1 -- ${*:2}"; }
for job in true "sleep $SHORT"; do
    args=()
    for i in 0s 1s 100ms; do args+=(--command-name "interval $i: $job" "$(run "$i" "$job")"); done
    hyperfine --warmup 3 --runs "$([ "$job" = true ] && echo 100 || echo "$RUNS")" -N \
        --export-json "$work/wall.json" "${args[@]}" >&2
    python3 - "$work/wall.json" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))["results"]
base = res[0]["median"]
print("| command | median [ms] | mean ± σ [ms] | vs 0s (median) |")
print("|---|---:|---:|---:|")
for r in res:
    print(f"| {r['command']} | {r['median']*1e3:.2f} | {r['mean']*1e3:.2f} ± {r['stddev']*1e3:.2f} | {(r['median']-base)*1e3:+.2f} ms |")
PY
done

python3 - "$REPRO" "$work" "$LONG" "$REPS" <<'PY'
import os, subprocess, sys, statistics
repro, work, secs, reps = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
intervals = ["0s", "10s", "1s", "100ms"]
procs = {}
for i in intervals:
    for r in range(reps):
        env = dict(os.environ, REPRO_DB=f"{work}/cpu-{i}-{r}.db")
        p = subprocess.Popen([repro, "run", "-q", "--host", "--sys-metrics-interval", i, "--",
                              "sleep", str(secs)], env=env)
        procs[p.pid] = i
cpu = {i: [] for i in intervals}
while procs:
    pid, status, ru = os.wait4(-1, 0)
    if pid in procs:
        assert os.waitstatus_to_exitcode(status) == 0
        cpu[procs.pop(pid)].append(ru.ru_utime + ru.ru_stime)
base = statistics.median(cpu["0s"])
print(f"\n| interval | wrapper CPU around a {secs:.0f} s sleep (median of {reps}) [ms] | sampling's CPU [ms] | share of one core |")
print("|---|---:|---:|---:|")
for i in intervals:
    m = statistics.median(cpu[i])
    extra = m - base
    print(f"| {i} | {m*1e3:.1f} | {extra*1e3:+.1f} | {max(extra, 0)/secs*100:.3f} % |")
PY
