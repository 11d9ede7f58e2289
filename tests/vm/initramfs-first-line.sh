#!/bin/sh
# init-top script of the test image's Debian initramfs (tests/vm/debian-root.sh
# puts it in /etc/initramfs-tools/scripts/init-top): writes the first result
# line, INIT=1, to the virtio port named rr.results, as the busybox /init of
# tests/vm/systemd-init.sh does, so that tests/vm/test_systemd_guest.py can
# tell a boot that died before the initramfs ran (retried) from one that
# failed later. klibc's sh and tools only: the image has no busybox.
PREREQ=""
prereqs() { echo "$PREREQ"; }
case "$1" in
prereqs)
    prereqs
    exit 0
    ;;
esac
for p in /sys/class/virtio-ports/*; do
    [ -r "$p/name" ] && [ "$(cat "$p/name")" = rr.results ] && echo "INIT=1" >"/dev/${p##*/}"
done
exit 0
