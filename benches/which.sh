#!/usr/bin/env bash
# `repro which` (issue 23): one 100 MiB file looked up in a database of 100,000 runs, side by side
# in one hyperfine run with the hash alone (`sha256sum`, `openssl dgst -sha256`) and repro's own
# hashing of the same file (`repro dataset hash --no-cache`: the same process start and hasher,
# no database). Goal: `which` = hash time + < 20 ms.
#   benches/which.sh [WORKDIR]     # RUNS_IN_DB=100000 SIZE_MIB=100 RUNS=10 by default
# The database: examples/fill_db (every run has a file output, hence an output_files row), plus,
# through SQL, a directory output of 5 files per run (500,000 more output_files rows) and a path
# dataset per run out of 200 digests of 1,000 files each (200,000 dataset_files rows). Then one
# real run reads the file in a path dataset and writes it as an output, so `which` finds one
# producer and one reader among them.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q --bin repro --example fill_db
target="${CARGO_TARGET_DIR:-$PWD/target}/release"
REPRO="$target/repro"
work="${1:-$(mktemp -d -p "${TMPDIR:-/var/tmp}")}"
n="${RUNS_IN_DB:-100000}"
size="${SIZE_MIB:-100}"
mkdir -p "$work"
export REPRO_DB="$work/db/repro.db"
if [ ! -e "$REPRO_DB" ]; then
    echo "filling $REPRO_DB with $n runs" >&2
    "$target/examples/fill_db" "$REPRO_DB" "$n" >/dev/null
    sqlite3 "$REPRO_DB" <<'SQL'
BEGIN;
-- A directory output `ckpt` of 5 files for every run.
WITH RECURSIVE k(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM k WHERE x < 4)
INSERT INTO output_files (run_id, pos, rel, sha256, bytes)
    SELECT r.id, 1, CAST('shard-' || k.x || '.bin' AS BLOB), lower(hex(randomblob(32))), 1048576
    FROM runs r, k;
INSERT INTO run_outputs (run_id, pos, path, sha256, bytes, kept)
    SELECT id, 1, 'ckpt', 'sha256:' || lower(hex(randomblob(32))), 5242880, 1 FROM runs;
-- 200 path datasets of 1,000 files; each run reads one of them.
CREATE TEMP TABLE d(no INTEGER PRIMARY KEY, digest TEXT);
WITH RECURSIVE k(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM k WHERE x < 199)
INSERT INTO d SELECT x, 'sha256:' || lower(hex(randomblob(32))) FROM k;
WITH RECURSIVE k(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM k WHERE x < 999)
INSERT INTO dataset_files (digest, rel, sha256, bytes)
    SELECT d.digest, CAST('part-' || k.x || '.parquet' AS BLOB), lower(hex(randomblob(32))), 65536
    FROM d, k;
INSERT INTO run_datasets (run_id, pos, name, kind, uri, version, digest, files, bytes)
    SELECT r.id, 9, 'shards', 'path', 'data/shards', d.digest, d.digest, 1000, 65536000
    FROM runs r JOIN d ON d.no = r.rowid % 200;
COMMIT;
ANALYZE;
SQL
fi
repo="$work/repo"
if [ ! -e "$repo/big.bin" ]; then
    rm -rf "$repo"
    mkdir -p "$repo/data"
    echo "writing a ${size} MiB file in $repo" >&2
    head -c "$((size << 20))" /dev/urandom > "$repo/data/big.bin"
    (cd "$repo" && "$REPRO" run -q --host --dataset data --output big.bin -- cp data/big.bin big.bin)
fi
cd "$repo"
# A small file no run knows: `which` on it is the process, the store and the look-ups alone.
head -c 1000 /dev/urandom > small.bin
echo "database: $(sqlite3 "$REPRO_DB" 'SELECT count(*) FROM runs') runs," \
    "$(sqlite3 "$REPRO_DB" 'SELECT count(*) FROM output_files') output files," \
    "$(sqlite3 "$REPRO_DB" 'SELECT count(*) FROM dataset_files') dataset files" >&2
"$REPRO" which big.bin >&2
# -i: `which` on the unknown small file exits 1 by design.
hyperfine --warmup 2 --runs "${RUNS:-10}" -N -i --export-json "$work/which.json" \
    --command-name "sha256sum (hash alone)" "sha256sum big.bin" \
    --command-name "openssl dgst -sha256 (hash alone)" "openssl dgst -sha256 big.bin" \
    --command-name "repro dataset hash --no-cache (repro's hash)" "$REPRO dataset hash --no-cache big.bin" \
    --command-name "repro which" "$REPRO which big.bin" \
    --command-name "repro dataset hash --no-cache, 1 KB file" "$REPRO dataset hash --no-cache small.bin" \
    --command-name "repro which, 1 KB file (look-ups alone)" "$REPRO which small.bin"
python3 - "$work/which.json" "$size" "$n" <<'PY'
import json, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
print(f"{sys.argv[2]} MiB file, {sys.argv[3]} runs in the database")
print("| command | median [ms] | mean ± σ [ms] | min [ms] |")
print("|---|---:|---:|---:|")
for name, r in res.items():
    print(f"| {name} | {r['median']*1e3:.1f} | {r['mean']*1e3:.1f} ± {r['stddev']*1e3:.1f} | {r['min']*1e3:.1f} |")
which = res["repro which"]
own = res["repro dataset hash --no-cache (repro's hash)"]
for peer in ("sha256sum (hash alone)", "openssl dgst -sha256 (hash alone)"):
    print(f"\nwhich − {peer.split(' (')[0]}: {(which['median'] - res[peer]['median'])*1e3:+.1f} ms (median)", end="")
print(f"\nwhich − repro's own hash: {(which['median'] - own['median'])*1e3:+.1f} ms (median), "
      f"{(which['min'] - own['min'])*1e3:+.1f} ms (min); goal < 20 ms")
small, small_own = res["repro which, 1 KB file (look-ups alone)"], res["repro dataset hash --no-cache, 1 KB file"]
print(f"look-ups alone (1 KB file, which − hash): {(small['median'] - small_own['median'])*1e3:+.1f} ms (median), "
      f"{(small['mean'] - small_own['mean'])*1e3:+.1f} ms (mean)")
PY
