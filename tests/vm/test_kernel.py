"""The daemon against real Linux kernels (Debian's 6.12 cloud kernels) in
qemu: the hw_random core as it really behaves (rng_quality writes that make
the kernel pick another device, per-device qualities, rng_current written
by hand), a CRNG that is not ready yet, and arm64's ioctls, none of which a
fake sysfs or the host's long-ready kernel can show. See guest.py for how a
guest is built, booted and read."""
import json
import os
import subprocess

import pytest

from guest import AMD64, ARM64, ROOT, Backend, boot, record, zeros_until

# No entropy but what the scenario gives: the CPU's instructions, the boot
# loader's seed and the hwrng's own credit (the maximum quality of every
# hwrng since Linux 6.2) are not trusted.
NO_ENTROPY = "random.trust_cpu=0 random.trust_bootloader=0 rng_core.default_quality=0"

DAEMON = ("random-refresher run --listen-address 127.0.0.1:9742 --log-format json "
          "--interval 1s --retry-initial 1s --retry-max 2s")
QUARANTINE = f"{DAEMON} --source /dev/hwrng --sink mix --quarantine-hwrng --state-dir /run/rr"

HELPERS = r"""
quality_is() { [ "$(cat $hw/rng_quality)" = "$1" ]; }
current_is() { [ "$(cat $hw/rng_current)" = "$1" ]; }
ready() { [ "$(crng-ready)" = 1 ]; }
metrics() { wget -qO- http://127.0.0.1:9742/metrics | grep "^random_refresher_$1" > /tmp/m; say_file metric /tmp/m; }
marker() { if [ -f /run/rr/hwrng-quarantine ]; then tr '\n' ';' < /run/rr/hwrng-quarantine; else echo none; fi; }
"""


def log_lines(result, key="log"):
    """The daemon's JSON log lines that the guest sent back under `key`."""
    lines = []
    for text in result.all(key):
        try:
            lines.append(json.loads(text))
        except ValueError:
            pass
    return lines


def messages(lines):
    return [line.get("message", "") for line in lines]


def metric(result, name):
    """The value of one series the guest sent back, by its full name and labels."""
    for line in result.all("metric"):
        series, _, value = line.rpartition(" ")
        if series == name:
            return float(value)
    raise AssertionError(f"no {name} in {result.all('metric')}")


@pytest.fixture(scope="module")
def amd64_binary():
    built(AMD64)


def test_a_zero_device_is_quarantined_held_across_a_restart_and_lifted_by_good_data(amd64_binary):
    backend = Backend(chunks=zeros_until("good"))

    def host(key, value):
        if key == "want" and value == "good":
            backend.state["good"] = True

    scenario = HELPERS + f"""
insmod /modules/virtio-rng.ko
wait_for 10 current_is virtio_rng.0
say "quality_before=$(cat $hw/rng_quality)"
mkdir -p /run/rr
{QUARANTINE} --batch-size 50000 --max-failed-cycles 100000 2>/tmp/d1.log &
pid=$!
wait_for 60 quality_is 0; say "held=$?"
say "marker=$(marker)"
# Raised from outside (an operator, a driver rebind) while it still fails.
echo 1024 > $hw/rng_quality
wait_for 30 quality_is 0; say "held_again=$?"
metrics hwrng_quarantined
kill $pid; wait $pid; say "exit_first=$?"
say "quality_after_exit=$(cat $hw/rng_quality)"
say "marker_after_exit=$(marker)"
{QUARANTINE} --batch-size 50000 --max-failed-cycles 100000 2>/tmp/d2.log &
pid=$!
sleep 5
say "quality_restarted=$(cat $hw/rng_quality)"
say "want=good"
wait_for 150 quality_is 1024; say "lifted=$?"
say "marker_after_lift=$(marker)"
kill $pid; wait $pid; say "exit_second=$?"
say_file log /tmp/d1.log
say_file log2 /tmp/d2.log
"""
    r = boot(AMD64, scenario, rngs=[backend], on_line=host, timeout=300)
    assert r.first("quality_before") == "1024", r.text()
    assert r.first("held") == "0", "rng_quality never went to 0:\n" + r.text()
    assert r.first("marker") == "virtio_rng.0 1024;", r.text()
    assert r.first("held_again") == "0", "a quality raised from outside was left:\n" + r.text()
    assert metric(r, 'random_refresher_hwrng_quarantined{rng="virtio_rng.0"}') == 1
    assert r.first("exit_first") == "0", r.text()
    # The quarantine outlives the process, and a new one keeps it.
    assert r.first("quality_after_exit") == "0", r.text()
    assert r.first("marker_after_exit") == "virtio_rng.0 1024;", r.text()
    assert r.first("quality_restarted") == "0", r.text()
    assert any("left by an earlier run" in m for m in messages(log_lines(r, "log2"))), r.text()
    # Good data lifts it, with the quality the kernel had.
    assert r.first("lifted") == "0", "good data did not lift the quarantine:\n" + r.text()
    assert r.first("marker_after_lift") == "none", r.text()
    assert any("quarantine lifted" in m for m in messages(log_lines(r, "log2"))), r.text()


