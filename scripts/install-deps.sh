#!/usr/bin/env bash
# Installs what the test suite and benchmarks use: Debian packages (.ci/install.sh; apt runs only
# when something is missing) and PyPI's kubernetes-validate (Job manifests checked offline).
set -euo pipefail
cd "$(dirname "$0")/.."

bash .ci/install.sh

if ! command -v kubernetes-validate >/dev/null 2>&1; then
    echo "== installing kubernetes-validate (PyPI)" >&2
    python3 -m pip install -q kubernetes-validate >/dev/null 2>&1 ||
        python3 -m pip install -q --break-system-packages kubernetes-validate >/dev/null
fi

# MLflow tracking server and Python client for the `repro mlflow push` tests and benchmark:
# a venv cached under target/ (~850 MB, ~90 s), reused while it has `mlflow`.
venv="${REPRO_TEST_MLFLOW_VENV:-target/py-mlflow}"
if [ ! -x "$venv/bin/mlflow" ]; then
    echo "== installing mlflow[auth] into $venv (PyPI)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'mlflow[auth]' >/dev/null
fi
