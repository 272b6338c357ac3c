#!/usr/bin/env bash
# The dataset-hash goals of issue 23, round by round: in each of ROUNDS rounds, hyperfine times
# side by side (a) `repro dataset hash --no-cache` and `find | xargs openssl dgst -sha256` over
# 1 GiB in 20,000 files of 50 KiB, and (c) the warm re-version of 200,000 unchanged 1 KiB files.
# Goals: cold (a) >= 2.3x openssl in EVERY round; warm (c) < 0.5 s in every round.
# Warm page cache (hyperfine warms up first): this measures hashing, not the disk.
#
# Usage: benches/dataset_rounds.sh [WORKDIR]   (the data of benches/dataset.sh is reused there)
#   ROUNDS=5   RUNS=5 (hyperfine runs per command and round)   REPRO_BIN=…
# Prints one line per round and a Markdown table; results in WORKDIR/results/round-*.json.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-$(mktemp -d "${TMPDIR:-/tmp}/repro-bench.XXXXXX")}
ROUNDS=${ROUNDS:-5}
RUNS=${RUNS:-5}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${REPRO_BIN:-$CARGO_TARGET_DIR/release/repro}
if [ ! -x "$BIN" ]; then
  (cd "$ROOT" && cargo build --release --bin repro)
fi
command -v hyperfine >/dev/null || { echo "hyperfine is required" >&2; exit 1; }
command -v openssl >/dev/null || { echo "openssl is required" >&2; exit 1; }
RES=$WORK/results
mkdir -p "$RES"
export REPRO_DB=$WORK/bench.db

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
A=$WORK/data/a C=$WORK/data/c
gen_files "$A" 20 1000 51200
gen_files "$C" 200 1000 1024
sleep 3 # the hash cache does not trust files changed in the last 2 s
"$BIN" dataset hash "$C" >/dev/null # fill the cache for the warm re-version

echo "binary: $BIN ($("$BIN" --version)); $(nproc) cores; sha-ni: $(grep -qw sha_ni /proc/cpuinfo && echo yes || echo no)"
echo "openssl speed limit: $(openssl speed -multi "$(nproc)" -evp sha256 -bytes 16384 -seconds 1 2>/dev/null | awk '/^sha256/ {print $NF}') (16 KiB blocks, all cores)"
for ((r = 1; r <= ROUNDS; r++)); do
  load=$(cut -d' ' -f1 /proc/loadavg)
  hyperfine --style none --warmup 1 --runs "$RUNS" --export-json "$RES/round-$r.json" \
    -n "repro cold (a)" "$BIN dataset hash --no-cache $A" \
    -n "openssl (a)" "find $A -type f -print0 | xargs -0 openssl dgst -sha256 >/dev/null" \
    -n "repro warm (c)" "$BIN dataset hash $C" >/dev/null
  python3 - "$RES/round-$r.json" "$r" "$load" <<'EOF'
import json, sys
res = {x["command"]: x["median"] for x in json.load(open(sys.argv[1]))["results"]}
cold, ossl, warm = res["repro cold (a)"], res["openssl (a)"], res["repro warm (c)"]
print(f"| {sys.argv[2]} | {sys.argv[3]} | {cold:.3f} | {20000 * 51200 / cold / 1e9:.2f} | {ossl:.3f} | "
      f"**{ossl / cold:.2f}x** | {warm:.3f} |")
EOF
done | { echo "| round | load before | repro cold (a) s | GB/s | openssl (a) s | ratio | repro warm (c) s |"
         echo "|---:|---:|---:|---:|---:|---:|---:|"; cat; }
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
