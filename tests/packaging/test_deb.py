"""The Debian package and its systemd unit: built from the release binary
with cargo-deb, its contents inspected, extracted into a clean folder and
run, the unit verified and scored by systemd-analyze."""
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = os.path.join(ROOT, "packaging", "random-refresher.service")
EARLY = os.path.join(ROOT, "packaging", "random-refresher-early.service")


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    out = tmp_path_factory.mktemp("deb")
    p = subprocess.run(["cargo", "run", "-q", "--release", "--example", "gen-assets", "--", "target/assets"],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    p = subprocess.run(["cargo", "deb", "--no-build", "--output", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    (path,) = out.glob("random-refresher_*.deb")
    return path


def test_the_package_holds_the_binary_the_unit_and_the_default_config(deb):
    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True, check=True).stdout
    for path in ["./usr/bin/random-refresher", "./lib/systemd/system/random-refresher.service",
                 "./etc/default/random-refresher", "./usr/share/doc/random-refresher/examples/kernel-sink.conf",
                 "./usr/share/man/man1/random-refresher.1", "./usr/share/bash-completion/completions/random-refresher",
                 "./usr/share/zsh/vendor-completions/_random-refresher",
                 "./usr/share/fish/vendor_completions.d/random-refresher.fish",
                 "./lib/systemd/system/random-refresher-early.service",
                 "./usr/libexec/random-refresher/wait-for-hwrng",
                 "./usr/share/initramfs-tools/hooks/random-refresher",
                 "./usr/share/initramfs-tools/scripts/init-premount/random-refresher"]:
        assert path in listing, f"{path} missing:\n{listing}"
    # initramfs-tools runs hooks and boot scripts only if executable.
    for path in ["./usr/libexec/random-refresher/wait-for-hwrng", "./usr/share/initramfs-tools/hooks/random-refresher",
                 "./usr/share/initramfs-tools/scripts/init-premount/random-refresher"]:
        assert re.search(rf"^-rwxr-xr-x .* {re.escape(path)}$", listing, re.M), listing
    conffiles = subprocess.run(["dpkg-deb", "--ctrl-tarfile", deb], capture_output=True, check=True).stdout
    assert b"conffiles" in conffiles


def test_the_package_holds_the_readme_and_every_document_it_links_to(deb):
    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True, check=True).stdout
    readme = open(os.path.join(ROOT, "README.md")).read()
    linked = sorted(set(re.findall(r"\]\((docs/[\w.-]+\.md)", readme)))
    assert len(linked) >= 10, linked
    for doc in ["README.md"] + linked:
        assert f"./usr/share/doc/random-refresher/{doc}" in listing, f"{doc} missing:\n{listing}"


def control_fields(deb):
    text = subprocess.run(["dpkg-deb", "-f", deb], capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"^(\S+): (.*)$", text, re.M))


def test_the_control_fields_name_a_maintainer_and_conflict_with_no_package(deb):
    fields = control_fields(deb)
    # rng-tools5 and rng-tools-debian ship rngtest, which an operator
    # compares this daemon with: the package must not remove them. Their
    # rngd is kept from running beside it by the unit (Conflicts=).
    for field in ["Conflicts", "Breaks", "Replaces"]:
        assert field not in fields, fields
    # Debian policy 5.6.2: a name and an e-mail address. The address is a
    # placeholder under the reserved .invalid domain, and says so.
    assert fields["Maintainer"] == "random-refresher developers <maintainers@random-refresher.invalid>", fields
    assert re.fullmatch(r"[^<>]+ <[^@<>\s]+@[^@<>\s]+\.[a-z]+>", fields["Maintainer"])


# The rngd packages as Debian bookworm's status file holds them (their
# control fields, from the packages).
RNGD_PACKAGES = {
    "rng-tools5": "Version: 5-4.1\nConflicts: rng-tools\n",
    "rng-tools-debian": ("Version: 2.3\nConflicts: intel-rng-tools\nBreaks: rng-tools (>= 5migratf), rng-tools (<< 5migrate)\n"
                         "Replaces: intel-rng-tools, rng-tools\nProvides: intel-rng-tools, rng-tools (= 2.3)\n"),
}


