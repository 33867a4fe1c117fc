#!/bin/sh
# Unpacks Debian's arm64 SLEEF (libsleef3, libsleef-dev) into a folder, for the test that
# cross-compiles the NEON kernels and runs them under qemu (tests/neon/run_qemu.sh). The packages
# are only downloaded and unpacked: apt reads the arm64 package lists into a scratch folder of its
# own, so this machine's package state (its architectures, lists and installed packages) stays as
# it was. Does nothing if the folder has them already.
# Usage: tools/arm64_sleef.sh [folder]   (default /opt/patchsweep/arm64-sleef, the test's default)
set -eu
dest=${1:-/opt/patchsweep/arm64-sleef}
[ -f "$dest/usr/include/aarch64-linux-gnu/sleef.h" ] && [ -e "$dest/usr/lib/aarch64-linux-gnu/libsleef.so" ] && exit 0
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/lists/partial" "$scratch/cache/archives/partial" "$scratch/debs"
apt_arm64() {
    apt-get -q -o APT::Architecture=arm64 -o APT::Architectures::=arm64 -o Dir::State::status=/dev/null \
        -o Dir::State::Lists="$scratch/lists" -o Dir::Cache="$scratch/cache" -o APT::Sandbox::User=root "$@"
}
apt_arm64 update >/dev/null
(cd "$scratch/debs" && apt_arm64 download libsleef3 libsleef-dev >/dev/null)
mkdir -p "$dest.new"
for deb in "$scratch"/debs/*.deb; do dpkg-deb -x "$deb" "$dest.new"; done
rm -rf "$dest"
mv "$dest.new" "$dest"
echo "arm64 SLEEF unpacked into $dest:" $(cd "$scratch/debs" && ls)
