#!/bin/sh
# Installs the Debian/Ubuntu packages patchsweep needs that are not installed yet
# (slurm-wlm and munge only serve the Slurm test, which starts a one-node cluster; the AArch64
# cross compiler and qemu-user only the test of the ARM NEON kernels, which also needs Debian's
# arm64 SLEEF unpacked by tools/arm64_sleef.sh; unicode-data and bzip2 the NFC conformance test;
# the tokenizer oracle test also wants node and npm, and skips, saying so, without them; clang-14
# and libclang-rt-14-dev the fuzzing build, tests/fuzz/).
# Usage: tools/deps.sh [extra-package ...]
set -eu
packages="build-essential cmake pkg-config libopenmpi-dev openmpi-bin libhdf5-openmpi-dev
libopenblas-dev libsleef-dev libcjson-dev libonig-dev libcmocka-dev unicode-data bzip2
python3 python3-h5py python3-numpy python3-matplotlib python3-pytest python3-venv python3-setuptools
python3-pip slurm-wlm munge gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user clang-14
libclang-rt-14-dev $*"
missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ -n "$missing" ]; then
    echo "installing:$missing"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# Only the NEON test needs it, and it skips without it: a failure here stops nothing else.
$sudo "$(dirname "$0")/arm64_sleef.sh" || echo "tools/deps.sh: could not unpack the arm64 SLEEF; the NEON test will skip"