def dpkg_dry_run_install(deb, tmp_path, installed):
    """`dpkg --dry-run --install` into a scratch root whose status holds
    libc6 and the given {package: fields}: dpkg's own dependency and
    conflict checks, leaving the machine's dpkg database alone."""
    admin = tmp_path / "root/var/lib/dpkg"
    for sub in ["info", "updates", "triggers"]:
        (admin / sub).mkdir(parents=True)
    (admin / "available").write_text("")
    stanzas = []
    for name, fields in {"libc6": "Version: 2.36-9+deb12u10\nMulti-Arch: same\n", **installed}.items():
        stanzas.append(f"Package: {name}\nStatus: install ok installed\nArchitecture: amd64\n{fields}"
                       "Maintainer: Debian <debian@example.invalid>\nDescription: stand-in\n")
        (admin / "info" / f"{name}{':amd64' if name == 'libc6' else ''}.list").write_text("")
    (admin / "status").write_text("\n".join(stanzas))
    return subprocess.run(["dpkg", f"--root={tmp_path / 'root'}", "--dry-run", "--install", str(deb)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("other", RNGD_PACKAGES)
def test_the_package_installs_beside_rngtests_package(deb, tmp_path, other):
    p = dpkg_dry_run_install(deb, tmp_path / "beside", {other: RNGD_PACKAGES[other]})
    assert p.returncode == 0, p.stdout + p.stderr
    # The check is not a rubber stamp: a package that conflicts is refused.
    p = dpkg_dry_run_install(deb, tmp_path / "refused", {other: RNGD_PACKAGES[other],
                                                         "stand-in": "Version: 1\nConflicts: random-refresher\n"})
    assert p.returncode != 0 and "conflict" in p.stderr, p.stdout + p.stderr


def unit_values(path, section, key):
    values, current = [], None
    for line in open(path).read().splitlines():
        line = line.strip()
        if line.startswith("["):
            current = line
        elif current == f"[{section}]" and line.startswith(f"{key}="):
            values += line.split("=", 1)[1].split()
    return values


def test_the_unit_conflicts_with_rngd_under_each_of_its_names(deb, tmp_path):
    subprocess.run(["dpkg-deb", "-x", deb, tmp_path], check=True)
    conflicts = set(unit_values(tmp_path / "lib/systemd/system/random-refresher.service", "Unit", "Conflicts"))
    # rng-tools5 ships rngd.service; rng-tools-debian ships only an init
    # script, /etc/init.d/rng-tools-debian (LSB Provides: rng-tools-debian
    # rng-tools), which systemd-sysv-generator turns into
    # rng-tools-debian.service aliased rng-tools.service, the older
    # packages' name.
    assert conflicts == {"rngd.service", "rng-tools-debian.service", "rng-tools.service"}, conflicts
    listing = subprocess.run(["dpkg-query", "-L", "rng-tools5"], capture_output=True, text=True)
    if listing.returncode == 0:  # tests/setup.sh installs it, for rngtest
        units = {os.path.basename(f) for f in listing.stdout.split() if re.match(r"^(/usr)?/lib/systemd/system/.*\.service$", f)}
        assert units and units <= conflicts, units
    # Not the early unit: a oneshot at boot, done before rngd starts.
    early = set(unit_values(tmp_path / "lib/systemd/system/random-refresher-early.service", "Unit", "Conflicts"))
    assert not conflicts & early, early


# Stand-ins for systemctl and deb-systemd-invoke: they record their calls.
RECORDER = '#!/bin/sh\necho "$(basename "$0") $*" >>"$RR_CALLS"\n'


class Maintscripts:
    """The package's maintainer scripts run as dpkg runs them, against a
    scratch root holding the package's files (DPKG_ROOT, which the real
    deb-systemd-helper honours, keeping its links and state there).
    systemctl and deb-systemd-invoke are stand-ins that record their calls.
    Each script runs in a mount namespace of its own with a fresh /run, so
    that /run/systemd/system exists (a machine running systemd) or not (a
    chroot) whatever this machine runs."""

    def __init__(self, deb, tmp_path, systemd):
        self.root, self.control, self.bin = tmp_path / "root", tmp_path / "control", tmp_path / "bin"
        subprocess.run(["dpkg-deb", "-x", deb, self.root], check=True)
        subprocess.run(["dpkg-deb", "-e", deb, self.control], check=True)
        self.bin.mkdir()
        for tool in ["systemctl", "deb-systemd-invoke"]:
            (self.bin / tool).write_text(RECORDER)
            (self.bin / tool).chmod(0o755)
        self.calls = tmp_path / "calls"
        self.systemd = systemd

    def run(self, script, *args):
        """Runs one script with dpkg's arguments; returns the calls recorded."""
        self.calls.write_text("")
        setup = "mount -t tmpfs tmpfs /run" + (" && mkdir -p /run/systemd/system" if self.systemd else "")
        env = {"PATH": f"{self.bin}:/usr/sbin:/usr/bin:/sbin:/bin", "DPKG_ROOT": str(self.root),
               "DPKG_MAINTSCRIPT_PACKAGE": "random-refresher", "DPKG_MAINTSCRIPT_NAME": script,
               "RR_CALLS": str(self.calls)}
        p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            f'{setup} && exec sh "$0" "$@"', str(self.control / script), *args],
                           env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert p.returncode == 0, f"{script} {args}: {p.stdout}{p.stderr}"
        return self.calls.read_text().splitlines()

    def link(self, path):
        """Where a link under the root points, or None."""
        full = self.root / path
        return os.readlink(full) if os.path.islink(full) else None


DAEMON_WANTS = "etc/systemd/system/multi-user.target.wants/random-refresher.service"
EARLY_WANTS = "etc/systemd/system/sysinit.target.wants/random-refresher-early.service"
RELOAD = "systemctl --system daemon-reload"


def test_the_maintainer_scripts_enable_start_restart_stop_and_forget_the_units(deb, tmp_path):
    m = Maintscripts(deb, tmp_path, systemd=True)
    # A first install enables both units and starts the daemon (not the
    # early unit: it belongs to the next boot).
    assert m.run("postinst", "configure", "") == [RELOAD, "deb-systemd-invoke start random-refresher.service"]
    assert m.link(DAEMON_WANTS) == "/lib/systemd/system/random-refresher.service"
    assert m.link(EARLY_WANTS) == "/lib/systemd/system/random-refresher-early.service"
    # An upgrade leaves the daemon running until postinst restarts it.
    assert m.run("prerm", "upgrade", "0.1.1") == []
    assert m.run("postinst", "configure", "0.1.0") == [RELOAD, "deb-systemd-invoke restart random-refresher.service"]
    # An administrator's `systemctl disable` sticks across upgrades (and
    # deb-systemd-invoke does not restart a disabled unit).
    os.remove(m.root / DAEMON_WANTS)
    m.run("postinst", "configure", "0.1.0")
    assert m.link(DAEMON_WANTS) is None and m.link(EARLY_WANTS)
    # Removal stops the daemon, then, its files gone, masks both units.
    assert m.run("prerm", "remove") == ["deb-systemd-invoke stop random-refresher.service"]
    for unit in ["random-refresher.service", "random-refresher-early.service"]:
        os.remove(m.root / "lib/systemd/system" / unit)
    assert m.run("postrm", "remove") == [RELOAD]
    assert m.link("etc/systemd/system/random-refresher.service") == "/dev/null"
    assert m.link("etc/systemd/system/random-refresher-early.service") == "/dev/null"
    # Purge forgets the masks, the links and deb-systemd-helper's state.
    m.run("postrm", "purge")
    left = [str(p.relative_to(m.root)) for p in (m.root / "etc/systemd").rglob("*")] if (m.root / "etc/systemd").exists() else []
    left += [str(p.relative_to(m.root)) for p in (m.root / "var/lib/systemd").rglob("*")] if (m.root / "var/lib/systemd").exists() else []
    assert not [p for p in left if "random-refresher" in p], left


def test_the_maintainer_scripts_start_nothing_where_systemd_does_not_run(deb, tmp_path):
    # A chroot or an image build: the units are enabled for the first boot,
    # nothing is started or stopped.
    m = Maintscripts(deb, tmp_path, systemd=False)
    assert m.run("postinst", "configure", "") == []
    assert m.link(DAEMON_WANTS) and m.link(EARLY_WANTS)
    assert m.run("prerm", "remove") == []


def test_the_package_enables_the_early_unit_and_rebuilds_the_initramfs(deb, tmp_path):
    subprocess.run(["dpkg-deb", "-e", deb, tmp_path], check=True)
    postinst = (tmp_path / "postinst").read_text()
    assert "deb-systemd-helper enable" in postinst and "random-refresher-early.service" in postinst
    assert "deb-systemd-helper purge" in (tmp_path / "postrm").read_text()
    triggers = [line for line in (tmp_path / "triggers").read_text().splitlines() if line and not line.startswith("#")]
    assert triggers == ["activate-noawait update-initramfs"], triggers


def test_the_shell_scripts_parse(deb, tmp_path):
    # dash: initramfs-tools runs hooks with it and boot scripts with klibc's
    # sh, a dash too; the maintainer scripts and wait-for-hwrng run as /bin/sh.
    subprocess.run(["dpkg-deb", "-x", deb, tmp_path / "x"], check=True)
    subprocess.run(["dpkg-deb", "-e", deb, tmp_path / "c"], check=True)
    for script in [tmp_path / "x/usr/libexec/random-refresher/wait-for-hwrng",
                   tmp_path / "x/usr/share/initramfs-tools/hooks/random-refresher",
                   tmp_path / "x/usr/share/initramfs-tools/scripts/init-premount/random-refresher",
                   tmp_path / "c/postinst", tmp_path / "c/prerm", tmp_path / "c/postrm"]:
        p = subprocess.run(["dash", "-n", script], capture_output=True, text=True)
        assert p.returncode == 0, f"{script}: {p.stderr}"
    # A boot script answers initramfs-tools' prereqs query and does nothing else.
    p = subprocess.run(["dash", tmp_path / "x/usr/share/initramfs-tools/scripts/init-premount/random-refresher", "prereqs"],
                       capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == "", p.stdout + p.stderr


def test_the_extracted_binary_runs(deb, tmp_path):
    subprocess.run(["dpkg-deb", "-x", deb, tmp_path], check=True)
    p = subprocess.run([tmp_path / "usr/bin/random-refresher", "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "check" in p.stdout, p.stderr
    # The default file sets nothing: EnvironmentFile= overrides every
    # Environment=, so a line shipped there would hide the drop-ins' (the
    # kernel sink's). The default sink is the unit's.
    default = (tmp_path / "etc/default/random-refresher").read_text()
    assert [line for line in default.splitlines() if line.strip() and not line.startswith("#")] == [], default
    assert "#RANDOM_REFRESHER_SINK=mix" in default
    unit = (tmp_path / "lib/systemd/system/random-refresher.service").read_text()
    assert "Environment=RANDOM_REFRESHER_SINK=mix" in unit.splitlines()
    # The man page and completions come from the command line's definition.
    page = next((tmp_path / "usr/share/man/man1").glob("random-refresher.1*"))
    roff = subprocess.run(["zcat", "-f", page], capture_output=True, text=True, check=True).stdout
    text = roff.replace("\\-", "-")
    assert ".TH random-refresher" in text and "--quarantine-hwrng" in text and "--estimate-window" in text
    bash = (tmp_path / "usr/share/bash-completion/completions/random-refresher").read_text()
    assert "complete -F" in bash and "random-refresher" in bash and "quarantine" in bash


@pytest.mark.parametrize("source", [UNIT, EARLY], ids=os.path.basename)
def test_the_unit_verifies_with_no_warning(deb, tmp_path, source):
    analyze = shutil.which("systemd-analyze") or pytest.fail("no systemd-analyze")
    subprocess.run(["dpkg-deb", "-x", deb, tmp_path], check=True)
    # Verified as installed, with the commands pointing at the extracted files.
    text = open(source).read()
    for path in ["/usr/bin/random-refresher", "/usr/libexec/random-refresher/wait-for-hwrng"]:
        text = text.replace(f"={path}", f"={tmp_path}{path}").replace(f"=-{path}", f"=-{tmp_path}{path}")
    unit = tmp_path / os.path.basename(source)
    unit.write_text(text)
    p = subprocess.run([analyze, "verify", "--man=no", unit], capture_output=True, text=True)
    assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), p.stdout + p.stderr
    # The check is not a rubber stamp.
    unit.write_text(re.sub(r"^Type=.*$", "Type=bogus", text, flags=re.M))
    p = subprocess.run([analyze, "verify", "--man=no", unit], capture_output=True, text=True)
    assert "Type" in p.stderr or "type" in p.stderr, p.stderr


def exposure(unit):
    analyze = shutil.which("systemd-analyze") or pytest.fail("no systemd-analyze")
    p = subprocess.run([analyze, "security", "--offline=true", unit], capture_output=True, text=True)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", p.stdout)
    assert m, p.stdout + p.stderr
    return float(m.group(1))


@pytest.mark.parametrize("source", [UNIT, EARLY], ids=os.path.basename)
def test_the_unit_is_locked_down_to_an_exposure_of_at_most_2(tmp_path, source):
    assert exposure(source) <= 2.0
    # Loosened, it scores worse: the number is measured, not assumed.
    loose = tmp_path / os.path.basename(source)
    loose.write_text(re.sub(r"^(Protect|Restrict|Private|SystemCall|CapabilityBoundingSet).*\n", "", open(source).read(), flags=re.M))
    assert exposure(loose) > 5.0


def test_the_unit_starts_and_serves_healthz_where_systemd_runs_the_machine(deb, tmp_path):
    if open("/proc/1/comm").read().strip() != "systemd":
        pytest.skip("PID 1 is not systemd on this machine: the unit is verified and scored, not started")
    import time
    import urllib.request
    subprocess.run(["dpkg-deb", "-x", deb, tmp_path], check=True)
    unit = open(UNIT).read().replace("ExecStart=/usr/bin/random-refresher run",
                                     f"ExecStart={tmp_path}/usr/bin/random-refresher run --listen-address 127.0.0.1:19742")
    path = "/run/systemd/system/random-refresher-test.service"
    open(path, "w").write(unit)
    try:
        subprocess.run(["systemctl", "daemon-reload"], check=True)
        subprocess.run(["systemctl", "start", "random-refresher-test"], check=True, timeout=120)
        deadline = time.time() + 60
        while True:
            try:
                assert urllib.request.urlopen("http://127.0.0.1:19742/healthz", timeout=5).status == 200
                break
            except OSError:
                assert time.time() < deadline
                time.sleep(1)
    finally:
        subprocess.run(["systemctl", "stop", "random-refresher-test"])
        os.remove(path)
        subprocess.run(["systemctl", "daemon-reload"])
