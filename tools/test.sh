#!/bin/sh
# Installs what is missing, builds, and runs the whole test suite: the release build, then the
# same tests under AddressSanitizer + UndefinedBehaviorSanitizer. This is what CI runs.
set -eu
cd "$(dirname "$0")/.."
tools/deps.sh
tools/build.sh build
tools/build.sh build-asan -DPATCHSWEEP_SANITIZE=ON -DPATCHSWEEP_BENCH=OFF
status=0
echo "== tests (release build)"
ctest --test-dir build --output-on-failure -j 2 || status=1
echo "== tests (ASan + UBSan build)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j 2 || status=1
exit $status
