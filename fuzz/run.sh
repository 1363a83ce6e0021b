#!/usr/bin/env bash
# Builds every fuzz target, then runs each in turn for SECONDS (default 60), and prints one
# line per target: runs, coverage (edges), features, corpus size, result. Stops at the first
# crash, naming the input that triggers it (under fuzz/artifacts/<target>/).
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`). Corpora
# grow in fuzz/corpus/<target>/ (not committed); seeds in fuzz/seeds/<target>/ are read too.
# Environment: FUZZ_ARGS adds libFuzzer flags to every run (e.g. "-entropic=0", which
# doubles the throughput of the MLS targets); FUZZ_BUILD_ARGS adds `cargo fuzz build`
# flags (they are passed to `cargo fuzz run` as well, so it does not rebuild).
# On a shared machine: `nice -n 15 fuzz/run.sh`.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-60}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
    echo "usage: fuzz/run.sh [SECONDS] [TARGET...]" >&2
    exit 2
fi
read -r -a build_args <<<"${FUZZ_BUILD_ARGS:-}"
read -r -a fuzz_args <<<"${FUZZ_ARGS:-}"

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

start=$(date +%s)
echo "building ${#targets[@]} fuzz targets"
if [ "$#" -gt 0 ]; then
    for target in "${targets[@]}"; do
        cargo +nightly fuzz build "${build_args[@]}" "$target"
    done
else
    # One cargo invocation for all of them: dependencies are built once, binaries linked
    # in parallel.
    cargo +nightly fuzz build "${build_args[@]}"
fi
echo "built in $(($(date +%s) - start)) s; running each for ${seconds} s"

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
# The value of `name: value` in libFuzzer's final statistics, and of `key: value` in its
# last status line.
stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -n 1; }
status() { grep -E '^#[0-9]+' "$2" | tail -n 1 | sed -n "s/.* $1: \([^ ]*\).*/\1/p"; }

printf '%-20s %10s %8s %8s %10s  %s\n' target runs cov ft corpus result
for target in "${targets[@]}"; do
    corpus="corpus/$target"
    mkdir -p "$corpus"
    dirs=("$corpus")
    if [ -d "seeds/$target" ]; then
        dirs+=("seeds/$target")
    fi
    log="$logs/$target.log"
    result=ok
    if ! cargo +nightly fuzz run "${build_args[@]}" "$target" "${dirs[@]}" -- \
        -max_total_time="$seconds" -timeout=30 -print_final_stats=1 "${fuzz_args[@]}" \
        >"$log" 2>&1; then
        result=FAILED
    fi
    printf '%-20s %10s %8s %8s %10s  %s\n' "$target" \
        "$(stat number_of_executed_units "$log")" "$(status cov "$log")" \
        "$(status ft "$log")" "$(status corp "$log")" "$result"
    if [ "$result" != ok ]; then
        echo
        echo "=== $target failed; the end of its log:"
        tail -n 60 "$log"
        artifact=$(sed -n 's/.*Test unit written to \([^ ]*\).*/\1/p' "$log" | tail -n 1)
        if [ -n "$artifact" ]; then
            echo
            echo "failing input: $artifact"
            echo "reproduce: (cd fuzz && cargo +nightly fuzz run $target $artifact)"
        fi
        exit 1
    fi
done
echo "all ${#targets[@]} targets ran ${seconds} s each without a crash ($(($(date +%s) - start)) s in all)"