def test_two_devices_a_switch_never_quarantines_the_good_one(amd64_binary):
    scenario = HELPERS + f"""
insmod /modules/virtio-rng.ko
wait_for 10 grep -q virtio_rng.1 $hw/rng_available
say "available=$(cat $hw/rng_available)"
say "current_before=$(cat $hw/rng_current)"
mkdir -p /run/rr
{QUARANTINE} 2>/tmp/d.log &
pid=$!
# The daemon holds virtio_rng.0 at 0; the kernel then picks virtio_rng.1.
wait_for 60 current_is virtio_rng.1; say "switched_by_kernel=$?"
say "marker_after_switch=$(marker)"
sleep 10
say "current_after=$(cat $hw/rng_current)"
say "quality_good=$(cat $hw/rng_quality)"
metrics sink_bytes_total
# By hand, back to the failing device: it stays held.
echo virtio_rng.0 > $hw/rng_current
sleep 8
say "current_by_hand=$(cat $hw/rng_current)"
say "quality_bad_by_hand=$(cat $hw/rng_quality)"
# And to the good one: it is judged on its own bytes and keeps its quality.
echo virtio_rng.1 > $hw/rng_current
sleep 8
say "current_back=$(cat $hw/rng_current)"
say "quality_good_back=$(cat $hw/rng_quality)"
say "marker_end=$(marker)"
kill $pid; wait $pid; say "exit=$?"
say_file log /tmp/d.log
"""
    r = boot(AMD64, scenario, rngs=[Backend("/dev/zero"), Backend("/dev/urandom")], timeout=240)
    assert r.first("available").split() == ["virtio_rng.0", "virtio_rng.1", "none"], r.text()
    assert r.first("current_before") == "virtio_rng.0", r.text()
    assert r.first("switched_by_kernel") == "0", r.text()
    assert r.first("marker_after_switch") == "virtio_rng.0 1024;", r.text()
    assert r.first("current_after") == "virtio_rng.1", r.text()
    assert r.first("quality_good") == "1024", "the good device lost its credit:\n" + r.text()
    assert metric(r, 'random_refresher_sink_bytes_total{sink="mix"}') > 0, r.text()
    assert r.first("current_by_hand") == "virtio_rng.0", r.text()
    assert r.first("quality_bad_by_hand") == "0", r.text()
    assert r.first("current_back") == "virtio_rng.1", r.text()
    assert r.first("quality_good_back") == "1024", r.text()
    assert r.first("marker_end") == "virtio_rng.0 1024;", r.text()
    quarantined = [line.get("rng") for line in log_lines(r)
                   if line.get("message", "").startswith("QUARANTINE")]
    assert quarantined and set(quarantined) == {"virtio_rng.0"}, quarantined
    assert r.first("exit") == "0", r.text()


