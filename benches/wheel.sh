#!/usr/bin/env bash
# Wheel size and install time (issue 28): `pip install --no-index` of repro's manylinux2014 wheel
# into a fresh venv, side by side in one hyperfine run with the same install of a peer that is
# also a Rust binary shipped as a wheel (maturin's own, fetched once with `pip download`).
#   benches/wheel.sh             # builds the wheel first (scripts/wheel.sh), RUNS=10
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
[ -n "$(ls "$target"/wheels/repro_runs-*.whl 2>/dev/null)" ] || bash scripts/wheel.sh
wheel="$(ls "$target"/wheels/repro_runs-*.whl)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: -d "$work/peer" maturin
peer="$(ls "$work"/peer/*.whl)"
python3 -m venv "$work/base"
ls -l "$wheel" "$peer" | awk '{print $5, $9}'
hyperfine --warmup 1 --runs "${RUNS:-10}" \
    --prepare "rm -rf $work/v && cp -a $work/base $work/v" \
    --command-name "pip install repro_runs wheel ($(du -h "$wheel" | cut -f1))" \
    "$work/v/bin/python -m pip install -q --no-index --disable-pip-version-check $wheel" \
    --command-name "pip install maturin wheel, the peer ($(du -h "$peer" | cut -f1))" \
    "$work/v/bin/python -m pip install -q --no-index --disable-pip-version-check $peer"
