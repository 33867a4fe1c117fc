#!/bin/sh
# Installs what is missing, builds, and runs the whole test suite: the release build, the same
# tests under AddressSanitizer + UndefinedBehaviorSanitizer, and the Python analysis package's
# tests (pytest, with Debian's interpreter), and a 5 s smoke test of each parser's fuzz harness
# with the committed reproducers (docs/fuzzing.md; the release and ASan builds replay those
# reproducers too, label fuzz). This is what CI runs.
set -eu
cd "$(dirname "$0")/.."
tools/deps.sh
tools/build.sh build
tools/build.sh build-asan -DPATCHSWEEP_SANITIZE=ON -DPATCHSWEEP_BENCH=OFF
status=0
echo "== tests (release build)"
ctest --test-dir build --output-on-failure -j 2 || status=1
echo "== tests (ASan + UBSan build)"
# Open MPI keeps its plugins loaded so leak reports name them; tests/lsan.supp then hides what
# Open MPI, hwloc and HDF5 keep until exit, by library name only.
OMPI_MCA_mca_base_component_disable_dlclose=1 \
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:fast_unwind_on_malloc=0 \
LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j 2 || status=1
echo "== fuzz smoke tests (clang, ASan + UBSan; 5 s per parser) and the reproducers of tests/fuzz/crashes"
# A smoke test, not a campaign: CI's time goes to the tests; tools/fuzz.sh fuzzes for longer.
tools/build.sh build-fuzz -DCMAKE_C_COMPILER=clang-14 -DPATCHSWEEP_FUZZ=ON -DPATCHSWEEP_TESTS=OFF -DPATCHSWEEP_BENCH=OFF \
    -DPATCHSWEEP_FUZZ_SECONDS=5
ctest --test-dir build-fuzz -L fuzz --output-on-failure -j 2 || status=1
echo "== analysis package (pytest)"
PATCHSWEEP_BIN=$PWD/build/patchsweep /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/analysis || status=1
exit $status
