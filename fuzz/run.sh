#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for a bounded time and prints, per target, the
# executions, crashes and hangs. A benchmark, not a test: CI does not run it. See FUZZING.md.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]      (default: 60 s, every target)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); works on the stable toolchain
# (RUSTC_BOOTSTRAP=1, no sanitizer: the code under test is safe Rust). Builds with
# optimisations plus debug assertions and overflow checks (-O -a), so arithmetic that would
# silently wrap in a release build is a finding. Corpora grow in fuzz/corpus/<target> (seeded
# from fuzz/seeds/<target>), findings land in fuzz/artifacts/<target>/, logs in
# fuzz/logs/<target>.log. Exits 1 if any target crashed or hung.
set -euo pipefail

cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
export RUSTC_BOOTSTRAP=1
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"

cargo fuzz build --sanitizer none -O -a --target-dir "$target_dir" >&2
bin="$target_dir/$(rustc -vV | sed -n 's/^host: //p')/release"

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

mkdir -p logs
printf '%-20s %8s %12s %9s %8s %6s\n' target seconds executions exec/s crashes hangs
total_runs=0
failed=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    seeds=()
    [ -d "seeds/$target" ] && seeds=("seeds/$target")
    before=$(find "artifacts/$target" -type f | sort)
    start=$(date +%s)
    # libFuzzer stops at the first crash or hang; its exit status says so, the artifacts say
    # which. -timeout=2: an input that takes over 2 s is a hang.
    "$bin/$target" -max_total_time="$seconds" -timeout=2 -print_final_stats=1 \
        -artifact_prefix="artifacts/$target/" "corpus/$target" "${seeds[@]}" \
        >"logs/$target.log" 2>&1 || true
    elapsed=$(($(date +%s) - start))
    new=$(comm -13 <(echo "$before") <(find "artifacts/$target" -type f | sort) | sed '/^$/d')
    crashes=$(grep -c -E '/(crash|oom)-' <<<"$new" || true)
    hangs=$(grep -c -E '/(timeout|slow-unit)-' <<<"$new" || true)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$target.log" | tail -1)
    runs="${runs:-0}"
    total_runs=$((total_runs + runs))
    rate=$((runs / (elapsed > 0 ? elapsed : 1)))
    printf '%-20s %8s %12s %9s %8s %6s\n' "$target" "$elapsed" "$runs" "$rate" "$crashes" "$hangs"
    if [ "$crashes" -gt 0 ] || [ "$hangs" -gt 0 ]; then
        failed=1
        sed 's/^/    /' <<<"$new"
    fi
done
printf '%-20s %8s %12s\n' total "" "$total_runs"
exit "$failed"
