#!/usr/bin/env bash
# A minimal Debian bookworm root with systemd as init, as an ext4 image, for
# tests/vm/test_systemd_guest.py: mmdebstrap's `essential` variant (dpkg,
# bash, coreutils: enough to `dpkg -i` the package in the guest) plus
# systemd, systemd-sysv and udev, without docs, man pages or locales. The
# root stays generic: what a test needs (the .deb, its scenario) is put in
# by the test's initramfs at boot, so the image is built once per version
# of this script and kept under target/vm/debian-root/. The mirror is the
# machine's own Debian source. Prints the image's path; quiet otherwise,
# unless a step fails.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# A new version of this script makes a new image; older ones are removed.
key=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
cache="$root/target/vm/debian-root"
image="$cache/bookworm-$key.ext4"
if [ -f "$image" ]; then
    echo "$image"
    exit 0
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
# drop-in ships under /usr/share/doc).
step "a Debian bookworm root with systemd (mmdebstrap)" mmdebstrap --quiet --mode=root \
    --variant=essential --include=systemd,systemd-sysv,udev \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    --customize-hook='rm "$1"/etc/dpkg/dpkg.cfg.d/99mmdebstrap' \
    bookworm "$rootfs" "deb [signed-by=$signed] $uris bookworm main"

# A machine-id keeps systemd from its first boot, where systemd-firstboot
# would wait on the console for a locale, a time zone and a password.
echo 0123456789abcdef0123456789abcdef >"$rootfs/etc/machine-id"
echo rr-guest >"$rootfs/etc/hostname"

# The image's size: what the root holds, plus room for the package, the
# journal and dpkg's database (writes go to qemu's -snapshot overlay).
used=$(du -sm "$rootfs" | cut -f1)
step "the ext4 image of the root (mkfs.ext4 -d)" \
    mkfs.ext4 -q -F -b 4096 -L rr-root -d "$rootfs" "$work/root.ext4" "$((used + 128))M"
rm -f "$cache"/bookworm-*.ext4
mv "$work/root.ext4" "$image"
echo "$image"