def test_before_the_crng_is_ready_deliveries_count_and_the_daemon_says_when_it_became_ready(amd64_binary):
    # A hwrng of zeros that the kernel does not credit (default_quality=0),
    # and rdrand behind it. rdrand is credited 1/32 bit per byte: 78 bits a
    # 2,500-byte batch, so the CRNG (256 bits) becomes ready from the
    # daemon's fourth delivery, and the three before it find RNDRESEEDCRNG
    # answering ENODATA. The zeros are quarantined (its marker written)
    # while the CRNG is not ready: nothing on the way may wait for it.
    scenario = HELPERS + f"""
insmod /modules/virtio-rng.ko
wait_for 10 current_is virtio_rng.0
say "quality_before=$(cat $hw/rng_quality)"
mkdir -p /run/rr
{DAEMON} --source /dev/hwrng --source rdrand --sink kernel --quarantine-hwrng --state-dir /run/rr \
    --max-failed-cycles 2 2>/tmp/d.log &
pid=$!
wait_for 90 ready; say "became_ready=$?"
say "ready_seen=$(cut -d' ' -f1 /proc/uptime)"
sleep 3
say "marker=$(marker)"
metrics kernel_
metrics cycles_total
metrics hwrng_quarantined
metrics entropy_credited
kill $pid; wait $pid; say "exit=$?"
say_file log /tmp/d.log
"""
    r = boot(AMD64, scenario, append=NO_ENTROPY, rngs=[Backend("/dev/zero")], timeout=240)
    assert r.first("quality_before") == "0", "rng_core.default_quality=0 caps the device:\n" + r.text()
    assert r.first("crng_ready_at_init") == "0", "the CRNG was ready before the daemon ran:\n" + r.text()
    assert r.first("became_ready") == "0", "the CRNG never became ready:\n" + r.text()
    lines = log_lines(r)
    text = messages(lines)
    assert not any("delivery failed" in m for m in text), r.text()
    not_ready = [m for m in text if m.startswith("the kernel's CRNG is not ready yet: bytes added")]
    assert len(not_ready) == 1, "logged once:\n" + r.text()
    made = [line for line in lines
            if line.get("message", "").startswith("the kernel's CRNG is ready, made ready by this daemon")]
    assert len(made) == 1, r.text()
    # Four deliveries (312 bits) make it ready, three (234) do not; the
    # kernel's own interrupt timings credit a few bits a second too, so
    # three can do when a slow host drags the boot out.
    delivery = made[0]["delivery"]
    assert delivery in (3, 4), made
    assert metric(r, "random_refresher_kernel_reseeds_skipped_total") == delivery - 1
    assert metric(r, "random_refresher_kernel_crng_ready") == 1
    ready_at = metric(r, "random_refresher_kernel_crng_ready_boot_time_seconds")
    assert 0 < ready_at <= float(r.first("ready_seen")), r.text()
    # The kernel's own log agrees that it became ready then, not earlier.
    assert float(r.first("kernel_log_crng")) <= ready_at + 0.5, r.text()
    assert metric(r, 'random_refresher_cycles_total{result="failed"}') == 0
    # The zeros: quarantined (their quality was 0 already, and is recorded
    # as such), never credited: all the credit is rdrand's, 78 bits a batch.
    assert r.first("marker") == "virtio_rng.0 0;", r.text()
    assert metric(r, 'random_refresher_hwrng_quarantined{rng="virtio_rng.0"}') == 1
    cycles = metric(r, 'random_refresher_cycles_total{result="ok"}')
    assert metric(r, 'random_refresher_entropy_credited_bytes_total{source="rdrand"}') == int(cycles * 78 / 8), r.text()
    assert metric(r, 'random_refresher_entropy_credited_bytes_total{source="/dev/hwrng"}') == 0, r.text()
    assert r.first("exit") == "0", r.text()
    record("crng_not_ready_rdrand_amd64", init=r.first("init"), delivery=delivery, ready_at=ready_at,
           kernel_log=r.first("kernel_log_crng"), boots=r.boots)


