#!/usr/bin/env bash
# Real kernels for the VM scenarios (tests/vm/): qemu-system for x86-64 and
# arm64, Debian's 6.12 cloud kernels and busybox-static for both
# architectures, unpacked under target/vm. Downloads go through apt with
# folders of our own (the machine's package lists are not touched) and the
# same sources as the machine's own Debian entry; what is unpacked is kept,
# so a second run downloads nothing. Sourced by tests/setup.sh; runs on its
# own too. Exports RR_VM_DIR.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

apt_install qemu-system-x86 qemu-system-arm cpio xz-utils e2fsprogs ipxe-qemu

vm="$root/target/vm"
export RR_VM_DIR="$vm"
mkdir -p "$vm"

# The suite's own apt configuration: the machine's first Debian source, with
# bookworm and bookworm-backports, for amd64 and arm64.
vm_apt() {
    apt-get -q -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$vm/apt/sources" \
        -o Dir::State::Lists="$vm/apt/lists" -o Dir::Cache="$vm/apt/cache" \
        -o Dir::State::status=/dev/null \
        -o APT::Architecture=amd64 -o APT::Architectures::=amd64 -o APT::Architectures::=arm64 "$@"
}
vm_apt_cache() {
    apt-cache -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$vm/apt/sources" \
        -o Dir::State::Lists="$vm/apt/lists" -o Dir::Cache="$vm/apt/cache" \
        -o Dir::State::status=/dev/null \
        -o APT::Architecture=amd64 -o APT::Architectures::=amd64 -o APT::Architectures::=arm64 "$@"
}

vm_lists() {
    [ -f "$vm/apt/updated" ] && return 0
    local system=/etc/apt/sources.list.d/debian.sources uris signed
    uris=$(awk '/^URIs:/ {print $2; exit}' "$system")
    signed=$(awk '/^Signed-By:/ {print $2; exit}' "$system")
    [ -n "$uris" ] || { echo "setup: no URIs in $system" >&2; exit 1; }
    mkdir -p "$vm/apt/sources" "$vm/apt/lists/partial" "$vm/apt/cache/archives/partial"
    cat >"$vm/apt/sources/vm.sources" <<SOURCES
Types: deb
URIs: $uris
Suites: bookworm bookworm-backports
Components: main
Architectures: amd64 arm64
Signed-By: $signed
SOURCES
    step "the package lists for the VM kernels" vm_apt update
    touch "$vm/apt/updated"
}

# unpack ARCH: the newest 6.12 cloud kernel and busybox-static of ARCH in
# target/vm/ARCH/{vmlinuz, busybox, modules/, config, version}.
unpack() {
    local arch=$1 dir="$vm/$1"
    [ -f "$dir/ready" ] && return 0
    vm_lists
    local kernel
    kernel=$(vm_apt_cache search --names-only "^linux-image-6\.12\..*-cloud-$arch-unsigned\$" \
        | awk '{print $1}' | sort -V | tail -1)
    [ -n "$kernel" ] || { echo "setup: no 6.12 cloud kernel for $arch in bookworm-backports" >&2; exit 1; }
    echo "setup: $kernel and busybox-static:$arch (unpacked to target/vm/$arch)"
    local work
    work=$(mktemp -d)
    chmod 755 "$work"
    step "$kernel (download)" bash -c "cd '$work' && $(declare -f vm_apt); vm='$vm' vm_apt download '$kernel:$arch' 'busybox-static:$arch'"
    rm -rf "$dir"
    mkdir -p "$dir/x"
    for deb in "$work"/*.deb; do
        step "$(basename "$deb") (unpack)" dpkg-deb -x "$deb" "$dir/x"
    done
    local version
    version=$(ls "$dir/x/lib/modules")
    mv "$dir/x/boot/vmlinuz-$version" "$dir/vmlinuz"
    mv "$dir/x/boot/config-$version" "$dir/config"
    mv "$dir/x/bin/busybox" "$dir/busybox"
    mkdir -p "$dir/modules"
    # busybox insmod takes plain .ko files.
    for m in drivers/char/hw_random/virtio-rng.ko drivers/block/virtio_blk.ko; do
        xz -dc "$dir/x/lib/modules/$version/kernel/$m.xz" >"$dir/modules/$(basename "$m")"
    done
    echo "$version" >"$dir/version"
    echo "$kernel" >"$dir/package"
    rm -rf "$dir/x" "$work"
    touch "$dir/ready"
}
unpack amd64
unpack arm64
