#!/bin/bash
# The scenarios of tests/vm/test_systemd_guest.py, inside its Debian guest:
# systemd-run-generator starts this script (systemd.run= on the kernel
# command line) once the system is up, and the guest powers off when it
# ends. `rr.phase=` on the command line says which boot this is:
#   units      installs the package with dpkg, starts the unit as shipped,
#              with the kernel-sink drop-in, and with the drop-in and an
#              operator's line in /etc/default/random-refresher; then
#              readies the next boot: a seed file from the daemon marked
#              creditable, systemd-random-seed allowed to credit it.
#   credited   the boot after: was that seed credited? Then a plain seed
#              file (no mark) and the early unit enabled for the next.
#   plain      the boot after that: the plain seed not credited, the early
#              unit's credit; and what a clean stop of systemd-random-seed
#              does to a seed file the daemon wrote.
#   initramfs  a boot from the Debian initramfs with the package's hook.
# Every boot first reports when the kernel mounted the root and made its
# CRNG ready, what the hook logged, and how the early unit and
# systemd-random-seed fared. Results are KEY=VALUE lines on the virtio port
# named rr.results; the host judges them. Every wait is bounded;
# diagnostics go to the serial console.
set -u
unit=random-refresher.service
dropins=/etc/systemd/system/$unit.d
exec >/dev/console 2>&1

for p in /sys/class/virtio-ports/*; do
    [ "$(cat "$p/name")" = rr.results ] && exec 3>"/dev/${p##*/}"
done
emit() { printf '%s=%s\n' "$1" "$2" >&3; }
us() { echo "${EPOCHREALTIME/./}"; }
show() { systemctl show -P "$1" $unit; }
emit SCENARIO_UPTIME_S "$(cut -d' ' -f1 /proc/uptime)"
phase=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^rr\.phase=//p')
emit PHASE "$phase"

early=random-refresher-early.service
seed=/var/lib/systemd/random-seed
# kernel_s PATTERN: when the kernel logged its first line matching PATTERN
# (seconds since boot, as dmesg prints them).
kernel_s() { dmesg | sed -n "s/^\[ *\([0-9.]*\)\] $1.*/\1/p" | head -1; }
# count UNIT TEXT: how many of UNIT's journal lines of this boot hold TEXT.
count() { journalctl -b -u "$1" -q --no-pager -o cat | grep -cF -- "$2"; }

emit CRNG_READY_S "$(kernel_s 'random: crng init done')"
emit ROOT_MOUNTED_S "$(kernel_s 'EXT4-fs (vda): mounted filesystem')"
emit HOOK_S "$(kernel_s 'random-refresher: initramfs:')"
emit HOOK_LINE "$(dmesg | sed -n 's/^\[ *[0-9.]*\] random-refresher: initramfs: //p' | head -1)"
for u in $early systemd-random-seed.service; do
    emit "$u.STATE" "$(systemctl show -P ActiveState "$u")/$(systemctl show -P Result "$u")"
    emit "$u.START_US" "$(systemctl show -P ExecMainStartTimestampMonotonic "$u")"
    emit "$u.EXIT_US" "$(systemctl show -P ExecMainExitTimestampMonotonic "$u")"
done
# Its wait for udev: when it ran, how it ended.
emit EARLY.WAIT "$(systemctl show -P ExecStartPre $early)"
emit EARLY.MADE_READY "$(count $early "made ready by this daemon's credited delivery number 1")"
emit EARLY.ERRORS "$(journalctl -b -u $early -p err -q --no-pager | wc -l)"
# systemd 252's random-seed.c says why it does not credit at debug level
# only (the test's drop-in raises its level); crediting itself logs nothing.
emit RANDOM_SEED.NOT_CREDITING "$(count systemd-random-seed.service "not crediting")"
emit RANDOM_SEED.NOT_MARKED "$(count systemd-random-seed.service "Seed file is not marked as creditable, not crediting.")"
emit RANDOM_SEED.WAITING "$(count systemd-random-seed.service "Kernel entropy pool is not initialized yet, waiting until it is.")"
journalctl -b -u $early -u systemd-random-seed.service -q --no-pager -o short-monotonic

# seed_file SINK: one tested batch from the hwrng into the seed file.
seed_file() {
    random-refresher once --source /dev/hwrng --sink "$1:$seed"
    emit "SEED_WRITE.$1" $?
    sync
}

case "$phase" in
credited)
    seed_file file
    systemctl enable $early
    emit EARLY.ENABLE_EXIT $?
    emit DONE 1
    exit 0
    ;;
plain)
    # The daemon's seed, marked, then the stop that a clean shutdown runs.
    seed_file creditable-file
    before=$(sha256sum <$seed)
    systemctl stop systemd-random-seed.service
    emit SEED_KEPT_BY_SAVE "$([ "$(sha256sum <$seed)" = "$before" ] && echo 1 || echo 0)"
    emit DONE 1
    exit 0
    ;;
initramfs)
    log=/run/initramfs/random-refresher.log
    emit HOOK_LOG.MADE_READY "$(grep -cF "made ready by this daemon's credited delivery number 1" $log)"
    emit HOOK_LOG.NOT_READY_AT_START "$(grep -cF "the kernel's CRNG is not ready yet" $log)"
    cat $log
    emit DONE 1
    exit 0
    ;;
