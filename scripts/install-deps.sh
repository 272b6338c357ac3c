#!/usr/bin/env bash
# Installs the system packages the test suite and benchmarks use. Idempotent: skips apt when
# every tool is already present.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have docker-registry || need+=(docker-registry)
have skopeo || need+=(skopeo)
have umoci || need+=(umoci)
[ -x /bin/busybox ] || need+=(busybox-static)
have shellcheck || need+=(shellcheck)
have podman || need+=(podman)
have runc || need+=(runc)
have dockerd || need+=(docker.io)
have hyperfine || need+=(hyperfine)
have newuidmap || need+=(uidmap)

if [ "${#need[@]}" -gt 0 ]; then
    echo "== installing: ${need[*]}" >&2
    if [ "$(id -u)" -ne 0 ]; then
        SUDO=sudo
    else
        SUDO=
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! have kubernetes-validate; then
    echo "== installing kubernetes-validate (PyPI)" >&2
    python3 -m pip install -q kubernetes-validate >/dev/null 2>&1 ||
        python3 -m pip install -q --break-system-packages kubernetes-validate >/dev/null
fi