def built(arch):
    assert os.path.exists(arch.binary), f"build {arch.binary} first (tests/run.sh does)"


# The CPU source each guest has: TCG's x86-64 has RDRAND (no RDSEED), the
# arm64 `max` CPU has FEAT_RNG.
CPU_SOURCE = {"amd64": "rdrand", "arm64": "rndrrs"}


@pytest.mark.parametrize("arch", [AMD64, ARM64], ids=["amd64", "arm64"])
def test_the_kernel_on_its_own_credits_a_zero_device_unless_told_not_to(arch):
    built(arch)
    """The threat, measured: with its default quality the kernel makes its
    CRNG ready from a hwrng of zeros as soon as the driver loads, before the
    daemon can act; booted with rng_core.default_quality=0 it does not. On a
    kernel booted without that parameter, --hold-hwrng-quality keeps the
    device's credit at 0 from the daemon's start, and gives it back at exit."""
    scenario = HELPERS + """
insmod /modules/virtio-rng.ko
wait_for 10 current_is virtio_rng.0
say "quality=$(cat $hw/rng_quality)"
wait_for 20 ready; say "became_ready=$?"
"""
    hold = f"""
{DAEMON} --source {CPU_SOURCE[arch.name]} --sink kernel --hold-hwrng-quality --state-dir /run/rr 2>/tmp/d.log &
pid=$!
wait_for 30 quality_is 0; say "held=$?"
echo 1024 > $hw/rng_quality
wait_for 30 quality_is 0; say "held_again=$?"
kill $pid; wait $pid; say "exit=$?"
say "quality_after_exit=$(cat $hw/rng_quality)"
say "marker_after_exit=$(marker)"
say_file log /tmp/d.log
"""
    blind = boot(arch, scenario + hold, append="random.trust_cpu=0 random.trust_bootloader=0",
                 rngs=[Backend("/dev/zero")], timeout=180)
    assert blind.first("quality") == "1024" and blind.first("became_ready") == "0", blind.text()
    assert blind.first("held") == "0" and blind.first("held_again") == "0", blind.text()
    assert blind.first("exit") == "0", blind.text()
    assert blind.first("quality_after_exit") == "1024", blind.text()
    assert blind.first("marker_after_exit") == "none", blind.text()
    held = boot(arch, scenario, append=NO_ENTROPY, rngs=[Backend("/dev/zero")], timeout=180)
    assert held.first("quality") == "0" and held.first("became_ready") == "1", held.text()
    record(f"zero_hwrng_{arch.name}", blind_ready_at=blind.first("kernel_log_crng"), blind_init=blind.first("init"),
           held_ready_at=held.first("kernel_log_crng") or "never", held_init=held.first("init"))


@pytest.mark.parametrize("arch", [AMD64, ARM64], ids=["amd64", "arm64"])
def test_a_good_device_credited_by_the_kernel_or_only_through_the_daemon(arch):
    """A good virtio-rng: the kernel alone makes its CRNG ready from it when
    the driver loads, untested; with rng_core.default_quality=0 it is ready
    at the daemon's first tested delivery, and not before."""
    built(arch)
    scenario = HELPERS + f"""
insmod /modules/virtio-rng.ko
wait_for 10 current_is virtio_rng.0
say "loaded=$(cut -d' ' -f1 /proc/uptime)"
say "quality=$(cat $hw/rng_quality)"
sleep 1
say "ready_before_daemon=$(crng-ready)"
{DAEMON} --source /dev/hwrng --sink kernel 2>/tmp/d.log &
pid=$!
wait_for 60 ready; say "became_ready=$?"
sleep 1
metrics kernel_crng
kill $pid; wait $pid
say_file log /tmp/d.log
"""
    blind = boot(arch, scenario, append="random.trust_cpu=0 random.trust_bootloader=0",
                 rngs=[Backend("/dev/urandom")], timeout=180)
    assert blind.first("quality") == "1024" and blind.first("ready_before_daemon") == "1", blind.text()
    held = boot(arch, scenario, append=NO_ENTROPY, rngs=[Backend("/dev/urandom")], timeout=180)
    assert held.first("quality") == "0" and held.first("ready_before_daemon") == "0", held.text()
    assert held.first("became_ready") == "0", held.text()
    made = [line["delivery"] for line in log_lines(held)
            if line.get("message", "").startswith("the kernel's CRNG is ready, made ready by this daemon")]
    assert made == [1], held.text()
    record(f"good_hwrng_{arch.name}", blind_loaded=blind.first("loaded"), blind_ready_at=blind.first("kernel_log_crng"),
           held_loaded=held.first("loaded"),
           held_ready_at=metric(held, "random_refresher_kernel_crng_ready_boot_time_seconds"))