esac

# The package's trigger would rebuild the initramfs here, which under TCG
# takes minutes (the host's chroot does it in seconds: the `initramfs`
# boot's root is prepared there). Nothing boots from this one.
sed -i 's/^update_initramfs=.*/update_initramfs=no/' /etc/initramfs-tools/update-initramfs.conf
t0=$(us)
dpkg -i /var/lib/rr-test/random-refresher.deb
emit DPKG_EXIT $?
emit DPKG_MS $((($(us) - t0) / 1000))
emit DPKG_STATUS "$(dpkg-query -W -f='${Status}' random-refresher)"
emit EARLY.ENABLED "$(systemctl is-enabled $early)"

# The test's own drop-in: a watchdog period short enough to outlast here,
# and a short interval (both through systemd's ordinary means, so that the
# interval shows whether a drop-in's Environment= takes effect at all).
mkdir -p $dropins
cat >$dropins/test.conf <<'EOF'
[Service]
WatchdogSec=8s
Environment=RANDOM_REFRESHER_INTERVAL=2s
EOF

# The daemon's /metrics, through bash's /dev/tcp (the guest has no HTTP
# client; `random-refresher probe` answers only whether it got a 200).
metrics() {
    exec 4<>/dev/tcp/127.0.0.1/9742 || return
    printf 'GET /metrics HTTP/1.0\r\n\r\n' >&4
    timeout 10 cat <&4
    exec 4<&-
}

# start NAME: (re)starts the unit as configured now and reports on it.
start() {
    local c=$1 t pid m
    systemctl daemon-reload
    t=$(us)
    timeout 90 systemctl restart $unit
    emit "$c.START_EXIT" $?
    # Type=notify: restart returns once READY=1 came (the first tested batch).
    emit "$c.START_MS" $((($(us) - t) / 1000))
    emit "$c.READY_UPTIME_US" "$(show ActiveEnterTimestampMonotonic)"
    emit "$c.STATE" "$(show ActiveState)/$(show SubState)"
    pid=$(show MainPID)
    emit "$c.MAINPID" "$pid"
    # What the process really got, whatever the unit files say.
    while IFS='=' read -r k v; do
        emit "$c.ENV.$k" "$v"
    done < <(tr '\0' '\n' <"/proc/$pid/environ" | grep '^RANDOM_REFRESHER_SINK=\|^RANDOM_REFRESHER_INTERVAL=')
    random-refresher probe --timeout 10s
    emit "$c.HEALTHZ_EXIT" $?
    # What it delivered, per sink, as the daemon counts it.
    m=$(metrics)
    sed -n 's/^random_refresher_sink_bytes_total{sink="\([^"]*\)"} \([0-9]*\).*/\1 \2/p' <<<"$m" |
        while read -r sink n; do emit "$c.SINK_BYTES.$sink" "$n"; done
    emit "$c.KERNEL_RESEEDS" "$(sed -n 's/^random_refresher_kernel_reseeds_total \([0-9]*\).*/\1/p' <<<"$m")"
    emit "$c.EXPOSURE" "$(systemd-analyze security $unit | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')"
}

start shipped
# The watchdog is armed and fed: its timestamp moves on over more than one
# period while the same process stays active.
emit shipped.WATCHDOG_USEC "$(show WatchdogUSec)"
before=$(show WatchdogTimestampMonotonic)
sleep 10
emit shipped.WATCHDOG_ADVANCED_US $(($(show WatchdogTimestampMonotonic) - before))
emit shipped.STATE_LATER "$(show ActiveState)/$(show SubState)"
emit shipped.MAINPID_LATER "$(show MainPID)"
emit shipped.NRESTARTS "$(show NRestarts)"

cp /usr/share/doc/random-refresher/examples/kernel-sink.conf $dropins/
emit kernel_dropin.COPY_EXIT $?
start kernel_dropin

echo RANDOM_REFRESHER_SINK=mix >>/etc/default/random-refresher
start operator_default

emit JOURNAL_ERRORS "$(journalctl -b -u $unit -p err -q --no-pager | wc -l)"
emit JOURNAL_WARNINGS "$(journalctl -b -u $unit -p warning -q --no-pager | wc -l)"

# A stopped loop stops feeding the watchdog: systemd must end the process.
kill -STOP "$(show MainPID)"
for _ in $(seq 60); do
    [ "$(show Result)" = watchdog ] && break
    sleep 0.5
done
emit WATCHDOG_RESULT "$(show Result)"

journalctl -b -u $unit -q --no-pager -o short-monotonic

# The next boot's: systemd 252 credits a seed file only with
# SYSTEMD_RANDOM_SEED_CREDIT set (random-seed.c, may_credit()), which its
# unit does not set; and the early unit would make the CRNG ready before
# systemd-random-seed loads the seed, hiding whether it was credited.
mkdir -p /etc/systemd/system/systemd-random-seed.service.d
printf '[Service]\nEnvironment=SYSTEMD_RANDOM_SEED_CREDIT=1\nEnvironment=SYSTEMD_LOG_LEVEL=debug\n' \
    >/etc/systemd/system/systemd-random-seed.service.d/test.conf
systemctl disable $early
seed_file creditable-file
emit DONE 1
