#!/bin/sh
# Installs what is missing, builds, and runs the demo on the embedded model.
set -eu
cd "$(dirname "$0")/.."
tools/deps.sh
tools/build.sh build
build/patchsweep forward --model tests/fixtures/models/gpt2-tiny --tokens 5,17,3,9,60,2,17,3
