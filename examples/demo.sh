#!/usr/bin/env bash
# The main job on the embedded default: a real wrapped training run of examples/train.py on the
# dataset in examples/data, then its listing, its record, and its re-run script — which it then
# executes, checking that the re-run produces a bit-identical model.
#
# Needs no server and no network: the run uses --host with a digest-pinned image reference, which
# repro records as declared (a container run needs an engine and the image; see README).
# The database is target/demo/repro.db unless REPRO_DB is set.
set -euo pipefail
cd "$(dirname "$0")/.."

# REPRO names an installed command instead (scripts/wheel.sh --check runs the demo with the
# wheel's); else the release build of this checkout.
if [ -z "${REPRO:-}" ]; then
    cargo build --release --quiet
    REPRO="${CARGO_TARGET_DIR:-$PWD/target}/release/repro"
fi
export REPRO_DB="${REPRO_DB:-$PWD/target/demo/repro.db}"
mkdir -p target/demo

# An illustrative digest-pinned reference (no registry is reached in the demo): with --host,
# repro records it as declared and marks it "pinned"; the container run is shown in the README.
IMAGE="docker.io/library/python:3.11-slim@sha256:2ec5a4a5c3e919570f57675471f081d6299668d909feabd8d4803c6c61af666c"

echo "== repro run" >&2
"$REPRO" run --host --offline --image "$IMAGE" \
    --name demo-linear --dataset examples/data --param lr=0.1 --tag demo \
    --output target/demo/model.json \
    -- python3 examples/train.py --data examples/data --lr 0.1 --out target/demo/model.json

echo "== repro ls" >&2
"$REPRO" ls --limit 5

id="$("$REPRO" ls --json --limit 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["runs"][0]["id"])')"
echo "== repro show ${id:0:12}" >&2
"$REPRO" show "${id:0:12}"

echo "== repro script ${id:0:12} > target/demo/rerun.sh" >&2
"$REPRO" script "$id" -o target/demo/rerun.sh
sed -n '1,20p' target/demo/rerun.sh
echo "… ($(wc -l < target/demo/rerun.sh) lines)"

echo "== bash target/demo/rerun.sh target/demo/rerun-checkout   (checkout, verify data, run again)" >&2
rm -rf target/demo/rerun-checkout
bash target/demo/rerun.sh target/demo/rerun-checkout
recorded="$("$REPRO" show "$id" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["outputs"][0]["sha256"])')"
again="$(sha256sum < target/demo/rerun-checkout/target/demo/model.json | cut -c1-64)"
echo "model.json recorded ${recorded:0:16}…, re-run ${again:0:16}…: $([ "$recorded" = "$again" ] && echo identical || echo DIFFERENT)"
[ "$recorded" = "$again" ]
