#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need (Debian packages for
# the real registry, image tools, container engines and shellcheck; a PyPI validator for
# Kubernetes manifests), then runs formatting, lints, every test, and short fuzz runs.
#
# Services (the OCI registry on 127.0.0.1, dockerd) are started and stopped by the tests
# themselves, so nothing is left running.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

echo "== cargo fmt --check" >&2
cargo fmt --check
echo "== cargo clippy" >&2
cargo clippy --all-targets -- -D warnings
echo "== fuzz (short runs)" >&2
bash scripts/fuzz.sh
echo "== cargo test" >&2
if [ "$#" -gt 0 ]; then
    cargo test --lib --test it "$@"
    exit
fi
# The signal tests time real container processes: they run alone after the rest, one at a
# time, so a loaded machine (podman pulls in parallel tests) does not skew them.
cargo test --lib --test it -- --skip sigterm --skip ctrl_c --skip a_signal_between
echo "== cargo test (signal tests, one at a time)" >&2
cargo test --test it -- sigterm ctrl_c a_signal_between --test-threads=1
