"""Real Linux kernels in qemu for the scenarios of test_kernel.py.

A guest is Debian's 6.12 cloud kernel (unpacked by tests/vm-setup.sh into
target/vm/ARCH) with a small initramfs: static busybox, the virtio-rng
module, the static random-refresher binary, a tiny static `crng-ready`
probe (getrandom with GRND_NONBLOCK), and one scenario script. It runs under
qemu without KVM (TCG) and powers off when the script ends.

Results come back on a channel of their own, a virtio console (/dev/hvc0 in
the guest) written to a file on the host, as `KEY=VALUE` lines that the
scenario prints with `say`. Nothing is read from the kernel's console, so
no kernel message can interleave with a result. The host reads the file
while the guest runs, so a scenario can ask the host to act (`say
want=good`) and the host answers by changing what a virtio-rng backend
gives.

x86-64 6.12 guests under TCG sometimes die before /init with a spurious
exception (see AMD64 below for the main cause, which is avoided): a boot
whose /init never said `init=` is tried again, and only what happens after
/init started counts.
"""
import fcntl
import gzip
import os
import shutil
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
F_SETPIPE_SZ = 1031
VM = os.environ.get("RR_VM_DIR", os.path.join(ROOT, "target", "vm"))

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# /tmp stays the initramfs's own (it is writable memory already): a tmpfs
# over it would hide files placed at host paths under /tmp, such as the
# binary the arm64 tests start from a clone in /tmp.
mount -t tmpfs run /run
ip link set lo up
exec 3>/dev/hvc0
say() { echo "$*" >&3; }
# say_file NAME PATH: every line of PATH as NAME=LINE.
say_file() { sed "s/^/$1=/" "$2" >&3 2>/dev/null; }
# wait_for SECONDS COMMAND...: polls COMMAND every 0.2 s; 1 if it never held.
wait_for() {
    n=$(($1 * 5)); shift
    while [ $n -gt 0 ]; do "$@" && return 0; sleep 0.2; n=$((n - 1)); done
    return 1
}
hw=/sys/class/misc/hw_random
say "init=$(cut -d' ' -f1 /proc/uptime)"
say "crng_ready_at_init=$(/bin/crng-ready)"
. /scenario.sh
say "kernel_log_crng=$(dmesg | grep -m1 'crng init done' | sed 's/^\[ *\([0-9.]*\)\].*/\1/')"
say "end=$(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
"""

CRNG_READY_C = r"""
#include <errno.h>
#include <stdio.h>
#include <sys/random.h>
/* Prints 1 if the kernel's CRNG is ready, 0 if not: getrandom() with
   GRND_NONBLOCK fails with EAGAIN until it is. */
