#!/usr/bin/env bash
# Builds the Linux wheel of repro (distribution `repro-runs`: the `repro` command and the `repro`
# Python helper) for old clusters: manylinux2014, i.e. glibc 2.17, linked by maturin through
# PyPI's ziglang (no other Rust target needed, works offline once the build venv exists).
# Checks the wheel's platform tag and the highest GLIBC_ symbol version the binary needs.
#   bash scripts/wheel.sh            # build and check: target/wheels/repro_runs-*.whl
#   bash scripts/wheel.sh --check    # also install it into a fresh venv, run `repro --version`,
#                                    # the demo through the installed command, and the helper's
#                                    # pytest tests (tests/python)
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
bvenv="$target/py-wheel"
if ! "$bvenv/bin/python" -c 'import ziglang' >/dev/null 2>&1 || [ ! -x "$bvenv/bin/maturin" ]; then
    echo "== creating $bvenv (maturin, ziglang, pytest)" >&2
    python3 -m venv "$bvenv"
    "$bvenv/bin/pip" install -q --disable-pip-version-check 'maturin>=1.5,<2' ziglang pytest
fi
out="$target/wheels"
rm -f "$out"/repro_runs-*.whl
echo "== maturin build --release --zig --compatibility manylinux2014" >&2
# maturin finds zig as `python -m ziglang` of the python on PATH.
PATH="$bvenv/bin:$PATH" maturin build --release --zig --compatibility manylinux2014 -o "$out" >&2
wheel="$(ls "$out"/repro_runs-*.whl)"
name="$(basename "$wheel")"
echo "== $name ($(du -h "$wheel" | cut -f1))" >&2
case "$name" in
    *-py3-none-*manylinux_2_17_x86_64*.whl) ;;
    *) echo "wheel tag is not manylinux_2_17_x86_64 (manylinux2014): $name" >&2; exit 1 ;;
esac
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m zipfile -e "$wheel" "$tmp/unpacked"
bin="$(find "$tmp/unpacked" -path '*.data/scripts/repro' -type f)"
[ -n "$bin" ] || { echo "no repro binary in $name" >&2; exit 1; }
[ -f "$tmp/unpacked/repro/__init__.py" ] || { echo "no repro/__init__.py in $name" >&2; exit 1; }
glibc="$(objdump -T "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)"
highest="$(printf '%s\n2.17\n' "$glibc" | sort -V | tail -1)"
if [ "$highest" != 2.17 ]; then
    echo "the binary needs glibc $glibc (> 2.17)" >&2
    exit 1
fi
echo "== glibc needed: $glibc (≤ 2.17)" >&2

if [ "${1:-}" = --check ]; then
    venv="$tmp/venv"
    python3 -m venv "$venv"
    echo "== pip install $name into a fresh venv" >&2
    start=$(date +%s.%N)
    "$venv/bin/pip" install -q --disable-pip-version-check --no-index "$wheel"
    echo "== installed in $(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')") s" >&2
    "$venv/bin/repro" --version
    "$venv/bin/python" -c 'import repro, sys; print("import repro:", repro.__file__); sys.exit(repro.run_id() is not None)'
    echo "== the demo through the installed command" >&2
    REPRO="$venv/bin/repro" REPRO_DB="$tmp/demo/repro.db" bash examples/demo.sh >"$tmp/demo.log" 2>&1 ||
        { cat "$tmp/demo.log" >&2; echo "the demo failed with the installed command" >&2; exit 1; }
    tail -3 "$tmp/demo.log" >&2
    echo "== pytest tests/python (the helper, against the installed wheel)" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check pytest
    PATH="$venv/bin:$PATH" "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/python
fi
