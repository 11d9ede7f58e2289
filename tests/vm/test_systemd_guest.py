"""The Debian package under a real systemd, in a qemu guest: Debian's 6.12
cloud kernel under TCG boots a bookworm root with systemd as init
(tests/vm/debian-root.sh), installs the .deb with dpkg and runs
tests/vm/systemd-scenario.sh, which starts the unit as shipped, with the
kernel-sink drop-in, and with an operator's line in /etc/default. The
package is installed by the guest's own dpkg, as an operator would (its
dependencies and conffile checked by the real thing), onto a root that
stays generic and cached. The guest reports KEY=VALUE lines on a virtio
port of its own, never mixed with the console.

Every boot is one without entropy but what is credited (NO_ENTROPY), so
that the kernel log says when the CRNG became ready and what made it so:
  units      the boot above, on a persistent copy of the root; it also
             writes a seed file through the daemon's creditable-file sink,
  credited   the next boot of that copy: systemd-random-seed credits it;
             the daemon writes a plain `file:` seed, enables the early unit,
  plain      the third: that seed is not credited, the early unit's batch
             makes the CRNG ready, and a clean stop rewrites the seed file,
  initramfs  another copy, with the package installed in a chroot, booted
             from the Debian initramfs that its trigger rebuilt with the
             hook: the CRNG is ready before the root is mounted.

The .deb is $RR_DEB, or built as tests/packaging/test_deb.py builds it.
Needs tests/vm-setup.sh (run here if its kernel is missing), root, and a
loop device (tests/vm/hook-image.sh mounts a copy of the root)."""
import os
import re
import shutil
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.join(ROOT, "tests", "vm")
KERNEL = os.path.join(ROOT, "target", "vm", "amd64")
UNIT = os.path.join(ROOT, "packaging", "random-refresher.service")

# Without -cx16, 6.12 under this qemu's TCG (Debian's 7.2) corrupts its
# memory now and then where SLUB updates a per-CPU freelist with
# `cmpxchg16b %gs:(%rsi)`: double faults in kmem_cache_alloc, list
# corruption, general protection faults, mostly before /init (here, on a
# loaded machine, 4 of 24 plain boots reached /init, and 0 of 3 systemd
# boots finished, one dying after /init). Without CX16 the kernel does
# without the instruction (this_cpu_cmpxchg16b_emu): 36 of 36 plain boots
# and every systemd boot went through.
CPU = "qemu64,+rdrand,-cx16"
# A boot whose /init wrote nothing within FIRST_LINE_S is retried, up to
# ATTEMPTS boots (the early failure above, should it still come); whatever
# happens after /init's first line counts.
ATTEMPTS = 3
FIRST_LINE_S = 60
# The whole boot, /init to power-off (about a minute here for `units`, half
# that for the others; the scenario's own waits are bounded in the guest too).
BOOT_S = 300
# No entropy but what is credited: the CPU's instructions, the boot
# loader's seed and the hwrng's own credit (the maximum quality of every
# hwrng since Linux 6.2) are not trusted; the kernel's CRNG becomes ready
# from credited bytes, or from its own jitter once a reader blocks.
NO_ENTROPY = "random.trust_cpu=0 random.trust_bootloader=0 rng_core.default_quality=0"
CMDLINE = ("console=ttyS0 panic=-1 quiet " + NO_ENTROPY + " "
           # The scenario is the unit the system boots into; the guest powers
           # off when it ends, however it ends: with poweroff-force no unit
           # is stopped, so systemd-random-seed does not rewrite its seed
           # file at shutdown and the next boot finds what the scenario left.
           "systemd.run=/var/lib/rr-test/scenario "
           "systemd.run_success_action=poweroff-force systemd.run_failure_action=poweroff-force")
# Ordering slack between the kernel log's clock and systemd's monotonic one.
CLOCK_SLACK_S = 0.5


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    if os.environ.get("RR_DEB"):
        return os.environ["RR_DEB"]
    out = tmp_path_factory.mktemp("deb")
    for cmd in (["cargo", "build", "-q", "--release", "--locked"],
                ["cargo", "run", "-q", "--release", "--example", "gen-assets", "--", "target/assets"],
                ["cargo", "deb", "--no-build", "--output", str(out)]):
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        assert p.returncode == 0, f"{' '.join(cmd)}:\n{p.stderr}"
    (path,) = out.glob("random-refresher_*.deb")
    return str(path)


