#!/usr/bin/env bash
# Dataset hashing benchmark (issue 7): repro dataset hash (cold / warm cache / one file touched)
# side by side with openssl, sha256sum, b3sum and DVC, on three generated datasets:
#   (a) 1 GiB in 20,000 files of 50 KiB   (20 directories x 1,000 files)
#   (b) one 2 GiB file
#   (c) 200,000 files of 1 KiB            (200 directories x 1,000 files)
# All timings are with a WARM page cache (hyperfine warm-up runs read everything first); they
# measure hashing, not the disk.
#
# Usage: benches/dataset.sh [WORKDIR]        (WORKDIR defaults to a new temp dir, kept for re-runs)
#   RUNS=5          hyperfine runs per command (slow baselines use fewer)
#   ONLY="a b c"    which datasets
#   DVC=1           also time `dvc add` / `dvc status` (installs DVC from PyPI into WORKDIR/venv)
#   B3SUM=1         `cargo install b3sum` into WORKDIR/cargo if b3sum is not on PATH
#   REPRO_BIN=…     binary to measure (default: target/release/repro, built if missing)
# Results: WORKDIR/results/*.json|md and a summary table on stdout (throughput from the median).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-$(mktemp -d "${TMPDIR:-/tmp}/repro-bench.XXXXXX")}
RUNS=${RUNS:-5}
ONLY=${ONLY:-a b c}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${REPRO_BIN:-$CARGO_TARGET_DIR/release/repro}
if [ ! -x "$BIN" ]; then
  (cd "$ROOT" && cargo build --release --bin repro)
fi
command -v hyperfine >/dev/null || { echo "hyperfine is required" >&2; exit 1; }
mkdir -p "$WORK/results"
export REPRO_DB=$WORK/bench.db
RES=$WORK/results

echo "work dir: $WORK"
echo "binary:   $BIN ($("$BIN" --version))"
echo "cpu:      $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "sha-ni:   $(grep -qw sha_ni /proc/cpuinfo && echo yes || echo no)"
echo "load:     $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min; above $(nproc), other work shares the cores)"

# --- data -----------------------------------------------------------------------------------
gen_files() { # DIR NDIRS FILES_PER_DIR FILE_SIZE
  local dir=$1 nd=$2 nf=$3 sz=$4 i
  [ -e "$dir.complete" ] && return
  rm -rf "$dir"
  for ((i = 0; i < nd; i++)); do
    mkdir -p "$dir/d$i"
    head -c $((nf * sz)) /dev/urandom | split -b "$sz" -a 4 -d - "$dir/d$i/f"
  done
  touch "$dir.complete"
}
DATA=$WORK/data
for d in $ONLY; do
  case $d in
    a) gen_files "$DATA/a" 20 1000 51200 ;;
    b) if [ ! -e "$DATA/b.complete" ]; then
         mkdir -p "$DATA/b"; head -c $((2 << 30)) /dev/urandom > "$DATA/b/big.bin"; touch "$DATA/b.complete"
       fi ;;
    c) gen_files "$DATA/c" 200 1000 1024 ;;
  esac
done
# The hash cache does not trust files changed in the last 2 s (racy-clean rule): let them age.
sleep 3

B3=$(command -v b3sum || true)
if [ -z "$B3" ] && [ "${B3SUM:-0}" = 1 ]; then
  cargo install --root "$WORK/cargo" b3sum >/dev/null 2>&1 && B3=$WORK/cargo/bin/b3sum || true
fi

bench() { # NAME RUNS hyperfine-args...
  local name=$1 runs=$2; shift 2
  hyperfine --style basic --warmup 1 --runs "$runs" --export-json "$RES/$name.json" \
    --export-markdown "$RES/$name.md" "$@"
}

for d in $ONLY; do
  dir=$DATA/$d
  touched=$(find "$dir" -type f -print -quit)
  files="find $dir -type f -print0"
  slow_runs=$(( RUNS < 2 ? RUNS : 2 ))
  "$BIN" dataset hash "$dir" >/dev/null # fill the cache for the warm runs
  args=(
    -n "repro cold (--no-cache)" "$BIN dataset hash --no-cache $dir"
    -n "repro warm (cache)" "$BIN dataset hash $dir"
    -n "openssl dgst -sha256 (xargs)" "$files | xargs -0 openssl dgst -sha256 >/dev/null"
  )
  [ -n "$B3" ] && args+=(-n "b3sum (xargs)" "$files | xargs -0 $B3 >/dev/null")
  bench "$d-fast" "$RUNS" "${args[@]}"
  # Touching a file makes its cache entry untrusted (ctime changed); only it is re-read.
  bench "$d-touched" "$RUNS" --prepare "touch $touched" \
    -n "repro after touching one file" "$BIN dataset hash $dir"
  bench "$d-sha256sum" "$slow_runs" \
    -n "sha256sum (one process)" "$files | xargs -0 sha256sum >/dev/null" \
    -n "sha256sum (xargs -P2)" "$files | xargs -0 -P2 -n $([ "$d" = c ] && echo 5000 || echo 500) sha256sum >/dev/null"
done

# --- DVC (optional; slow) --------------------------------------------------------------------
if [ "${DVC:-0}" = 1 ]; then
  if [ ! -x "$WORK/venv/bin/dvc" ]; then
    python3 -m venv "$WORK/venv" && "$WORK/venv/bin/pip" -q install dvc >/dev/null
  fi
  DVCBIN=$WORK/venv/bin/dvc
  echo "dvc:      $("$DVCBIN" --version)"
  for d in $ONLY; do
    [ "$d" = b ] && continue
    proj=$WORK/dvc-$d
    rm -rf "$proj"; mkdir -p "$proj"; cp -al "$DATA/$d" "$proj/data" 2>/dev/null || cp -a "$DATA/$d" "$proj/data"
    (cd "$proj" && "$DVCBIN" init -q --no-scm)
    start=$(date +%s.%N)
    (cd "$proj" && timeout 300 "$DVCBIN" add -q data) || echo "dvc add $d: failed or timed out (300 s cap)"
    end=$(date +%s.%N)
    echo "dvc add ($d): $(echo "$end - $start" | bc) s" | tee "$RES/$d-dvc-add.txt"
    (cd "$proj" && bench "$d-dvc-status" 3 -n "dvc status (unchanged)" "timeout 120 $DVCBIN status -q || true")
  done
fi

echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

# --- summary ----------------------------------------------------------------------------------
python3 - "$RES" "$ONLY" <<'EOF'
import json, os, sys
res, only = sys.argv[1], sys.argv[2].split()
sizes = {"a": (20000, 20000 * 51200), "b": (1, 2 << 30), "c": (200000, 200000 * 1024)}
print("\n| dataset | command | median wall s | GB/s | files/s | CPU s (user+sys) |")
print("|---|---|---:|---:|---:|---:|")
for d in only:
    files, size = sizes[d]
    for part in ["fast", "touched", "sha256sum", "dvc-status"]:
        p = os.path.join(res, f"{d}-{part}.json")
        if not os.path.exists(p):
            continue
        for r in json.load(open(p))["results"]:
            m, cpu = r["median"], r["user"] + r["system"]
            rate = f"{files / m:,.0f}" if files > 1 else ""
            print(f"| ({d}) | {r['command']} | {m:.3f} | {size / m / 1e9:.2f} | {rate} | {cpu:.2f} |")
    p = os.path.join(res, f"{d}-dvc-add.txt")
    if os.path.exists(p):
        print(f"| ({d}) | {open(p).read().strip()} | | | |")
EOF
