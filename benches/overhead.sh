#!/usr/bin/env bash
# Wall-time overhead of wrapping a command: `repro run --host -- true` against bare `true`,
# in a small git repository, with hyperfine (median of many runs).
#   benches/overhead.sh                  # this tree's release build vs bare `true`
#   BASE=3f437b0 benches/overhead.sh     # also a build of commit BASE, side by side in one hyperfine
#                                        # run (built in a temporary worktree), each on its own database
#   BASE_BIN=/path/to/repro benches/overhead.sh   # the same with a binary already built
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
REPRO="${CARGO_TARGET_DIR:-$PWD/target}/release/repro"
work="$(mktemp -d)"
cleanup() {
    if [ -n "${base_tree:-}" ]; then git worktree remove --force "$base_tree" >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
base_bin="${BASE_BIN:-}"
if [ -z "$base_bin" ] && [ -n "${BASE:-}" ]; then
    base_tree="$work/base-tree"
    git worktree add -q --detach "$base_tree" "$BASE"
    echo "building $BASE (release) in $base_tree" >&2
    (cd "$base_tree" && CARGO_TARGET_DIR="$work/base-target" cargo build --release -q)
    base_bin="$work/base-target/release/repro"
fi
repo="$work/repo"
mkdir -p "$repo"
git -C "$repo" init -q -b main
for i in $(seq 1 50); do echo "line $i" > "$repo/file$i.py"; done
git -C "$repo" add . && git -C "$repo" -c user.name=b -c user.email=b@b commit -q -m init
cd "$repo"
cmds=('true' "env REPRO_DB=$work/head.db $REPRO run -q --host -- true")
names=('bare true' "repro run (this tree)")
if [ -n "$base_bin" ]; then
    cmds+=("env REPRO_DB=$work/base.db $base_bin run -q --host -- true")
    names+=("repro run (${BASE:-$base_bin})")
fi
args=()
for i in "${!cmds[@]}"; do args+=(--command-name "${names[$i]}" "${cmds[$i]}"); done
hyperfine --warmup 20 --runs "${RUNS:-300}" -N --export-json "$work/overhead.json" "${args[@]}"
python3 - "$work/overhead.json" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))["results"]
base = res[0]["median"]
print("| command | median [ms] | mean ± σ [ms] | min [ms] | overhead vs bare (median) |")
print("|---|---:|---:|---:|---:|")
for r in res:
    print(f"| {r['command']} | {r['median']*1e3:.2f} | {r['mean']*1e3:.2f} ± {r['stddev']*1e3:.2f} | {r['min']*1e3:.2f} | {(r['median']-base)*1e3:+.2f} ms |")
PY
