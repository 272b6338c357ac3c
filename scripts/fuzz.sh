#!/usr/bin/env bash
# Short fuzz runs of every parser that reads user or remote input (references, digests,
# registry manifests, DVC files, import lines, config files), with libFuzzer via cargo-fuzz on nightly.
#   bash scripts/fuzz.sh            # 20 s per target (CI)
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh reference   # a longer run of one target
# A crash leaves its input in fuzz/artifacts/<target>/ and fails the script.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs="${FUZZ_SECONDS:-20}"
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=(reference digest manifest dvc import config)
fi

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzz: SKIPPED: no nightly toolchain (cargo-fuzz needs one); the same entry points run under cargo test as bounded property tests" >&2
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz >/dev/null
fi

cargo +nightly fuzz build -O >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
    echo "== fuzz $t for ${secs}s" >&2
    mkdir -p "$work/$t"
    # New inputs go to the temp dir; the seed corpus in the repository is only read.
    # -rss_limit_mb / -malloc_limit_mb turn an unbounded allocation into a failure.
    if ! cargo +nightly fuzz run -O "$t" "$work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -print_final_stats=1 >"$work/$t.log" 2>&1; then
        tail -40 "$work/$t.log" >&2
        echo "fuzz: $t FAILED (the crashing input is in fuzz/artifacts/$t)" >&2
        exit 1
    fi
    grep -E 'stat::(number_of_executed_runs|peak_rss_mb)|Done [0-9]+ runs' "$work/$t.log" | sed "s/^/  $t /" >&2
done
echo "fuzz: ${#targets[@]} target(s) ran ${secs}s each without a crash" >&2
