#!/bin/sh
# The ARM NEON kernels on an x86-64 machine: cross-compiles kernel_bits.c with the real
# src/model/kernels_neon.c (and the generic kernels, matmul.c, kernels.c, detmath.c, threads.c) for AArch64,
# runs it under qemu user-mode emulation, and checks that it passes there and here and that both
# machines' reference results have the same digest.
#
# Usage: run_qemu.sh SOURCE_DIR HOST_KERNEL_BITS WORK_DIR ARM64_SYSROOT
#   HOST_KERNEL_BITS: kernel_bits built for this machine;  WORK_DIR: where the AArch64 binary goes;
#   ARM64_SYSROOT: Debian's arm64 libsleef3 and libsleef-dev unpacked (tools/arm64_sleef.sh).
# Exit status 77 (skipped) when the cross compiler, qemu or the arm64 SLEEF is missing.
set -eu
src=$1 host_bin=$2 work=$3 sysroot=$4
sleef_inc=$sysroot/usr/include/aarch64-linux-gnu
sleef_lib=$sysroot/usr/lib/aarch64-linux-gnu

echo "== $host_bin (this machine)"
host_out=$("$host_bin") || { echo "$host_out"; echo "kernel_bits failed on this machine"; exit 1; }
echo "$host_out"

skip() {
    echo "SKIP: $*; tools/deps.sh installs it"
    exit 77
}
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || skip "no AArch64 cross compiler (Debian gcc-aarch64-linux-gnu)"
command -v qemu-aarch64 >/dev/null 2>&1 || skip "no qemu-aarch64 (Debian qemu-user)"
[ -d /usr/aarch64-linux-gnu/lib ] || skip "no AArch64 C library (Debian libc6-dev-arm64-cross)"
[ -f "$sleef_inc/sleef.h" ] && [ -e "$sleef_lib/libsleef.so" ] ||
    skip "no arm64 SLEEF in $sysroot (tools/arm64_sleef.sh)"

mkdir -p "$work"
bin=$work/kernel_bits
# The project's flags (CMakeLists.txt): C11, warnings as errors, no contraction of a*b+c. SLEEF's
# header is a system header, as it is on an arm64 Debian machine.
aarch64-linux-gnu-gcc -O2 -std=c11 -Wall -Wextra -Werror -ffp-contract=off \
    -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -I"$src/include" -isystem "$sleef_inc" \
    "$src/tests/neon/kernel_bits.c" "$src/src/model/kernels_neon.c" "$src/src/model/kernels_generic.c" \
    "$src/src/model/kernels.c" "$src/src/model/matmul.c" "$src/src/core/detmath.c" \
    "$src/src/core/alloc.c" "$src/src/core/error.c" "$src/src/core/threads.c" -pthread \
    -L"$sleef_lib" -Wl,-rpath,"$sleef_lib" -lsleef -lm -o "$bin"

echo "== $bin (AArch64, under qemu-aarch64)"
arm_out=$(qemu-aarch64 -L /usr/aarch64-linux-gnu "$bin") || {
    echo "$arm_out"
    echo "kernel_bits failed on AArch64"
    exit 1
}
echo "$arm_out"
echo "$arm_out" | grep -q "^  neon " || { echo "the AArch64 run did not check the neon kernels"; exit 1; }
host_digest=$(echo "$host_out" | sed -n 's/^digest //p')
arm_digest=$(echo "$arm_out" | sed -n 's/^digest //p')
if [ -z "$host_digest" ] || [ "$host_digest" != "$arm_digest" ]; then
    echo "the reference results differ between this machine ($host_digest) and AArch64 ($arm_digest)"
    exit 1
fi
echo "same digest on both: the fma chains and det_* values are the same bits on x86-64 and AArch64"
