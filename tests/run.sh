#!/usr/bin/env bash
# The test command: installs everything the tests need, then runs them all.
# Needs root (the real /dev/hwrng and the kernel ioctls).
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/setup.sh
cargo test --release --locked --quiet "$@"
# The chart: rendered, validated, and started as the kubelet would start it.
RR_BINARY="$PWD/target/release/random-refresher" python3 -m pytest -q -p no:cacheprovider tests/chart
