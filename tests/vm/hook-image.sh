#!/usr/bin/env bash
# hook-image.sh BASE DEB SCENARIO OUT: a copy of the guest root BASE (from
# tests/vm/debian-root.sh) at OUT with the package DEB installed by dpkg in
# a chroot, as an administrator's `dpkg -i` would: its postinst enables
# random-refresher-early.service, and its trigger has initramfs-tools
# rebuild /boot/initrd.img with the package's hook. Built on the host, not
# in the guest, because mkinitramfs under TCG takes minutes where the host
# takes seconds; the chroot runs the guest's own dpkg, initramfs-tools and
# kernel modules, so the initramfs is the one the guest would build. The
# scenario goes in as /var/lib/rr-test/scenario. Prints the initramfs's
# path on the host (OUT.initrd), then what mkinitramfs put in it for the
# hook. Needs root and a loop device.
set -euo pipefail
base=$1 deb=$2 scenario=$3 out=$4
cp --sparse=always "$base" "$out"
mnt=$(mktemp -d)
cleanup() {
    for m in dev sys proc ""; do
        mountpoint -q "$mnt/$m" && umount "$mnt/$m"
    done
    rmdir "$mnt"
}
trap cleanup EXIT
mount -o loop "$out" "$mnt"
mount -t proc proc "$mnt/proc"
mount -t sysfs sys "$mnt/sys"
mount --bind /dev "$mnt/dev"
install -D -m 644 "$deb" "$mnt/var/lib/rr-test/random-refresher.deb"
install -D -m 755 "$scenario" "$mnt/var/lib/rr-test/scenario"
log=$(mktemp)
if ! chroot "$mnt" dpkg -i /var/lib/rr-test/random-refresher.deb >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
fi
grep -q "update-initramfs: Generating /boot/initrd.img" "$log" \
    || { cat "$log" >&2; echo "hook-image: the trigger rebuilt no initramfs" >&2; exit 1; }
rm "$log"
version=$(ls "$mnt/lib/modules")
cp "$mnt/boot/initrd.img-$version" "$out.initrd"
echo "$out.initrd"
chroot "$mnt" lsinitramfs "/boot/initrd.img-$version" | grep -E "random-refresher|hw_random|bin/timeout" || true
