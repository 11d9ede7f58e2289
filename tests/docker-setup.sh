#!/usr/bin/env bash
# Docker for the tests: installs Debian's docker.io, starts dockerd when none
# runs (and records that, so that tests/run.sh stops it at the end), makes a
# local builder image from this machine's own Rust toolchain (no image can be
# pulled here), and builds the project's image from the real Dockerfile with
# BUILDER_IMAGE pointed at it. Sourced by tests/setup.sh; runs on its own
# too. Exports RR_IMAGE. Idempotent: an existing builder image is reused,
# and the image build uses Docker's layer cache.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

apt_install docker.io iptables

if ! docker info >/dev/null 2>&1; then
    echo "setup: starting dockerd (stopped again when the tests end)"
    setsid dockerd >"$root/target/dockerd.log" 2>&1 < /dev/null &
    echo $! >"$root/target/dockerd.started"
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { tail -20 "$root/target/dockerd.log" >&2; echo "setup: dockerd did not start" >&2; exit 1; }
fi

# The tag names what the image must hold: an older one lacks the arm64 parts.
builder=random-refresher-builder:local-amd64-arm64
if ! docker image inspect "$builder" >/dev/null 2>&1; then
    echo "setup: a local builder image from this machine's Rust toolchain (docker import)"
    sysroot=$(rustc --print sysroot)
    # The host's system (compilers, libc, headers, certificates) and its Rust
    # toolchain under /opt/rust; nothing the build does not need, and no
    # secrets (password hashes, SSH keys, private TLS keys).
    # GNU tar exits 1 when a file changed while it was read (a log, a
    # cache): the image is still whole, so only a status above 1 fails.
    { tar -C / -c --exclude=usr/lib/google-cloud-sdk --exclude=usr/lib/jvm --exclude=usr/lib/llvm-14 \
        --exclude=usr/lib/postgresql --exclude=usr/lib/node_modules --exclude=usr/lib/debug \
        --exclude=etc/docker --exclude=etc/shadow --exclude=etc/shadow- --exclude=etc/gshadow \
        --exclude=etc/gshadow- --exclude=etc/ssh --exclude=etc/ssl/private --exclude=etc/sudoers.d \
        usr/bin usr/sbin usr/lib usr/lib64 usr/include usr/libexec usr/share/ca-certificates \
        usr/aarch64-linux-gnu \
        bin sbin lib lib64 etc \
        --transform "s,^${sysroot#/},opt/rust," --exclude="${sysroot#/}/share" "${sysroot#/}" 2>/dev/null || [ $? -eq 1 ]; } \
        | docker import \
            -c 'ENV PATH=/opt/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            -c 'ENV CARGO_HOME=/usr/local/cargo' \
            - "$builder" >/dev/null
fi

# Builds go through Debian's docker.io client: it drives the engine's
# built-in BuildKit (needed for --platform and BUILDPLATFORM), where newer
# clients insist on the buildx plugin, which no registry here carries.
export RR_DOCKER_BUILD=/usr/bin/docker
export RR_IMAGE=random-refresher:test
echo "setup: docker build $RR_IMAGE"
DOCKER_BUILDKIT=1 "$RR_DOCKER_BUILD" build -q --platform linux/amd64 --build-arg BUILDER_IMAGE="$builder" -t "$RR_IMAGE" "$root" >"$root/target/docker-build.log" 2>&1 \
    || { cat "$root/target/docker-build.log" >&2; echo "setup: docker build failed" >&2; exit 1; }
export RR_BUILDER_IMAGE="$builder"
