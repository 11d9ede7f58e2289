#!/usr/bin/env bash
# What an idle daemon costs: runs `random-refresher run` on the real
# /dev/hwrng with --interval 30s (the default) for DURATION seconds (default
# 300) and reports its CPU share, resident memory and wake-ups (context
# switches) per thread. Needs root for /dev/hwrng and the kernel sink.
#
#   bash benches/idle.sh [DURATION] [extra run options...]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-300}
shift || true
cargo build --release --quiet
bin=target/release/random-refresher
$bin run --source /dev/hwrng --interval 30s --listen-address 127.0.0.1:0 --log-level warn "$@" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
sleep 2 # start-up and the first cycle are not idle time

ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
switches() {
    for t in /proc/$pid/task/*; do
        printf '%s %s\n' "$(cat "$t/comm")" \
            "$(awk '/^(voluntary|nonvoluntary)_ctxt_switches/ {s += $2} END {print s}' "$t/status")"
    done | sort
}
hz=$(getconf CLK_TCK)
t0=$(ticks); s0=$(switches); start=$(date +%s.%N)
rss_max=0
for _ in $(seq "$duration"); do
    sleep 1
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
    (( rss > rss_max )) && rss_max=$rss
done
t1=$(ticks); s1=$(switches); end=$(date +%s.%N)
elapsed=$(echo "$end - $start" | bc -l)
cpu=$(echo "($t1 - $t0) / $hz" | bc -l)
printf 'elapsed %.1f s, CPU %.3f s = %.4f %% of one core\n' "$elapsed" "$cpu" "$(echo "100 * $cpu / $elapsed" | bc -l)"
printf 'resident memory: max %d KiB (%.2f MiB)\n' "$rss_max" "$(echo "$rss_max / 1024" | bc -l)"
echo "wake-ups (context switches) per thread over the run:"
join <(echo "$s0") <(echo "$s1") | awk -v e="$elapsed" '{printf "  %-14s %6d  (%.2f/s)\n", $1, $3 - $2, ($3 - $2) / e}'
