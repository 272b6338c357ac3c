#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need (Debian packages for
# the real registry, image tools, container engines, Slurm and shellcheck; PyPI tools and venvs),
# then runs formatting, lints and every test.
#   bash scripts/test.sh                 # what CI runs
#   bash scripts/test.sh -- FILTER       # extra arguments go to `cargo test --lib --test it`
#   REPRO_FUZZ=1 bash scripts/test.sh    # also short fuzz runs first (scripts/fuzz.sh, nightly)
#
# Services (the OCI registry on 127.0.0.1, dockerd, Slurm, MLflow) are started and stopped by the
# tests themselves, so nothing is left running.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh --system

# The PyPI installs (~1 GB, mostly MLflow) download while cargo compiles.
pylog="$(mktemp)"
bash scripts/install-deps.sh --python >"$pylog" 2>&1 &
pypid=$!
trap 'kill "$pypid" 2>/dev/null || true; rm -f "$pylog"' EXIT

echo "== cargo fmt --check" >&2
cargo fmt --check
echo "== cargo clippy" >&2
cargo clippy --all-targets -- -D warnings
if [ "${REPRO_FUZZ:-0}" = 1 ]; then
    echo "== fuzz (short runs)" >&2
    bash scripts/fuzz.sh
fi
echo "== cargo test (build)" >&2
cargo test --lib --test it --no-run
echo "== waiting for the PyPI installs" >&2
if ! wait "$pypid"; then
    cat "$pylog" >&2
    echo "scripts/install-deps.sh --python failed (see above)" >&2
    exit 1
fi
cat "$pylog" >&2

echo "== cargo test" >&2
if [ "$#" -gt 0 ]; then
    [ "$1" = -- ] && shift
    cargo test --lib --test it -- "$@"
    exit
fi
# The signal tests time real container processes: they run alone after the rest, one at a
# time, so a loaded machine (podman pulls in parallel tests) does not skew them.
cargo test --lib --test it -- --skip sigterm --skip ctrl_c --skip a_signal_between
echo "== cargo test (signal tests, one at a time)" >&2
cargo test --test it -- sigterm ctrl_c a_signal_between --test-threads=1
# The wheel for old clusters (manylinux2014): built with maturin + zig, its tag and glibc checked,
# installed into a fresh venv, the demo run through the installed command, the helper's pytest.
echo "== wheel (scripts/wheel.sh --check)" >&2
bash scripts/wheel.sh --check
