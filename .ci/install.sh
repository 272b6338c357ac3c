#!/usr/bin/env bash
# Installs the tools the integration tests drive for real (Debian 12 / Ubuntu 22.04+).
# Idempotent: apt runs only when something is missing. Run as root or with sudo.
set -euo pipefail

# package:command pairs; the command proves the package (or an equivalent) is there.
wanted=(
  docker-registry:docker-registry # the loopback OCI registry tests push to
  skopeo:skopeo                   # pushes and inspects test images
  umoci:umoci                     # builds test images offline
  busybox-static:busybox          # the static binary inside test images
  podman:podman
  runc:runc                       # podman's runtime in tests (containers.conf sets it)
  uidmap:newuidmap
  fuse-overlayfs:fuse-overlayfs   # only for REPRO_TEST_STORAGE_DRIVER=overlay without kernel overlay
  docker.io:dockerd               # tests start a private dockerd; skipped when absent
  shellcheck:shellcheck           # re-run scripts must be shellcheck-clean
  hyperfine:hyperfine             # benchmarks
  zsh:zsh                         # completion scripts are checked with zsh -n
  fish:fish                       # and fish -n
  git:git
  slurm-wlm:slurmctld             # a one-node Slurm cluster (munge, slurmctld, slurmd) for the Slurm tests
  sshfs:sshfs                     # a real network filesystem (FUSE over SFTP) for the store's filesystem check
  openssh-server:sshd             # the loopback sshd sshfs mounts from
  python3-venv:python3            # the DVCLive test installs dvclive from PyPI into a venv
  ca-certificates:update-ca-certificates
  chromium:chromium               # headless browser of the MLflow web UI test (tests/it/mlflow_ui.rs)
  chromium-driver:chromedriver    # selenium drives it through chromedriver
)

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

missing=()
for pair in "${wanted[@]}"; do
  pkg=${pair%%:*}
  cmd=${pair#*:}
  if installed "$pkg"; then
    continue
  fi
  # Hosted runners ship docker from docker-ce/moby packages, which conflict with docker.io.
  if [[ $pkg == docker.io ]] && command -v dockerd >/dev/null && command -v docker >/dev/null; then
    continue
  fi
  # busybox-static is what we need; a dynamic /bin/busybox does not count.
  if [[ $pkg != busybox-static ]] && [[ $pkg != docker.io ]] && command -v "$cmd" >/dev/null; then
    continue
  fi
  missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
  echo "install.sh: all test tools present"
else
  sudo=()
  if ((EUID != 0)); then
    sudo=(sudo)
  fi
  echo "install.sh: installing ${missing[*]}"
  "${sudo[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi

docker-registry --version
skopeo --version
umoci --version
podman --version
runc --version | head -n 1
if command -v dockerd >/dev/null; then dockerd --version; fi
shellcheck --version | sed -n 2p
hyperfine --version
