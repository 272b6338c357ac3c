#!/usr/bin/env bash
# Keeping outputs (issue 23): `repro run --output BIG` with the output kept, against the same run
# with --no-keep-outputs (hash only: what every run did before outputs were kept), `cp` of the same
# file (the peer the goal names), and `openssl dgst -sha256` (the hash alone), side by side in one
# hyperfine run. The object store is emptied before each kept run, so every run copies.
#   benches/outputs.sh [WORKDIR]      # SIZE_MIB=1024 RUNS=5 by default
# WORKDIR must be on the filesystem the database lives on (the copy is a reflink where the
# filesystem shares extents: btrfs/XFS; on ext4 it is copy_file_range).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
REPRO="${CARGO_TARGET_DIR:-$PWD/target}/release/repro"
work="${1:-$(mktemp -d -p "${TMPDIR:-/var/tmp}")}"
mkdir -p "$work"
size="${SIZE_MIB:-1024}"
repo="$work/repo"
rm -rf "$repo" "$work/db" "$work/cp-dst"
mkdir -p "$repo"
git -C "$repo" init -q -b main
echo big.bin > "$repo/.gitignore"
git -C "$repo" add .gitignore
git -C "$repo" -c user.name=b -c user.email=b@b commit -q -m init
echo "writing a ${size} MiB output in $repo" >&2
head -c "$((size << 20))" /dev/urandom > "$repo/big.bin"
cd "$repo"
export REPRO_DB="$work/db/repro.db"
fstype="$(stat -f -c %T "$work")"
# One --prepare per command, in order: cp writes a new file each time, the kept run a new object.
hyperfine --warmup 1 --runs "${RUNS:-5}" -N --export-json "$work/outputs.json" \
    --prepare "rm -f $work/cp-dst" --prepare true --prepare true --prepare "rm -rf $work/db/objects" \
    --command-name "cp (peer)" "cp big.bin $work/cp-dst" \
    --command-name "openssl dgst -sha256 (hash alone)" "openssl dgst -sha256 big.bin" \
    --command-name "repro run --no-keep-outputs (hash only)" "$REPRO run -q --host --no-keep-outputs --output big.bin -- true" \
    --command-name "repro run (kept)" "$REPRO run -q --host --output big.bin -- true"
python3 - "$work/outputs.json" "$size" "$fstype" <<'PY'
import json, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
size, fstype = int(sys.argv[2]), sys.argv[3]
print(f"{size} MiB output, filesystem {fstype}")
print("| command | median [s] | mean ± σ [s] | min [s] |")
print("|---|---:|---:|---:|")
for name, r in res.items():
    print(f"| {name} | {r['median']:.3f} | {r['mean']:.3f} ± {r['stddev']:.3f} | {r['min']:.3f} |")
cp = res["cp (peer)"]["median"]
kept = res["repro run (kept)"]["median"]
hashonly = res["repro run --no-keep-outputs (hash only)"]["median"]
print(f"\nkeeping costs {kept - hashonly:.3f} s over hashing alone = {(kept - hashonly) / cp:.2f}x cp ({cp:.3f} s); "
      f"the whole kept run is {kept / cp:.2f}x cp")
PY