int main(void) {
    char b;
    if (getrandom(&b, 1, GRND_NONBLOCK) == 1) { puts("1"); return 0; }
    if (errno == EAGAIN) { puts("0"); return 0; }
    perror("getrandom");
    return 2;
}
"""


class Arch:
    """How to build for and boot one architecture."""

    def __init__(self, name, qemu, machine, console, cc, binary):
        self.name, self.qemu, self.machine, self.console = name, qemu, machine, console
        self.cc, self.binary = cc, binary
        self.dir = os.path.join(VM, name)

    def kernel(self):
        return os.path.join(self.dir, "vmlinuz")

    def version(self):
        with open(os.path.join(self.dir, "package")) as f:
            return f.read().strip()


AMD64 = Arch("amd64", "qemu-system-x86_64",
             # KVM does not work on these machines; 6.12 with -cpu max
             # panics early under TCG, qemu64 with RDRAND boots (TCG has no
             # RDSEED). Without CMPXCHG16B: with it, half of the boots here
             # died in SLUB's per-CPU cmpxchg16b (corrupt lists, a garbage
             # EFLAGS) before or soon after /init; without it, 0 of 8 (the
             # kernel falls back to a lock).
             ["-accel", "tcg", "-cpu", "qemu64,+rdrand,-cx16"], "ttyS0", "gcc",
             os.environ.get("RR_VM_BINARY_AMD64",
                            os.path.join(ROOT, "target/x86_64-unknown-linux-gnu/release/random-refresher")))
ARM64 = Arch("arm64", "qemu-system-aarch64",
             # dtb-randomness=off: the virt board would otherwise hand the
             # kernel a seed in the device tree and make the CRNG ready at
             # once, which would hide what these scenarios look at.
             ["-M", "virt,dtb-randomness=off", "-cpu", "max"], "ttyAMA0", "aarch64-linux-gnu-gcc",
             os.environ.get("RR_VM_BINARY_ARM64",
                            os.path.join(ROOT, "target/aarch64-unknown-linux-gnu/release/random-refresher")))


def crng_ready_probe(arch, out):
    cache = os.path.join(VM, arch.name, "crng-ready")
    if not os.path.exists(cache):
        src = os.path.join(VM, "crng-ready.c")
        with open(src, "w") as f:
            f.write(CRNG_READY_C)
        subprocess.run([arch.cc, "-static", "-O2", "-o", cache, src], check=True)
    shutil.copy(cache, out)


def initramfs(arch, scenario, work, files=()):
    """Builds the guest's initramfs in `work`; `files` are (host path,
    guest path) pairs added as they are."""
    tree = os.path.join(work, "tree")
    for d in ["bin", "sbin", "proc", "sys", "dev", "tmp", "run", "modules", "etc"]:
        os.makedirs(os.path.join(tree, d), exist_ok=True)
    shutil.copy(os.path.join(arch.dir, "busybox"), os.path.join(tree, "bin/busybox"))
    for m in os.listdir(os.path.join(arch.dir, "modules")):
        shutil.copy(os.path.join(arch.dir, "modules", m), os.path.join(tree, "modules", m))
    shutil.copy(arch.binary, os.path.join(tree, "bin/random-refresher"))
    crng_ready_probe(arch, os.path.join(tree, "bin/crng-ready"))
    for host, guest in files:
        dest = os.path.join(tree, guest.lstrip("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy(host, dest)
    for name, text in [("init", INIT), ("scenario.sh", scenario)]:
        path = os.path.join(tree, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755)
    names = subprocess.run(["find", "."], cwd=tree, capture_output=True, check=True).stdout
    archive = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=tree, input=names,
                             capture_output=True, check=True).stdout
    path = os.path.join(work, "initramfs.gz")
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(archive)
    return path


class Backend:
    """A virtio-rng device's backend: a file or device as it is (`path`),
    or a FIFO fed by the host from `chunks(state)`, a generator that the
    scenario can steer through `state` (a dict) while the guest runs."""

    def __init__(self, path=None, chunks=None):
        self.path, self.chunks, self.state = path, chunks, {}
        self.thread = None

    def open(self, work, i):
        if self.chunks is None:
            return self.path
        fifo = os.path.join(work, f"rng{i}.fifo")
        os.mkfifo(fifo)
        self.thread = threading.Thread(target=self._feed, args=(fifo,), daemon=True)
        self.thread.start()
        return fifo

    def _feed(self, fifo):
        try:
            with open(fifo, "wb", buffering=0) as f:
                # The smallest pipe (one page): a change of `state` reaches
                # the guest after at most that much of the old bytes.
                fcntl.fcntl(f.fileno(), F_SETPIPE_SZ, 4096)
                for chunk in self.chunks(self.state):
                    f.write(chunk)
        except (BrokenPipeError, OSError):
            pass  # qemu exited


class Result:
    """What a guest said: `values` maps each key to its lines' values in
    order; `first`/`last` give one."""

    def __init__(self, lines, console, boots):
        self.lines, self.console, self.boots = lines, console, boots
        self.values = {}
        for line in lines:
            key, _, value = line.partition("=")
            self.values.setdefault(key, []).append(value)

    def first(self, key, default=None):
        return self.values.get(key, [default])[0]

    def last(self, key, default=None):
        return self.values.get(key, [default])[-1]

    def all(self, key):
        return self.values.get(key, [])

    def text(self):
        return "\n".join(self.lines) + "\n--- console (tail) ---\n" + self.console[-3000:]


def boot(arch, scenario, append="", rngs=(), files=(), on_line=None, timeout=240, memory=512,
         retries=3):
    """Boots one guest running `scenario` (sh, sourced by /init) and returns
    its Result. `rngs` are Backends, one virtio-rng device each, in order
    (virtio_rng.0, .1, ...). `on_line(key, value)` is called for each
    result line as it arrives."""
    failed = []
    for attempt in range(1, retries + 1):
        with tempfile.TemporaryDirectory(prefix="rr-vm-") as work:
            result = _boot_once(arch, scenario, append, rngs, files, on_line, timeout, memory, work,
                                attempt)
            if isinstance(result, Result):
                return result
            failed.append(result)
    raise AssertionError(f"{arch.name}: /init did not start in {retries} boots; the last console:\n"
                         + failed[-1][-3000:])


def _boot_once(arch, scenario, append, rngs, files, on_line, timeout, memory, work, attempt):
    initrd = initramfs(arch, scenario, work, files)
    results = os.path.join(work, "results")
    console = os.path.join(work, "console")
    open(results, "w").close()
    cmd = [arch.qemu, *arch.machine, "-m", str(memory), "-smp", "1", "-nographic", "-no-reboot",
           "-monitor", "none", "-serial", f"file:{console}",
           "-kernel", arch.kernel(), "-initrd", initrd,
           "-append", f"console={arch.console} panic=-1 quiet loglevel=1 {append}",
           "-device", "virtio-serial-pci", "-chardev", f"file,id=results,path={results}",
           "-device", "virtconsole,chardev=results"]
    for i, backend in enumerate(rngs):
        backend.state.clear()
        cmd += ["-object", f"rng-random,id=rng{i},filename={backend.open(work, i)}",
                "-device", f"virtio-rng-pci,rng=rng{i}"]
    qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    lines, started = [], False
    # /init runs about 3.5 s (x86) or 7 s (arm64) after qemu starts.
    init_deadline = time.monotonic() + 90
    deadline = time.monotonic() + timeout
    with open(results) as f:
        pending = ""
        while True:
            chunk = f.read()
            pending += chunk
            while "\n" in pending:
                line, pending = pending.split("\n", 1)
                line = line.rstrip("\r")
                lines.append(line)
                started = started or line.startswith("init=")
                if on_line is not None and "=" in line:
                    on_line(*line.split("=", 1))
            if qemu.poll() is not None:
                if not chunk:
                    break
                continue
            now = time.monotonic()
            if (not started and now > init_deadline) or now > deadline:
                qemu.kill()
                qemu.wait()
                if not started:
                    return _read(console)
                raise AssertionError(f"{arch.name}: guest still running after {timeout} s:\n"
                                     + Result(lines, _read(console), attempt).text())
            time.sleep(0.1)
    err = qemu.stderr.read().decode(errors="replace")
    if not started:
        if qemu.returncode not in (0, None) and "qemu" in err.lower():
            raise AssertionError(f"{arch.name}: qemu failed: {err}")
        return _read(console)
    result = Result(lines, _read(console) + err, attempt)
    assert result.last("end") is not None, f"{arch.name}: the scenario did not end:\n" + result.text()
    return result


def _read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def record(test, **figures):
    """Keeps what a scenario measured (boot times, the moment the CRNG was
    ready) in target/vm/measured.txt, one line per test and run, for the
    README's table."""
    with open(os.path.join(VM, "measured.txt"), "a") as f:
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {test} "
                + " ".join(f"{k}={v}" for k, v in figures.items()) + "\n")


def zeros(_state):
    chunk = bytes(4096)
    while True:
        yield chunk


def random_bytes(_state):
    while True:
        yield os.urandom(4096)


def zeros_until(flag):
    """Zeros until the scenario sets `state[flag]`, then random bytes."""

    def chunks(state):
        zero = bytes(4096)
        while True:
            yield os.urandom(4096) if state.get(flag) else zero

    return chunks
