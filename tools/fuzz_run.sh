#!/bin/sh
# Runs one libFuzzer harness for SECONDS from its committed corpus; exits non-zero on any crash,
# leak, UBSan report, timeout or out-of-memory (the input that caused it is left in WORK/).
# Usage: tools/fuzz_run.sh HARNESS CORPUS WORK SECONDS [libFuzzer option ...]
# New inputs go to WORK/corpus, never into the committed CORPUS (tools/fuzz.sh; docs/fuzzing.md).
set -eu
bin=$1 corpus=$2 work=$3 seconds=$4
shift 4
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$work/corpus"
# Open MPI and HDF5 keep some memory until exit: the suppressions name those libraries only.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=0}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/tests/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# The limits are the rules every parser must keep: an input of a few KB may not take 10 s or
# allocate 2 GB. -use_value_profile helps the fuzzer past compared numbers and strings.
# A dictionary of the format's keywords, when the harness has one (tests/fuzz/<harness>.dict).
dict=$root/tests/fuzz/$(basename "$bin").dict
[ -f "$dict" ] && set -- -dict="$dict" "$@"
exec "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -malloc_limit_mb=2048 \
    -use_value_profile=1 -print_final_stats=1 -artifact_prefix="$work/" "$@" "$work/corpus" "$corpus"
