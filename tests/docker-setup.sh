#!/usr/bin/env bash
# Docker for the tests: installs Debian's docker.io, starts dockerd when none
# runs, makes a local builder image from this machine's own Rust toolchain (no
# image can be pulled here), and builds the project's image from the real
# Dockerfile with BUILDER_IMAGE pointed at it. Sourced by tests/setup.sh;
# exports RR_IMAGE. Idempotent: an existing builder image is reused, and the
# image build uses Docker's layer cache.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
apt_install docker.io iptables

if ! docker info >/dev/null 2>&1; then
    mkdir -p "$root/target"
    setsid dockerd >"$root/target/dockerd.log" 2>&1 < /dev/null &
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { tail -20 "$root/target/dockerd.log"; echo "dockerd did not start" >&2; exit 1; }
fi

builder=random-refresher-builder:local
if ! docker image inspect "$builder" >/dev/null 2>&1; then
    sysroot=$(rustc --print sysroot)
    # The host's system (compilers, libc, headers, certificates) and its Rust
    # toolchain under /opt/rust; nothing the build does not need.
    tar -C / -c --exclude=usr/lib/google-cloud-sdk --exclude=usr/lib/jvm --exclude=usr/lib/llvm-14 \
        --exclude=usr/lib/postgresql --exclude=usr/lib/node_modules --exclude=usr/lib/debug \
        --exclude=etc/docker \
        usr/bin usr/sbin usr/lib usr/lib64 usr/include usr/libexec usr/share/ca-certificates \
        bin sbin lib lib64 etc \
        --transform "s,^${sysroot#/},opt/rust," --exclude="${sysroot#/}/share" "${sysroot#/}" 2>/dev/null \
        | docker import \
            -c 'ENV PATH=/opt/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            -c 'ENV CARGO_HOME=/usr/local/cargo' \
            - "$builder" >/dev/null
fi

export RR_IMAGE=random-refresher:test
docker build -q --build-arg BUILDER_IMAGE="$builder" -t "$RR_IMAGE" "$root" >"$root/target/docker-build.log" 2>&1 \
    || { cat "$root/target/docker-build.log"; exit 1; }
