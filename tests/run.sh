#!/usr/bin/env bash
# The test command: installs everything the tests need, then runs them all.
# Needs root (the real /dev/hwrng and the kernel ioctls).
set -euo pipefail
cd "$(dirname "$0")/.."

# Stop what this run started, however it ends.
stop_started() {
    if [ -f target/dockerd.started ]; then
        kill "$(cat target/dockerd.started)" 2>/dev/null || true
        rm -f target/dockerd.started
    fi
}
trap stop_started EXIT

source tests/setup.sh
# The soak runs ten minutes here (a plain `cargo test` soaks for 20 s).
RR_SOAK_SECONDS=${RR_SOAK_SECONDS:-600} cargo test --release --locked --quiet "$@"
# Short fuzz runs of the health tests, the spec parsers and the HTTP request
# handling (longer runs: see the README).
(cd fuzz && for target in health specs http cli; do
    cargo +nightly fuzz run "$target" -- -max_total_time="${RR_FUZZ_SECONDS:-20}" >"../target/fuzz-$target.log" 2>&1 \
        || { tail -40 "../target/fuzz-$target.log"; exit 1; }
done)
echo "fuzz: health, specs, http, cli ran ${RR_FUZZ_SECONDS:-20} s each without a finding"
# The README's tour, as written.
bash tests/readme.sh
# The chart (rendered, validated, and started as the kubelet would start it)
# and the Debian package (built, inspected, its unit verified and scored).
RR_BINARY="$PWD/target/release/random-refresher" "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/chart tests/packaging
