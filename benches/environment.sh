#!/usr/bin/env bash
# Cost of the environment snapshot (issue 26, docs/environment.md): `repro run --host -- true`
# with an active venv of 300 installed distributions against the same with an empty venv (the
# difference is reading the 300 `*.dist-info` headers and `direct_url.json` files), side by side
# with the peer way of listing them, a `pip list` subprocess (what a recorder running
# `pip freeze` pays), with hyperfine.
#   benches/environment.sh          # RUNS=300 by default
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
REPRO="${CARGO_TARGET_DIR:-$PWD/target}/release/repro"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m venv --without-pip "$work/v0"
python3 -m venv --without-pip "$work/v300"
site="$(echo "$work"/v300/lib/python3.*/site-packages)"
# 300 distributions shaped like real ones: a METADATA header and a long description body, a
# RECORD, an INSTALLER, and a direct_url.json for one in ten (editable installs).
python3 - "$site" <<'PY'
import os, sys
site = sys.argv[1]
body = "Long description. " * 150
for i in range(300):
    name, ver = f"pkg_{i:03d}", f"1.{i}.0"
    d = os.path.join(site, f"{name}-{ver}.dist-info")
    os.makedirs(d)
    with open(os.path.join(d, "METADATA"), "w") as f:
        f.write(f"Metadata-Version: 2.1\nName: {name}\nVersion: {ver}\nSummary: s\n"
                f"Home-page: https://example.org\nLicense: MIT\nRequires-Dist: numpy\n\n{body}\n")
    with open(os.path.join(d, "RECORD"), "w") as f:
        f.write(f"{name}/__init__.py,,\n")
    with open(os.path.join(d, "INSTALLER"), "w") as f:
        f.write("pip\n")
    if i % 10 == 0:
        with open(os.path.join(d, "direct_url.json"), "w") as f:
            f.write('{"url": "file:///src/x", "dir_info": {"editable": true}}')
PY
repo="$work/repo"
mkdir -p "$repo"
git -C "$repo" init -q -b main
echo "x" > "$repo/train.py"
git -C "$repo" add . && git -C "$repo" -c user.name=b -c user.email=b@b commit -q -m init
cd "$repo"
hyperfine --warmup 20 --runs "${RUNS:-300}" -N --export-json "$work/environment.json" \
    --command-name "repro run, empty venv" \
    "env VIRTUAL_ENV=$work/v0 REPRO_DB=$work/a.db $REPRO run -q --host -- true" \
    --command-name "repro run, venv of 300 distributions" \
    "env VIRTUAL_ENV=$work/v300 REPRO_DB=$work/b.db $REPRO run -q --host -- true" \
    --command-name "peer: python3 -m pip list --path SITE (300)" \
    "python3 -m pip list --disable-pip-version-check --path $site --format=json"
# Stored once: every run of one venv shares one snapshot row.
for db in a b; do
    python3 - "$work/$db.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
runs = c.execute("SELECT count(*) FROM run_environments").fetchone()[0]
envs = c.execute("SELECT count(*) FROM environments").fetchone()[0]
print(f"{sys.argv[1]}: {runs} runs, {envs} stored snapshot(s)")
PY
done
