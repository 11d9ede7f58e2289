#!/usr/bin/env bash
# A minimal Debian bookworm root with systemd as init, as an ext4 image, for
# tests/vm/test_systemd_guest.py: mmdebstrap's `essential` variant (dpkg,
# bash, coreutils: enough to `dpkg -i` the package in the guest) plus
# systemd, systemd-sysv and udev, without docs, man pages or locales. The
# root stays generic: what a test needs (the .deb, its scenario) is put in
# by the test at boot or on a copy, so the image is built once per version
# of this script and kernel, and kept under target/vm/debian-root/. The
# mirror is the machine's own Debian source. Prints the image's path; quiet
# otherwise, unless a step fails.
#
# The root also holds initramfs-tools and the very 6.12 cloud kernel that
# the guests boot (its package, downloaded again through tests/vm-setup.sh's
# own apt configuration: only bookworm-backports has it), so that
# `mkinitramfs` can build a Debian initramfs for that kernel, with the
# package's hook in it. The kernel package's own postinst builds a first
# one here, without busybox (mmdebstrap installs no Recommends): the hook
# must then work with klibc's tools alone, the harder case.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# vm_apt and target/vm/amd64/package; quiet and quick once set up.
source "$here/../vm-setup.sh" >/dev/null

kernel=$(cat "$root/target/vm/amd64/package")
# A new version of this script, its initramfs helper or the kernel makes a
# new image; older ones are removed.
key=$( (cat "${BASH_SOURCE[0]}" "$here/initramfs-first-line.sh"; echo "$kernel") | sha256sum | cut -c1-16)
cache="$root/target/vm/debian-root"
image="$cache/bookworm-$key.ext4"
if [ -f "$image" ]; then
    echo "$image"
    exit 0
fi

# The kernel's .deb, kept: vm-setup.sh deletes what it unpacked.
debs="$root/target/vm/kernel-deb"
kernel_deb=$(ls "$debs/${kernel}_"*_amd64.deb 2>/dev/null | tail -1 || true)
if [ -z "$kernel_deb" ]; then
    rm -rf "$debs"
    mkdir -p "$debs"
    chmod 755 "$debs"
    step "$kernel (download)" bash -c "cd '$debs' && $(declare -f vm_apt); vm='$vm' vm_apt download '$kernel:amd64'"
    kernel_deb=$(ls "$debs/${kernel}_"*_amd64.deb)
fi

apt_install mmdebstrap e2fsprogs
system=/etc/apt/sources.list.d/debian.sources
uris=$(awk '/^URIs:/ {print $2; exit}' "$system")
signed=$(awk '/^Signed-By:/ {print $2; exit}' "$system")
[ -n "$uris" ] && [ -n "$signed" ] || { echo "debian-root: no URIs or Signed-By in $system" >&2; exit 1; }

mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs="$work/root"
# mmdebstrap's root mode chroots as root; the folder must not exist yet.
# The exclusions are for the bootstrap only: the guest's own dpkg keeps
# every file of a package it installs, as a stock Debian does (the unit's
# drop-in ships under /usr/share/doc). The test's first-line script is in
# place before the kernel's postinst builds the first initramfs. The
# hook-dir makes the kernel's .deb visible inside the chroot for apt.
step "a Debian bookworm root with systemd and $kernel (mmdebstrap)" mmdebstrap --quiet --mode=root \
    --variant=essential --include=systemd,systemd-sysv,udev,initramfs-tools,kmod --include="$kernel_deb" \
    --hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --essential-hook="mkdir -p \"\$1\"/etc/initramfs-tools/scripts/init-top && install -m 755 '$here/initramfs-first-line.sh' \"\$1\"/etc/initramfs-tools/scripts/init-top/rr-first-line" \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    --customize-hook='rm "$1"/etc/dpkg/dpkg.cfg.d/99mmdebstrap' \
    bookworm "$rootfs" "deb [signed-by=$signed] $uris bookworm main"
[ -f "$rootfs/boot/initrd.img-$(cat "$root/target/vm/amd64/version")" ] \
    || { echo "debian-root: the kernel's postinst built no initramfs" >&2; exit 1; }

# A machine-id keeps systemd from its first boot, where systemd-firstboot
# would wait on the console for a locale, a time zone and a password (and
# systemd-random-seed would credit no seed file).
echo 0123456789abcdef0123456789abcdef >"$rootfs/etc/machine-id"
echo rr-guest >"$rootfs/etc/hostname"

# The image's size: what the root holds, plus room for the package, a
# second initramfs, the journal and dpkg's database.
used=$(du -sm "$rootfs" | cut -f1)
step "the ext4 image of the root (mkfs.ext4 -d)" \
    mkfs.ext4 -q -F -b 4096 -L rr-root -d "$rootfs" "$work/root.ext4" "$((used + 192))M"
rm -f "$cache"/bookworm-*.ext4
mv "$work/root.ext4" "$image"
echo "$image"
