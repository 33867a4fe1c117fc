#!/bin/sh
# Builds the libFuzzer harnesses of tests/fuzz/ with clang (ASan + UBSan) into build-fuzz/ and
# runs each for SECONDS (default 30) from its committed corpus, one after the other; fails on any
# crash, leak, UBSan report, timeout or out-of-memory. Extra libFuzzer options: FUZZ_ARGS.
# Usage: tools/fuzz.sh [SECONDS] [HARNESS ...]      (docs/fuzzing.md: running them for hours)
set -eu
cd "$(dirname "$0")/.."
seconds=${1:-30}
[ $# -gt 0 ] && shift
harnesses=${*:-fuzz_safetensors fuzz_config fuzz_job fuzz_tokenizer fuzz_results}
tools/deps.sh
CC=${FUZZ_CC:-clang-14} tools/build.sh build-fuzz -DCMAKE_C_COMPILER="${FUZZ_CC:-clang-14}" -DPATCHSWEEP_FUZZ=ON \
    -DPATCHSWEEP_TESTS=OFF -DPATCHSWEEP_BENCH=OFF
mkdir -p build-fuzz/fuzz-work
status=0
for h in $harnesses; do
    echo "== $h: $seconds s"
    # shellcheck disable=SC2086
    tools/fuzz_run.sh "build-fuzz/tests/fuzz/$h" "tests/fuzz/corpus/$h" "build-fuzz/fuzz-work/$h" "$seconds" \
        ${FUZZ_ARGS:-} >"build-fuzz/fuzz-work/$h.log" 2>&1 || {
        status=1
        echo "   FAILED: see build-fuzz/fuzz-work/$h.log"
        grep -E -m 2 "runtime error|ERROR: |^artifact_prefix|Test unit written" "build-fuzz/fuzz-work/$h.log" | sed 's/^/   /'
    }
    grep -E "^stat::(number_of_executed_units|average_exec_per_sec)" "build-fuzz/fuzz-work/$h.log" | awk '!seen[$0]++' | sed 's/^/   /' || true
done
exit $status
