#!/bin/busybox sh
# /init of the initramfs that tests/vm/test_systemd_guest.py boots: loads
# the two drivers the cloud kernel has as modules (the root disk's and the
# hardware RNG's), writes the first result line (the host retries a boot
# that never wrote it: that is the known early failure of 6.12 under TCG),
# mounts the Debian root from /dev/vda, puts the test's payload into it and
# hands over to systemd. The root's writes go to qemu's snapshot overlay.
/bin/busybox mkdir -p /proc /sys /dev /newroot
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

fail() {
    echo "init: $*" >/dev/console
    echo "INIT_ERROR=$*" >"$port"
    poweroff -f
}

port=
for p in /sys/class/virtio-ports/*; do
    [ "$(cat "$p/name")" = rr.results ] && port=/dev/${p##*/}
done
[ -n "$port" ] || { echo "init: no virtio port named rr.results" >/dev/console; poweroff -f; }
echo "INIT=1" >"$port"

insmod /modules/virtio_blk.ko || fail "insmod virtio_blk.ko"
insmod /modules/virtio-rng.ko || fail "insmod virtio-rng.ko"
for _ in $(seq 50); do
    [ -b /dev/vda ] && break
    sleep 0.2
done
mount -t ext4 /dev/vda /newroot || fail "mount /dev/vda"
mkdir -p /newroot/var/lib/rr-test
cp -a /payload/. /newroot/var/lib/rr-test/ || fail "copying the payload"

umount /sys /proc
umount /dev
exec switch_root /newroot /sbin/init
