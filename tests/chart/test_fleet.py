"""A simulated fleet: over a hundred daemons on loopback, one real Prometheus
scraping them all and evaluating the chart's alert rules (from `helm
template`, with short `for:` durations and a short failing-block window), and
a few named nodes given known faults (one daemon stops answering scrapes).
Exactly the faulty nodes' alerts fire, none on a healthy node; a fault that
is mended resolves; and the dashboard's worst-nodes table names the sick
nodes.

RR_BINARY, RR_HELM and RR_PROMETHEUS (else `prometheus` on PATH) tell it
where they are. It prints what the fleet costs (run pytest with -s).
"""
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest
import yaml

from test_chart import render, wait_http
from test_dashboard import (as_grafana_sends, binary, colour, dashboard, fake_sysfs, stop_processes,
                            table_columns, the_table, write_inputs)

HEALTHY = 100
FOR = "5s"
# Short durations for every alert, as a test may set them.
SETS = ["prometheusRule.enabled=true", "prometheusRule.kubeStateMetrics=false", "refresher.interval=1s",
        "prometheusRule.failingBlockWindow=1m",
        *(f"prometheusRule.for.{k}={FOR}" for k in
          ["healthTestsFailing", "sourceDown", "hwrngQuarantined", "entropyEstimateLow", "crngNotReady",
           "noRefresh", "targetDown", "notReady", "daemonSetIncomplete"])]
# The labels the Prometheus Operator gives each target, as the chart renders
# them (release rr in namespace hwrng).
NAMESPACE, POD_PREFIX = "hwrng", "rr-random-refresher-"

