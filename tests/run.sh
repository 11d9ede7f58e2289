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
# The benches and the fuzz targets are built before anything long runs, so
# an API change that breaks one fails here, in minutes, not at the end.
cargo check --locked --quiet --benches
(cd fuzz && cargo +nightly fuzz build >../target/fuzz-build.log 2>&1) \
    || { tail -40 target/fuzz-build.log; exit 1; }
# The soak runs ten minutes here (a plain `cargo test` soaks for 20 s).
RR_SOAK_SECONDS=${RR_SOAK_SECONDS:-600} cargo test --release --locked --quiet "$@"
# The same binary built for aarch64 (static, cross-compiled) and its unit,
# property and integration tests run under qemu-user with `-cpu max`
# (FEAT_RNG: rndr and rndrrs are read for real). Left out: the daemon's
# long-running, Docker, Prometheus, systemd and unplug tests (they test the
# same code paths through the host's services, and under emulation take
# many times longer); tests of the kernel ioctls skip themselves, since
# qemu-user does not pass RNDADDENTROPY on (tests/common/mod.rs).
cargo build --release --locked --quiet --target aarch64-unknown-linux-gnu --bin random-refresher
file -b target/aarch64-unknown-linux-gnu/release/random-refresher | grep -q "ARM aarch64.*statically linked" \
    || { file target/aarch64-unknown-linux-gnu/release/random-refresher; echo "aarch64: not a static ARM binary" >&2; exit 1; }
cargo test --release --locked --quiet --target aarch64-unknown-linux-gnu --lib \
    --test health_props --test no_panic --test check_vs_rngtest --test check_jobs \
    --test delivery --test usability --test hardware --test estimate
echo "aarch64: static binary built; unit, property and integration tests passed under qemu-aarch64 -cpu max"
# Real kernels in qemu (tests/vm): the quarantine against the kernel's own
# hw_random core, a CRNG that is not ready yet, arm64's ioctls, and the
# Debian package under systemd. The guests run the static binary that ships
# (the image's build), for x86-64 as for aarch64.
CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS='-C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"' \
    cargo build --release --locked --quiet --target x86_64-unknown-linux-gnu --bin random-refresher
# New architectures get the portable path: one with no code of its own.
cargo check --locked --quiet --target riscv64gc-unknown-linux-gnu
echo "riscv64gc: cargo check passed (portable build)"
# One tag for linux/amd64 and linux/arm64 in a local registry, checked.
bash tests/multiarch.sh
# Short fuzz runs of the health tests, the spec parsers and the HTTP request
# handling (longer runs: see the README).
(cd fuzz && for target in health specs http cli; do
    cargo +nightly fuzz run "$target" -- -max_total_time="${RR_FUZZ_SECONDS:-20}" >"../target/fuzz-$target.log" 2>&1 \
        || { tail -40 "../target/fuzz-$target.log"; exit 1; }
done)
echo "fuzz: health, specs, http, cli ran ${RR_FUZZ_SECONDS:-20} s each without a finding"
# The README's tour, as written.
bash tests/readme.sh
# The chart (rendered, validated, and started as the kubelet would start it),
# the Debian package (built, inspected, its unit verified and scored), and
# the real-kernel scenarios in qemu (tests/vm).
RR_BINARY="$PWD/target/release/random-refresher" "$venv/bin/python" -m pytest -q -p no:cacheprovider \
    tests/chart tests/packaging tests/vm
