#!/usr/bin/env bash
# Sweep dispatch overhead (issue 25): `repro sweep` over a grid of N values of a trivial command
# (`true {i}`, host runs), side by side in one hyperfine run with the command alone N times (a
# shell loop) and with the bash loop of `repro run` a sweep replaces; `--jobs 2` too (each
# combination in its own `repro sweep --sweep-member` process). Goal: the sweep's cost per
# job over the command alone < 15 ms.
#   benches/sweep.sh            # N=20 jobs a sweep, RUNS=10 hyperfine runs
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q --bin repro
REPRO="${CARGO_TARGET_DIR:-$PWD/target}/release/repro"
n="${N:-20}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
repo="$work/repo"
mkdir -p "$repo"
git -C "$repo" init -q -b main
echo "print('x')" > "$repo/train.py"
git -C "$repo" add . && git -C "$repo" -c user.name=b -c user.email=b@b commit -q -m init
cd "$repo"
values="$(seq -s, 1 "$n")"
export REPRO_DB="$work/repro.db"
"$REPRO" run -q --host -- true # create the database outside the timing
hyperfine --warmup 2 --runs "${RUNS:-10}" -N --export-json "$work/sweep.json" \
    --command-name "true, $n times (the command alone)" "sh -c 'for i in \$(seq $n); do true \$i; done'" \
    --command-name "repro sweep, $n jobs" "$REPRO sweep -q --host --grid i=$values -- true {i}" \
    --command-name "repro sweep --jobs 2, $n jobs (a repro process each)" "$REPRO sweep -q --jobs 2 --host --grid i=$values -- true {i}" \
    --command-name "bash loop of repro run, $n jobs (the peer)" \
    "sh -c 'for i in \$(seq $n); do $REPRO run -q --host --param i=\$i -- true \$i || exit 1; done'"
python3 - "$work/sweep.json" "$n" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))["results"]
n = int(sys.argv[2])
print("| command | median [ms] | mean ± σ [ms] | per job over the command alone [ms] |")
print("|---|---:|---:|---:|")
base = res[0]["median"]
for r in res:
    print(f"| {r['command']} | {r['median']*1e3:.1f} | {r['mean']*1e3:.1f} ± {r['stddev']*1e3:.1f} | {(r['median']-base)*1e3/n:+.2f} |")
PY