def test_arm64_before_the_crng_is_ready_rndrrs_makes_it_ready_and_the_zeros_are_quarantined():
    """The arm64 form of the scenario above: rndrrs is credited 8 bits a
    byte, so the daemon's first delivery makes the CRNG ready."""
    scenario = HELPERS + f"""
insmod /modules/virtio-rng.ko
wait_for 10 current_is virtio_rng.0
mkdir -p /run/rr
{DAEMON} --source /dev/hwrng --source rndrrs --sink kernel --quarantine-hwrng --state-dir /run/rr \
    --max-failed-cycles 2 2>/tmp/d.log &
pid=$!
wait_for 90 ready; say "became_ready=$?"
sleep 2
say "marker=$(marker)"
metrics kernel_
kill $pid; wait $pid; say "exit=$?"
say_file log /tmp/d.log
"""
    built(ARM64)
    r = boot(ARM64, scenario, append=NO_ENTROPY, rngs=[Backend("/dev/zero")], timeout=240)
    assert r.first("crng_ready_at_init") == "0", r.text()
    assert r.first("became_ready") == "0", r.text()
    made = [line for line in log_lines(r)
            if line.get("message", "").startswith("the kernel's CRNG is ready, made ready by this daemon")]
    assert [m["delivery"] for m in made] == [1], r.text()
    assert r.first("marker") == "virtio_rng.0 0;", r.text()
    assert metric(r, "random_refresher_kernel_reseeds_skipped_total") == 0
    assert r.first("exit") == "0", r.text()
    record("crng_not_ready_rndrrs_arm64", init=r.first("init"), ready_at=metric(
        r, "random_refresher_kernel_crng_ready_boot_time_seconds"), kernel_log=r.first("kernel_log_crng"))