def initramfs(deb, work):
    """Busybox, the two driver modules, /init and the payload it copies
    into the root: the package and the scenario."""
    tree = work / "initramfs"
    for d in ("bin", "modules", "payload"):
        (tree / d).mkdir(parents=True)
    shutil.copy(os.path.join(KERNEL, "busybox"), tree / "bin" / "busybox")
    for m in ("virtio_blk.ko", "virtio-rng.ko"):
        shutil.copy(os.path.join(KERNEL, "modules", m), tree / "modules" / m)
    shutil.copy(os.path.join(HERE, "systemd-init.sh"), tree / "init")
    shutil.copy(os.path.join(HERE, "systemd-scenario.sh"), tree / "payload" / "scenario")
    shutil.copy(deb, tree / "payload" / "random-refresher.deb")
    image = work / "initramfs.gz"
    subprocess.run(f"find . -print0 | cpio --null -o -H newc --quiet | gzip -1 >{image}",
                   shell=True, cwd=tree, check=True)
    return image


class Boot:
    """One boot's result lines (KEY=VALUE), when each first appeared
    (seconds after qemu started), and the serial console."""

    def __init__(self, results, seen, console, seconds):
        self.values = dict(line.split("=", 1) for line in results if "=" in line)
        self.seen = seen
        self.console = console
        self.seconds = seconds

    def __getitem__(self, key):
        assert key in self.values, f"the guest did not report {key}:\n{self.describe()}"
        return self.values[key]

    def get(self, key):
        return self.values.get(key)

    def describe(self):
        lines = "\n".join(f"{k}={v}" for k, v in self.values.items())
        return f"results:\n{lines}\nconsole (end):\n{self.console[-6000:]}"


def boot(image, initrd, work, name, attempt, append, snapshot):
    """Boots once. None if the initramfs never wrote its first line
    (retry: nothing was written to the root yet); otherwise the Boot,
    however the rest went."""
    results = work / f"{name}-results-{attempt}.txt"
    console = work / f"{name}-console-{attempt}.txt"
    cmd = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", CPU, "-m", "1024", "-smp", "1",
           "-nographic", "-no-reboot", "-nic", "none", "-monitor", "none",
           "-kernel", os.path.join(KERNEL, "vmlinuz"), "-initrd", str(initrd),
           "-append", f"{CMDLINE} {append}",
           # snapshot: the writes go to a temporary overlay, the image stays
           # as it was; otherwise the image (a copy of the test's own) keeps them.
           "-drive", f"file={image},format=raw,if=virtio,snapshot={'on' if snapshot else 'off'}",
           "-device", "virtio-rng-pci",
           "-device", "virtio-serial-pci",
           "-chardev", f"file,id=results,path={results}",
           "-device", "virtserialport,chardev=results,name=rr.results"]
    started = time.monotonic()
    seen = {}
    with open(console, "wb") as out:
        q = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        try:
            while q.poll() is None:
                elapsed = time.monotonic() - started
                lines = results.read_text(errors="replace").splitlines() if results.exists() else []
                for line in lines:
                    seen.setdefault(line.split("=", 1)[0], round(elapsed, 1))
                if not lines and elapsed > FIRST_LINE_S:
                    return None
                if elapsed > BOOT_S:
                    break
                time.sleep(0.2)
        finally:
            if q.poll() is None:
                q.kill()
            q.wait()
    if not results.exists() or not results.read_text().strip():
        return None
    return Boot(results.read_text(errors="replace").splitlines(), seen,
                console.read_text(errors="replace"), round(time.monotonic() - started, 1))


def boot_until_init(name, image, initrd, work, append, snapshot=True):
    """One boot, retried while it dies before the initramfs's first line."""
    for attempt in range(1, ATTEMPTS + 1):
        b = boot(image, initrd, work, name, attempt, append, snapshot)
        if b is not None:
            break
        print(f"{name} boot {attempt}: the initramfs wrote nothing within {FIRST_LINE_S} s, retried")
    else:
        pytest.fail(f"{name}: {ATTEMPTS} boots in a row failed before the initramfs ran")
    assert "DONE" in b.values, f"{name}: the guest stopped, or hung for {BOOT_S} s, before the scenario's end:\n{b.describe()}"
    crng = b.get("CRNG_READY_S") or "never"
    print(f"{name}: boot {attempt} took {b.seconds} s in all; initramfs at {b.seen['INIT']} s, "
          f"scenario at {b.seen['SCENARIO_UPTIME_S']} s; guest clock: root mounted at "
          f"{b.get('ROOT_MOUNTED_S')} s, crng init done at {crng} s")
    return b