# The faulty nodes and the alerts each must raise (a node that delivers
# nothing also stops refreshing).
STUCK, VANISHED, QUARANTINED, WEAK, SILENT = "node-stuck", "node-vanished", "node-quarantined", "node-weak", "node-silent"
# A daemon stopped (SIGSTOP) once scraped: hung, it answers no scrape.
STOPPED = "node-stopped"
EXPECTED = {
    (STUCK, "RandomRefresherHealthTestsFailing"), (STUCK, "RandomRefresherSourceDown"),
    (STUCK, "RandomRefresherNoRefresh"),
    (VANISHED, "RandomRefresherSourceDown"),
    (QUARANTINED, "RandomRefresherHealthTestsFailing"), (QUARANTINED, "RandomRefresherSourceDown"),
    (QUARANTINED, "RandomRefresherHwrngQuarantined"), (QUARANTINED, "RandomRefresherNoRefresh"),
    (WEAK, "RandomRefresherEntropyEstimateLow"),
    (SILENT, "RandomRefresherNoRefresh"), (SILENT, "RandomRefresherSourceDown"),
    # Its own series went stale with the first failed scrape: no other alert.
    (STOPPED, "RandomRefresherTargetDown"),
}
FIRE_SECONDS = 100
RESOLVE_SECONDS = 40


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sim:
    def __init__(self, url):
        self.url = url

    def get(self, path, **params):
        with urllib.request.urlopen(f"{self.url}{path}?" + urllib.parse.urlencode(params), timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", (path, params, body)
        return body["data"]

    def query(self, expr):
        return self.get("/api/v1/query", query=expr)["result"]

    def scalar(self, expr):
        r = self.query(expr)
        return float(r[0]["value"][1]) if r else 0.0

    def firing(self):
        """(node, alert) for each firing alert; an alert on `up` has the
        target's pod label instead of the daemon's node label."""
        def node(labels):
            return labels.get("node") or labels.get("pod", "").removeprefix(POD_PREFIX)
        return {(node(a["labels"]), a["labels"]["alertname"])
                for a in self.get("/api/v1/alerts")["alerts"] if a["state"] == "firing"}


def distinct_ports(names):
    """A free port for each name, no two the same (each socket held until all are bound)."""
    with contextlib.ExitStack() as stack:
        socks = {}
        for name in names:
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            socks[name] = sock
        return {name: sock.getsockname()[1] for name, sock in socks.items()}


def rules_file(path):
    docs = render(sets=SETS)
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    fors = {r["alert"]: r["for"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(fors.values()) == {FOR}, fors
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    return path


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    prometheus = os.environ.get("RR_PROMETHEUS") or shutil.which("prometheus") or pytest.fail("no prometheus")
    tmp = tmp_path_factory.mktemp("sim")
    rules = rules_file(tmp / "rules.yaml")
    # Tested bytes, so no healthy node fails a block: 2500 bytes a second
    # for four minutes, and some.
    good, weak, zeros = write_inputs(tmp, 1_000_000, 8_000_000)
    silent, vanishing = (str(tmp / n) for n in ("silent.fifo", "vanishing.fifo"))
    os.mkfifo(silent)
    os.mkfifo(vanishing)
    fast = ["--sink", "stdout", "--interval", "1s", "--read-timeout", "1s", "--retry-initial", "1s",
            "--retry-max", "2s", "--max-failed-cycles", "100000"]
    off = ["--estimate-every", "off"]
    quarantine = ["--quarantine-hwrng", "--hwrng", zeros, "--sys-root", fake_sysfs(str(tmp / "sys")),
                  "--state-dir", str(tmp / "state")]
    nodes = {f"node-{i:03d}": ["--source", good, *off] for i in range(HEALTHY)}
    # Healthy too: sources this machine does not have, before and after a good one.
    nodes["node-000"] = ["--source", "rndrrs", "--source", good, *off]
    nodes["node-001"] = ["--source", good, "--source", str(tmp / "no-such-device"), *off]
    nodes.update({
        STUCK: ["--source", zeros, *off],
        # A FIFO whose writer goes away; the good file behind it keeps the node refreshing.
        VANISHED: ["--source", vanishing, "--source", good, *off],
        QUARANTINED: ["--source", zeros, *off, *quarantine],
        # Passes the health tests, assessed near 3 bits per byte.
        WEAK: ["--source", weak, "--estimate-window", "64KiB", "--batch-size", "65000"],
        # A FIFO with a writer that never writes: nothing delivered.
        SILENT: ["--source", silent, *off],
        STOPPED: ["--source", good, *off],
    })
    ports = distinct_ports(list(nodes) + ["prometheus"])
    prom_port = ports.pop("prometheus")
    with contextlib.ExitStack() as stack:
        silent_writer = os.open(silent, os.O_RDWR)
        stack.callback(os.close, silent_writer)
        vanishing_writer = os.open(vanishing, os.O_RDWR)
        feeder = subprocess.Popen(["cat", good], stdout=vanishing_writer)
        os.close(vanishing_writer)
        sink = stack.enter_context(open(os.devnull, "wb"))  # write-only, as a shell's >/dev/null
        procs = {}

        def stop_all():
            stop_processes([feeder, *procs.values()])
        stack.callback(stop_all)
        logs = tmp / "logs"
        logs.mkdir()
        for name, args in nodes.items():
            with open(logs / f"{name}.log", "wb") as log:
                procs[name] = subprocess.Popen(
                    [binary(), "run", *fast, *args, "--metrics-label", f"node={name}",
                     "--listen-address", f"127.0.0.1:{ports[name]}"], stdout=sink, stderr=log)
        config = tmp / "prometheus.yml"
        config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [{"job_name": "random-refresher", "static_configs": [
                {"targets": [f"127.0.0.1:{p}"], "labels": {"namespace": NAMESPACE, "pod": POD_PREFIX + name}}
                for name, p in ports.items()]}],
        }))
        with open(tmp / "prometheus.log", "wb") as log:
            procs["prometheus"] = subprocess.Popen(
                [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
                stdout=subprocess.DEVNULL, stderr=log)
        url = f"http://127.0.0.1:{prom_port}"
        wait_http(f"{url}/-/ready", seconds=30)
        s = Sim(url)
        s.tmp, s.procs, s.nodes, s.silent_writer, s.good = tmp, procs, set(nodes), silent_writer, good
        s.started = time.time()
        deadline = time.time() + 40
        while s.scalar('count(up{job="random-refresher"} == 1)') != len(nodes):
            if time.time() > deadline:
                pytest.fail(f"not all {len(nodes)} daemons up: {s.query('count(up == 1)')} {s.query('up == 0')}")
            time.sleep(1)
        # The source goes away at a known time: its writer ends. And one
        # daemon hangs.
        feeder.kill()
        feeder.wait()
        procs[STOPPED].send_signal(signal.SIGSTOP)
        yield s


def wait_for(what, check, seconds):
    deadline = time.time() + seconds
    while True:
        ok, got = check()
        if ok:
            return got
        if time.time() > deadline:
            pytest.fail(f"{what} not within {seconds} s: {got}")
        time.sleep(1)


def report(sim):
    daemons = [p.pid for n, p in sim.procs.items() if n != "prometheus"]
    rss = sorted(rss_kib(pid) for pid in daemons)
    prom = sim.procs["prometheus"].pid
    series = sim.scalar('count({__name__=~".+"})')
    print(f"\nfleet: {len(daemons)} daemons, {series:.0f} series, "
          f"Prometheus RSS {rss_kib(prom) / 1024:.0f} MiB, CPU {cpu_seconds(prom):.1f} s "
          f"in {time.time() - sim.started:.0f} s; daemon RSS median {rss[len(rss) // 2] / 1024:.1f} MiB, "
          f"max {rss[-1] / 1024:.1f} MiB, CPU {sum(cpu_seconds(p) for p in daemons):.1f} s all together")


def test_exactly_the_faulty_nodes_alert_and_a_mended_one_resolves(sim):
    healthy = sim.nodes - {n for n, _ in EXPECTED}
    assert len(healthy) >= HEALTHY - 1 and len(sim.nodes) > 100

    def all_fire():
        got = sim.firing()
        return got >= EXPECTED, got
    wait_for("the faulty nodes' alerts", all_fire, FIRE_SECONDS)
    # And for a few more evaluations, nothing else.
    for _ in range(5):
        got = sim.firing()
        assert got == EXPECTED, {"missing": EXPECTED - got, "extra": got - EXPECTED}
        time.sleep(1)
    assert not {n for n, _ in sim.firing()} & healthy

    # The worst-nodes table, on the same Prometheus, names the sick nodes,
    # the one whose failover source keeps it refreshing among them.
    columns = table_columns(the_table(dashboard()))
    values = {}
    for name, (expr, _) in columns.items():
        result = sim.query(as_grafana_sends(expr))
        values[name] = {r["metric"].get("node", ""): float(r["value"][1]) for r in result}
    red = {name: {n for n, v in values[name].items() if colour(columns[name][1], v) == "red"} for name in columns}
    assert red["Problems"] == {STUCK, VANISHED, QUARANTINED, WEAK, SILENT}, red
    assert red["Sources down"] == {STUCK, VANISHED, QUARANTINED, SILENT}, red
    assert red["Failing blocks (1h)"] == {STUCK, QUARANTINED}, red
    assert red["Quarantined"] == {QUARANTINED}, red
    assert red["Below claimed min-entropy"] == {WEAK}, red
    assert red["Since last refresh"] == {STUCK, QUARANTINED, SILENT}, red
    # Every node has a row. The stopped one may keep its row, from the hour
    # of samples the failing-blocks column looks back over, and it is not red.
    assert sim.nodes - {STOPPED} <= set(values["Problems"]) <= sim.nodes
    report(sim)

    # Mend the silent node: good bytes into its FIFO.
    def feed():
        with open(sim.good, "rb") as f, contextlib.suppress(OSError):
            while chunk := f.read(65536):
                os.write(sim.silent_writer, chunk)
    threading.Thread(target=feed, daemon=True).start()
    # And let the hung daemon go on.
    sim.procs[STOPPED].send_signal(signal.SIGCONT)

    def resolved():
        got = sim.firing()
        return not {a for a in got if a[0] in (SILENT, STOPPED)}, got
    wait_for("the mended nodes' alerts resolving", resolved, RESOLVE_SECONDS)
    got = sim.firing()
    assert got == EXPECTED - {(SILENT, "RandomRefresherNoRefresh"), (SILENT, "RandomRefresherSourceDown"),
                              (STOPPED, "RandomRefresherTargetDown")}, got
    report(sim)
