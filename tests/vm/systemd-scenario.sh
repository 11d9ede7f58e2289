#!/bin/bash
# The scenario of tests/vm/test_systemd_guest.py, inside its Debian guest:
# systemd-run-generator starts it (systemd.run= on the kernel command line)
# once the system is up, and the guest powers off when it ends. It installs
# the package with dpkg, starts the unit as shipped, with the kernel-sink
# drop-in, and with the drop-in and an operator's line in
# /etc/default/random-refresher, and writes what it finds as KEY=VALUE
# lines to the virtio port named rr.results; the host judges them. Every
# wait is bounded; diagnostics go to the serial console.
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

t0=$(us)
dpkg -i /var/lib/rr-test/random-refresher.deb
emit DPKG_EXIT $?
emit DPKG_MS $((($(us) - t0) / 1000))
emit DPKG_STATUS "$(dpkg-query -W -f='${Status}' random-refresher)"

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
    sed -n 's/^random_refresher_sink_bytes_total{sink="\([a-z]*\)"} \([0-9]*\).*/\1 \2/p' <<<"$m" |
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
emit DONE 1
