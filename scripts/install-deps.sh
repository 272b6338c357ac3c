#!/usr/bin/env bash
# Installs what the test suite and benchmarks use: Debian packages (.ci/install.sh; apt runs only
# when something is missing), PyPI's kubernetes-validate (Job manifests checked offline), a
# venv with PyPI's in-toto-attestation and securesystemslib (attest statements and envelopes), and
# one with PyPI's oras (artifacts pushed to the registry).
#   bash scripts/install-deps.sh            # everything
#   bash scripts/install-deps.sh --system   # only the Debian packages (what the build and services need)
#   bash scripts/install-deps.sh --python   # only the PyPI tools and venvs (test.sh runs this in the
#                                           # background while cargo compiles)
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-all}"
if [ "$mode" != --python ]; then
    bash .ci/install.sh
    # openssl: the attest tests make Ed25519 keys with `openssl genpkey -algorithm ed25519`.
    if ! command -v openssl >/dev/null 2>&1; then
        echo "== installing openssl" >&2
        apt-get install -y -qq openssl >/dev/null
    fi
fi
if [ "$mode" = --system ]; then
    exit 0
fi

if ! command -v kubernetes-validate >/dev/null 2>&1; then
    echo "== installing kubernetes-validate (PyPI)" >&2
    python3 -m pip install -q kubernetes-validate >/dev/null 2>&1 ||
        python3 -m pip install -q --break-system-packages kubernetes-validate >/dev/null
fi

# PyPI's in-toto-attestation and securesystemslib check `repro attest` statements and envelopes,
# jsonschema checks them against the parameter schema of docs/attest.md. The tests use this venv (tests/it/support/python.rs creates it when missing).
venv="${CARGO_TARGET_DIR:-target}/py-attest"
if ! "$venv/bin/python" -c 'import in_toto_attestation.v1.statement, securesystemslib.dsse, cryptography, jsonschema' >/dev/null 2>&1; then
    echo "== creating $venv (in-toto-attestation, securesystemslib[crypto], jsonschema)" >&2
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check in-toto-attestation 'securesystemslib[crypto]' jsonschema
fi

# PyPI's oras (the ORAS Python client) pulls what `repro attest --push` and `repro outputs push`
# put in the registry, in tests/it/registry_push.rs (which creates this venv when missing).
venv="${CARGO_TARGET_DIR:-target}/py-oras"
if ! "$venv/bin/python" -c 'import oras.client' >/dev/null 2>&1; then
    echo "== creating $venv (oras==0.2.43)" >&2
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check 'oras==0.2.43'
fi

# MLflow tracking server and Python client for the `repro mlflow push` tests and benchmark:
# a venv cached under target/ (~850 MB, ~90 s), reused while it has `mlflow`.
venv="${REPRO_TEST_MLFLOW_VENV:-target/py-mlflow}"
if [ ! -x "$venv/bin/mlflow" ]; then
    echo "== installing mlflow[auth] into $venv (PyPI)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'mlflow[auth]' >/dev/null
fi

# Selenium for the MLflow web UI test (tests/it/mlflow_ui.rs drives Debian's chromium and
# chromedriver from .ci/install.sh with it); the test fails under CI=true when it is missing.
venv="${REPRO_TEST_SELENIUM_VENV:-target/py-selenium}"
if ! "$venv/bin/python" -c 'import selenium' >/dev/null 2>&1; then
    echo "== creating $venv (selenium)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check selenium >/dev/null
fi

# The DVCLive test's venv (tests/it/metrics.rs makes it on first use when this did not).
venv="${CARGO_TARGET_DIR:-target}/tmp/dvclive-venv"
if [ ! -e "$venv/.installed" ]; then
    echo "== creating $venv (dvclive)" >&2
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'dvclive==3.49.1' >/dev/null
    touch "$venv/.installed"
fi