def phase(name):
    return f"rr.phase={name}"


@pytest.fixture(scope="module")
def root_image():
    if shutil.which("qemu-system-x86_64") is None or not os.path.exists(os.path.join(KERNEL, "ready")):
        subprocess.run(["bash", os.path.join(ROOT, "tests", "vm-setup.sh")], check=True)
    t = time.monotonic()
    p = subprocess.run(["bash", os.path.join(HERE, "debian-root.sh")], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    print(f"systemd guest: root image {time.monotonic() - t:.1f} s")
    return p.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("systemd-guest")


@pytest.fixture(scope="module")
def persistent(root_image, work):
    """A copy of the root that keeps its writes from boot to boot."""
    path = work / "persistent.ext4"
    subprocess.run(["cp", "--sparse=always", root_image, path], check=True)
    return path


@pytest.fixture(scope="module")
def busybox_initrd(deb, work):
    return initramfs(deb, work)


def seed_xattrs(image):
    """The extended attributes of the guest's seed file, read from the
    image (the guest has no getfattr)."""
    p = subprocess.run(["debugfs", "-R", "ea_list /var/lib/systemd/random-seed", str(image)],
                       capture_output=True, text=True, check=True)
    return p.stdout


@pytest.fixture(scope="module")
def guest(persistent, busybox_initrd, work):
    b = boot_until_init("units", persistent, busybox_initrd, work, phase("units"), snapshot=False)
    ready = int(b["shipped.READY_UPTIME_US"]) / 1e6
    print(f"units: dpkg -i {int(b['DPKG_MS']) / 1000:.1f} s, READY at {ready:.1f} s after the kernel started "
          f"({int(b['shipped.START_MS']) / 1000:.1f} s after systemctl start)")
    # What the daemon's creditable-file sink left for the next boot.
    b.seed_xattrs = seed_xattrs(persistent)
    return b


@pytest.fixture(scope="module")
def credited(guest, persistent, busybox_initrd, work):
    return boot_until_init("credited", persistent, busybox_initrd, work, phase("credited"), snapshot=False)


@pytest.fixture(scope="module")
def plain(credited, persistent, busybox_initrd, work):
    return boot_until_init("plain", persistent, busybox_initrd, work, phase("plain"), snapshot=False)


@pytest.fixture(scope="module")
def hooked(deb, root_image, work):
    """The package installed as an administrator would (tests/vm/hook-image.sh),
    booted from the initramfs that its trigger rebuilt."""
    t = time.monotonic()
    p = subprocess.run(["bash", os.path.join(HERE, "hook-image.sh"), root_image, deb,
                        os.path.join(HERE, "systemd-scenario.sh"), str(work / "hooked.ext4")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    initrd = p.stdout.splitlines()[0]
    print(f"initramfs: dpkg -i and update-initramfs in a chroot {time.monotonic() - t:.1f} s; "
          f"hook's files: {' '.join(p.stdout.splitlines()[1:])}")
    return boot_until_init("initramfs", work / "hooked.ext4", initrd, work,
                           f"root=/dev/vda rw {phase('initramfs')}")


def test_the_package_installs_with_dpkg(guest):
    assert guest["DPKG_EXIT"] == "0", guest.describe()
    assert guest["DPKG_STATUS"] == "install ok installed", guest.describe()


def test_the_unit_becomes_ready_and_answers_healthz(guest):
    # Type=notify: the start job ends when READY=1 came, after the first
    # tested batch.
    assert guest["shipped.START_EXIT"] == "0", guest.describe()
    assert guest["shipped.STATE"] == "active/running", guest.describe()
    assert guest["shipped.HEALTHZ_EXIT"] == "0", guest.describe()


def test_the_watchdog_is_armed_fed_and_enforced(guest):
    assert guest["shipped.WATCHDOG_USEC"] == "8s", guest.describe()
    # Over ten seconds (more than one 8 s period) the pings went on, to the
    # same process, which systemd left running.
    assert int(guest["shipped.WATCHDOG_ADVANCED_US"]) >= 6_000_000, guest.describe()
    assert guest["shipped.STATE_LATER"] == "active/running", guest.describe()
    assert guest["shipped.MAINPID_LATER"] == guest["shipped.MAINPID"], guest.describe()
    assert guest["shipped.NRESTARTS"] == "0", guest.describe()
    # A stopped process stops pinging, and systemd ends it.
    assert guest["WATCHDOG_RESULT"] == "watchdog", guest.describe()


def test_the_running_unit_scores_as_the_offline_check_does(guest):
    analyze = shutil.which("systemd-analyze") or pytest.fail("no systemd-analyze")
    p = subprocess.run([analyze, "security", "--offline=true", UNIT], capture_output=True, text=True)
    offline = re.search(r"Overall exposure level for \S+: ([0-9.]+)", p.stdout)
    assert offline, p.stdout + p.stderr
    assert float(guest["shipped.EXPOSURE"]) == float(offline.group(1)) <= 2.0, guest.describe()


def delivered(guest, config):
    """Bytes delivered per sink, from the daemon's /metrics."""
    prefix = f"{config}.SINK_BYTES."
    return {k[len(prefix):]: int(v) for k, v in guest.values.items() if k.startswith(prefix)}


def test_as_shipped_it_delivers_to_the_mix_sink(guest):
    assert guest["shipped.ENV.RANDOM_REFRESHER_SINK"] == "mix", guest.describe()
    sinks = delivered(guest, "shipped")
    assert list(sinks) == ["mix"] and sinks["mix"] > 0, guest.describe()


def test_the_kernel_sink_drop_in_takes_effect(guest):
    # systemd.exec(5): EnvironmentFile= overrides Environment=, so the
    # drop-in's Environment= only counts if /etc/default leaves SINK unset.
    assert guest["kernel_dropin.START_EXIT"] == "0", guest.describe()
    assert guest["kernel_dropin.ENV.RANDOM_REFRESHER_SINK"] == "kernel", guest.describe()
    sinks = delivered(guest, "kernel_dropin")
    assert list(sinks) == ["kernel"] and sinks["kernel"] > 0, guest.describe()
    # RNDRESEEDCRNG worked: the drop-in's CAP_SYS_ADMIN reached the daemon.
    assert int(guest["kernel_dropin.KERNEL_RESEEDS"]) > 0, guest.describe()


def test_a_drop_in_sets_any_option(guest):
    # The test's own drop-in sets the interval: nothing in /etc/default hides it.
    assert guest["shipped.ENV.RANDOM_REFRESHER_INTERVAL"] == "2s", guest.describe()


def test_an_operators_line_in_etc_default_wins_over_the_drop_in(guest):
    assert guest["operator_default.START_EXIT"] == "0", guest.describe()
    assert guest["operator_default.ENV.RANDOM_REFRESHER_SINK"] == "mix", guest.describe()
    sinks = delivered(guest, "operator_default")
    assert list(sinks) == ["mix"] and sinks["mix"] > 0, guest.describe()


def test_the_journal_shows_no_error_from_the_unit(guest):
    assert guest["JOURNAL_ERRORS"] == "0", guest.describe()


def seconds(boot, key):
    """A kernel-log time (s) or a systemd monotonic timestamp (µs) in s."""
    value = boot[key]
    assert value not in ("", "0"), f"{key} is unset:\n{boot.describe()}"
    return float(value) if key.endswith("_S") else int(value) / 1e6


EARLY = "random-refresher-early.service"
SEED = "systemd-random-seed.service"


def test_the_package_enables_the_early_unit(guest):
    assert guest["EARLY.ENABLED"] == "enabled", guest.describe()


def test_without_hook_or_early_unit_the_crng_waits_for_systemd_random_seed(guest):
    # The baseline of the boots below: the root is mounted, systemd starts,
    # and the CRNG is still not ready when systemd-random-seed asks for it
    # (it then blocks, and the kernel's jitter entropy makes it ready).
    assert guest[f"{EARLY}.START_US"] == "0", guest.describe()
    assert seconds(guest, "CRNG_READY_S") > seconds(guest, "ROOT_MOUNTED_S"), guest.describe()
    assert guest["RANDOM_SEED.WAITING"] == "1", guest.describe()


def test_the_creditable_file_sink_marks_the_seed_for_systemd(guest):
    assert guest["SEED_WRITE.creditable-file"] == "0", guest.describe()
    assert re.search(r'user\.random-seed-creditable \(1\) = "1"', guest.seed_xattrs), guest.seed_xattrs


def test_systemd_random_seed_credits_the_daemons_creditable_seed(credited):
    # Nothing else credits here (no hook, the early unit disabled): the
    # CRNG becomes ready while systemd-random-seed loads the seed, which it
    # neither refuses ("not crediting") nor waits after.
    assert credited["RANDOM_SEED.NOT_CREDITING"] == "0", credited.describe()
    assert credited["RANDOM_SEED.WAITING"] == "0", credited.describe()
    assert credited[f"{SEED}.STATE"] == "active/success", credited.describe()
    ready = seconds(credited, "CRNG_READY_S")
    assert seconds(credited, f"{SEED}.START_US") - CLOCK_SLACK_S <= ready \
        <= seconds(credited, f"{SEED}.EXIT_US") + CLOCK_SLACK_S, credited.describe()
    assert credited["SEED_WRITE.file"] == "0", credited.describe()
    assert credited["EARLY.ENABLE_EXIT"] == "0", credited.describe()


def test_systemd_random_seed_does_not_credit_a_plain_seed_file(plain):
    assert plain["RANDOM_SEED.NOT_MARKED"] == "1", plain.describe()


def test_the_early_unit_makes_the_crng_ready_before_systemd_random_seed(plain, guest):
    assert plain[f"{EARLY}.STATE"] == "active/success", plain.describe()
    assert plain["EARLY.ERRORS"] == "0", plain.describe()
    # The daemon saw the CRNG become ready with its own credited batch...
    assert plain["EARLY.MADE_READY"] == "1", plain.describe()
    # ...while the unit ran, before systemd-random-seed, which had no wait.
    ready = seconds(plain, "CRNG_READY_S")
    assert seconds(plain, f"{EARLY}.START_US") - CLOCK_SLACK_S <= ready \
        <= seconds(plain, f"{EARLY}.EXIT_US") + CLOCK_SLACK_S, plain.describe()
    assert seconds(plain, f"{EARLY}.EXIT_US") <= seconds(plain, f"{SEED}.START_US"), plain.describe()
    assert plain["RANDOM_SEED.WAITING"] == "0", plain.describe()
    print(f"crng init done: {ready} s with the early unit, "
          f"{seconds(guest, 'CRNG_READY_S')} s without (systemd-random-seed's wait)")


def test_a_clean_stop_of_systemd_random_seed_rewrites_the_daemons_seed(plain):
    # What a clean shutdown does (ExecStop=systemd-random-seed save): the
    # next boot loads the daemon's seed only after a shutdown that stops no
    # units (a crash, a power cut, poweroff --force), or one written after
    # this stop.
    assert plain["SEED_WRITE.creditable-file"] == "0", plain.describe()
    assert plain["SEED_KEPT_BY_SAVE"] == "0", plain.describe()


def test_the_initramfs_hook_makes_the_crng_ready_before_the_root_is_mounted(hooked):
    assert hooked["HOOK_LINE"].startswith("delivered one tested batch to the kernel, which made the CRNG ready"), \
        hooked.describe()
    # Not ready when the hook started (so not without it, up to there), made
    # ready by its batch, before the root was mounted.
    assert int(hooked["HOOK_LOG.NOT_READY_AT_START"]) >= 1, hooked.describe()
    assert hooked["HOOK_LOG.MADE_READY"] == "1", hooked.describe()
    assert seconds(hooked, "CRNG_READY_S") <= seconds(hooked, "HOOK_S") < seconds(hooked, "ROOT_MOUNTED_S"), \
        hooked.describe()
    # The early unit then had nothing to make ready.
    assert hooked[f"{EARLY}.STATE"] == "active/success", hooked.describe()
    assert hooked["EARLY.MADE_READY"] == "0", hooked.describe()
    print(f"crng init done: {hooked['CRNG_READY_S']} s with the hook, before the root was mounted at "
          f"{hooked['ROOT_MOUNTED_S']} s (without: see the `units` boot)")
