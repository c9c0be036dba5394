#!/usr/bin/env bash
# Builds the libFuzzer targets of the readers (Tools/fuzz) with AddressSanitizer and runs a
# campaign of SECONDS on each, seeded from Tests/Fixtures. Exits non-zero if any target finds
# a crash, a trap, a leak, an ASan report, a timeout or an out-of-memory; the input that did it
# is kept under the work folder (findings/). See FUZZING.md.
#
#   Tools/fuzz/run.sh [SECONDS-PER-TARGET] [TARGET…]      (default 60 s; all targets)
#
# Environment: DLORAL_FUZZ_WORK  folder for corpora, findings and logs (default: a new temporary
#                                folder, kept when something is found)
#              DLORAL_FUZZ_SCRATCH  SwiftPM scratch folder of the sanitizer build (.build-fuzz)
#              DLORAL_FUZZ_JOBS  fuzz each target in that many processes (libFuzzer's -fork;
#                                default: one process, no fork)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
seconds=${1:-60}
shift || true
all_targets=(safetensors torch-zip pickle onnx dlrt png jpeg)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
scratch=${DLORAL_FUZZ_SCRATCH:-$root/.build-fuzz}
jobs=${DLORAL_FUZZ_JOBS:-}
keep_work=${DLORAL_FUZZ_WORK:+1}
work=${DLORAL_FUZZ_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/dloral-fuzz.XXXXXX")}
mkdir -p "$work"
work=$(cd "$work" && pwd)

# The sanitizer flags apply to every module of the build, hence the separate scratch folder;
# DLORAL_FUZZ=1 declares the fuzz targets in Package.swift. One product at a time: the
# library modules are built once and shared. The sanitizers go in one -sanitize= list (with
# `--sanitize fuzzer --sanitize address`, SwiftPM passes two options in no fixed order and the
# Swift driver keeps only the last one: half the time the Swift code got no coverage).
build=(swift build -c release --scratch-path "$scratch"
    -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=fuzzer-no-link,address)
build_start=$(date +%s)
for t in "${targets[@]}"; do
    DLORAL_FUZZ=1 "${build[@]}" --product "fuzz-$t"
done
bin=$(DLORAL_FUZZ=1 "${build[@]}" --show-bin-path)
echo "fuzz: built ${#targets[*]} target(s) in $(($(date +%s) - build_start)) s"

# Inputs are written to a tmpfs where there is one (Tools/fuzz/FuzzSupport).
if [ -w /dev/shm ]; then inputs=$(mktemp -d /dev/shm/dloral-fuzz-inputs.XXXXXX); else inputs=$work/inputs; mkdir -p "$inputs"; fi
trap 'rm -rf "$inputs"' EXIT

status=0
summary=()
for t in "${targets[@]}"; do
    corpus=$work/corpus/$t
    findings=$work/findings/$t
    mkdir -p "$corpus" "$findings"
    if [ "$t" = dlrt ]; then
        DLORAL_FUZZ_WRITE_SEEDS=$corpus DLORAL_FUZZ_FIXTURES=$root/Tests/Fixtures "$bin/fuzz-dlrt"
        # Seeds the reader refuses would keep every mutation on the error paths.
        if [ -x .build/release/dloral-convert ]; then
            for seed in "$corpus"/seed-*.dlrt; do
                .build/release/dloral-convert inspect --verify-all "$seed" >/dev/null \
                    || { echo "fuzz: the .dlrt seed $seed is refused by the reader"; exit 1; }
            done
        fi
    else
        python3 Tools/fuzz/seeds.py "$t" "$corpus"
    fi
    log=$work/$t.log
    echo "fuzz: $t for $seconds s ($(ls "$corpus" | wc -l) inputs in the corpus)"
    # -timeout: an input taking over 10 s is a hang. -rss_limit_mb/-malloc_limit_mb: 2 GB, the
    # libFuzzer default, made explicit (more memory, or a larger single allocation, is a finding).
    # -detect_leaks=1: LeakSanitizer at exit and on new coverage.
    rc=0
    # SWIFT_BACKTRACE=enable=no: a Swift trap goes straight to libFuzzer's crash handler, which
    # saves the input (Swift's own backtracer would itself trip ASan).
    DLORAL_FUZZ_TMP=$inputs SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:allocator_may_return_null=0 \
        "$bin/fuzz-$t" "$corpus" -dict="Tools/fuzz/dict/$t.dict" -max_total_time="$seconds" \
        -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$findings/" ${jobs:+-fork=$jobs} -ignore_crashes=0 >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    final=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$final")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$final")
    found=$(find "$findings" -type f | wc -l)
    summary+=("$(printf '%-12s %6s s  %10s execs  cov %6s  ft %6s  findings %s' "$t" "$seconds" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$found")")
    if [ "$rc" -ne 0 ] || [ "$found" -ne 0 ]; then
        status=1
        echo "fuzz: $t FOUND A PROBLEM (exit $rc); log: $log; inputs: $findings" >&2
        grep -E 'ERROR|SUMMARY|Fatal error|fatal error|deadly signal|out-of-memory|timeout|leak' "$log" | head -20 >&2 || true
    fi
done
printf '%s\n' "fuzz: target        time       executions  coverage   features" "${summary[@]/#/fuzz: }"
if [ "$status" -ne 0 ]; then
    echo "fuzz: findings kept in $work (reproduce: $bin/fuzz-<target> <input>; FUZZING.md)" >&2
elif [ -z "$keep_work" ]; then
    rm -rf "$work"
fi
exit "$status"
