#!/usr/bin/env bash
# Runs each cargo-fuzz target for a bounded time and prints libFuzzer's final
# statistics for each, then a summary line per target.
#
# Usage: scripts/fuzz.sh [TARGET...]   (default: every target in fuzz/Cargo.toml)
# Environment:
#   FUZZ_SECONDS  seconds to fuzz each target (default 60)
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# New corpus entries go to fuzz/corpus/TARGET, and crashing inputs to
# fuzz/artifacts/TARGET. Files under fuzz/seeds/TARGET (and, for the config
# target, the shipped config/) are read as extra seeds and never changed.
# Exits 1 if any target failed to build or found a crash, and 2 if
# FUZZ_SECONDS is invalid or cargo-fuzz is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "fuzz.sh: FUZZ_SECONDS must be a positive whole number of seconds, got '$seconds'" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: 'cargo +nightly fuzz' is not available; install it with 'cargo install cargo-fuzz'" >&2
    exit 2
fi

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
fi

log_dir="$(mktemp -d)"
summary=()
failed=0
for target in "${targets[@]}"; do
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus"
    seed_dirs=()
    [[ -d "fuzz/seeds/$target" ]] && seed_dirs+=("seeds/$target")
    [[ "$target" == config ]] && seed_dirs+=("../config")

    log="$log_dir/$target.log"
    echo "== $target: fuzzing for ${seconds}s (log: $log)"
    status=0
    # cargo-fuzz runs libFuzzer from the fuzz/ directory, so corpus paths
    # are relative to it.
    (cd fuzz && cargo +nightly fuzz run "$target" "corpus/$target" "${seed_dirs[@]}" -- \
        -max_total_time="$seconds" -print_final_stats=1) >"$log" 2>&1 || status=$?

    # libFuzzer's last "#N DONE" (or last progress) line carries the
    # execution count, coverage and corpus size.
    final="$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)"
    runs="$(grep -E '^stat::number_of_executed_units:' "$log" | tail -n 1 | awk '{print $2}' || true)"
    grep -E '^(#[0-9]+[[:space:]]+DONE|stat::)' "$log" || true
    if [[ $status -ne 0 ]] && grep -qE 'failed to build fuzz script|could not compile' "$log"; then
        failed=1
        echo "!! $target failed to build"
        grep -E '^error' "$log" | head -n 20 || true
        summary+=("$target: BUILD FAILED (see $log)")
    elif [[ $status -ne 0 ]]; then
        failed=1
        artifact="$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -n 1 | sed 's/Test unit written to //' || true)"
        echo "!! $target exited with status $status${artifact:+; crashing input: $artifact}"
        tail -n 40 "$log"
        summary+=("$target: FAILED (status $status) ${artifact:+input $artifact}")
    else
        summary+=("$target: ok, ${runs:-?} executions in ${seconds}s; ${final:-no stats line}")
    fi
done

echo
echo "== summary (FUZZ_SECONDS=$seconds)"
printf '%s\n' "${summary[@]}"
exit "$failed"