def arm64_ioctl_tests():
    """The aarch64 integration tests that reach the kernel's ioctls: under
    qemu-user they skip (it does not pass RNDADDENTROPY on); here they run."""
    p = subprocess.run(["cargo", "test", "--release", "--locked", "--target", "aarch64-unknown-linux-gnu",
                        "--test", "hardware", "--test", "delivery", "--no-run", "--message-format=json"],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    found = {}
    for line in p.stdout.splitlines():
        m = json.loads(line)
        if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in ("hardware", "delivery"):
            found[m["target"]["name"]] = m["executable"]
    return [(found["hardware"], "kernel_sink_credits_and_reseeds_as_root"),
            (found["delivery"], "a_regular_file_is_never_credited")]


def test_arm64_ioctls_rndr_and_rndrrs_in_a_real_kernel():
    built(ARM64)
    tests = arm64_ioctl_tests()
    # The tests start the binary at the path cargo gave them.
    files = [(ARM64.binary, ARM64.binary)] + [(exe, f"/t/{os.path.basename(exe)}") for exe, _ in tests]
    runs = "\n".join(
        f'/t/{os.path.basename(exe)} {name} --exact --test-threads=1 >/tmp/t.log 2>&1; say "test_{name}=$?"; '
        f'say_file testlog /tmp/t.log' for exe, name in tests)
    scenario = HELPERS + f"""
insmod /modules/virtio-rng.ko
wait_for 10 current_is virtio_rng.0
random-refresher once --source rndr --sink kernel --log-level debug --log-format json 2>/tmp/rndr.log
say "rndr_exit=$?"
say "ready_after_rndr=$(crng-ready)"
random-refresher once --source rndrrs --sink kernel --log-level debug --log-format json 2>/tmp/rndrrs.log
say "rndrrs_exit=$?"
say "ready_after_rndrrs=$(crng-ready)"
say_file log_rndr /tmp/rndr.log
say_file log_rndrrs /tmp/rndrrs.log
cd /tmp
{runs}
"""
    r = boot(ARM64, scenario, append=NO_ENTROPY, rngs=[Backend("/dev/urandom")], files=files,
             memory=1024, timeout=400)
    assert r.first("crng_ready_at_init") == "0", r.text()

    def delivered(key):
        return [line for line in log_lines(r, key)
                if line.get("message") == "delivered" and line.get("sink") == "kernel"]

    # rndr: mixed in, credited nothing (no reseed bound is published); the
    # CRNG stays unready, and the skipped reseed is not a failure.
    assert r.first("rndr_exit") == "0", r.text()
    assert [d["credited_bits"] for d in delivered("log_rndr")] == [0], r.text()
    assert r.first("ready_after_rndr") == "0", r.text()
    # rndrrs: 8 bits a byte, which makes the CRNG ready.
    assert r.first("rndrrs_exit") == "0", r.text()
    assert [d["credited_bits"] for d in delivered("log_rndrrs")] == [20000], r.text()
    assert r.first("ready_after_rndrrs") == "1", r.text()
    for _, name in tests:
        assert r.first(f"test_{name}") == "0", f"{name} failed in the arm64 guest:\n" + "\n".join(r.all("testlog"))
    assert not any("skipped" in line for line in r.all("testlog")), r.all("testlog")
    assert sum("test result: ok. 1 passed" in line for line in r.all("testlog")) == len(tests), r.all("testlog")
    record("arm64_ioctls", init=r.first("init"), kernel_log=r.first("kernel_log_crng"), boots=r.boots)


def test_the_default_listen_address_serves_ipv4_and_ipv6_and_ipv4_alone_without_ipv6(amd64_binary):
    """`[::]:9742`, the default: on a kernel with IPv6 it answers on both
    families; on a kernel booted with ipv6.disable=1 (no AF_INET6 at all)
    it falls back to 0.0.0.0 and says so, instead of failing to start."""
    scenario = HELPERS + """
serve() {
    random-refresher run --log-format json --interval 1s --source rdrand --sink mix 2>>/tmp/d.log &
    pid=$!
    wait_for 20 wget -qO /dev/null http://127.0.0.1:9742/healthz; say "ipv4=$?"
    wget -qO /dev/null 'http://[::1]:9742/healthz'; say "ipv6=$?"
    kill $pid; wait $pid; say "exit=$?"
}
serve
if [ -e /proc/sys/net/ipv6/bindv6only ]; then
    echo 1 > /proc/sys/net/ipv6/bindv6only
    serve
fi
say_file log /tmp/d.log
"""
    both = boot(AMD64, scenario, timeout=180)
    # Twice: as the kernel has it, then with net.ipv6.bindv6only=1, which
    # the socket overrides.
    assert both.all("ipv4") == ["0", "0"] and both.all("ipv6") == ["0", "0"], both.text()
    assert both.all("exit") == ["0", "0"], both.text()
    assert not any("no IPv6" in m for m in messages(log_lines(both))), both.text()
    alone = boot(AMD64, scenario, append="ipv6.disable=1", timeout=180)
    assert (alone.first("ipv4"), alone.first("exit")) == ("0", "0"), alone.text()
    assert alone.first("ipv6") != "0", alone.text()
    fell_back = [line for line in log_lines(alone) if line.get("message", "").startswith("no IPv6 here")]
    assert len(fell_back) == 1 and fell_back[0].get("listen_address") == "[::]:9742", alone.text()
