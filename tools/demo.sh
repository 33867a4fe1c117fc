#!/bin/sh
# Installs what is missing, builds, and runs the demo on the embedded model.
set -eu
cd "$(dirname "$0")/.."
tools/deps.sh
tools/build.sh build
# mpirun refuses root unless told; one rank per core.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p results
mpirun -n "$(nproc)" build/patchsweep run jobs/example-tiny.json
