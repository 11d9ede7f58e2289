#!/usr/bin/env bash
# arm64 without arm64 hardware: the Rust targets, a cross linker with
# glibc's static libraries, qemu-user-static, and the kernel's binfmt_misc
# handler for aarch64 ELF files (so that cargo's test runner, the binaries
# the tests start, and `docker run --platform linux/arm64` all run under
# emulation). Exports the cargo settings for the aarch64 target. Sourced by
# tests/setup.sh; runs on its own too. Idempotent.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# gcc-riscv64-linux-gnu and its libc headers: ring (TLS) compiles C even for
# `cargo check`.
apt_install gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-riscv64-linux-gnu libc6-dev-riscv64-cross \
    qemu-user-static file

for target in aarch64-unknown-linux-gnu riscv64gc-unknown-linux-gnu; do
    if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
        echo "setup: rustup target add $target"
        step "the Rust standard library for $target" rustup target add "$target"
    fi
done

binfmt=/proc/sys/fs/binfmt_misc
if [ ! -e "$binfmt/register" ]; then
    echo "setup: mounting binfmt_misc"
    step "binfmt_misc" mount -t binfmt_misc binfmt_misc "$binfmt"
fi
if [ ! -e "$binfmt/qemu-aarch64" ]; then
    echo "setup: registering qemu-aarch64 with binfmt_misc"
    # The handler line of Debian's qemu-user-static package, as systemd-binfmt
    # would write it (flag F: the interpreter is opened now, so containers
    # without it inside run aarch64 binaries too).
    grep -v '^#' /usr/lib/binfmt.d/qemu-aarch64.conf | head -1 >"$binfmt/register"
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# Static glibc, as the x86-64 image's build: one file, nothing to load.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
# Armv8.5's FEAT_RNG (RNDR, RNDRRS) and the rest: `-cpu max`. QEMU_CPU
# reaches the binaries the tests start through binfmt_misc as well.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64-static -cpu max"
export QEMU_CPU=max
