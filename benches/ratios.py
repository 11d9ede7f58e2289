#!/usr/bin/env python3
"""Health testing as ratios measured in one run on one machine.

On one input file (50 MB by default, written from a seeded generator and
read once so that it is in the page cache), alternating, for --runs rounds:

  rngtest      rngtest -c N < FILE (rng-tools-debian's, with the runs fix,
               from target/tools/rngtest-fixed; else rngtest on PATH)
  jobs-1       random-refresher check --source FILE --blocks N --jobs 1 --estimate-every off
  jobs-C       the same with --jobs C, C = the CPUs this process may use
  limit        examples/read-popcount: the same reads, popcounted, nothing else
  machine-C    C independent `check --jobs 1` processes at once, each on the
               whole file: how far this machine itself scales to C busy cores

and prints the median wall time of each (whole processes) and the ratios:
jobs-1 vs rngtest, jobs-1 vs limit, jobs-C vs jobs-1, and machine-C (the
throughput of C independent processes against one), which bounds jobs-C.
Counts must equal rngtest's, and the jobs-C report the jobs-1 report.

    bash tests/setup.sh     # once, for target/tools/rngtest-fixed
    python3 benches/ratios.py [--blocks 20000] [--runs 7]
"""
import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIPS = {"successes": "fips_successes", "failures": "fips_failures", "monobit": "monobit",
        "poker": "poker", "runs": "runs", "long_run": "long_run", "continuous_run": "continuous_run"}
LABELS = {"successes": "FIPS 140-2 successes", "failures": "FIPS 140-2 failures",
          "monobit": "Monobit", "poker": "Poker", "runs": "Runs", "long_run": "Long run",
          "continuous_run": "Continuous run"}


def wall(cmds, stdin_path=None):
    """Runs the commands at once; the wall time until the last ends, and each result."""
    start = time.perf_counter()
    procs = []
    for cmd in cmds:
        stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
        procs.append(subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outs = [p.communicate() for p in procs]
    return time.perf_counter() - start, outs


def rngtest_counts(stderr):
    out = {}
    for key, label in LABELS.items():
        m = re.search(re.escape(label) + r": (\d+)", stderr)
        out[key] = int(m.group(1)) if m else None
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=7)
    fixed = os.path.join(ROOT, "target/tools/rngtest-fixed")
    ap.add_argument("--rngtest", default=fixed if os.path.exists(fixed) else shutil.which("rngtest"))
    args = ap.parse_args()

    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "random-refresher",
                    "--example", "read-popcount"], cwd=ROOT, check=True)
    binary = os.path.join(ROOT, "target/release/random-refresher")
    limit = os.path.join(ROOT, "target/release/examples/read-popcount")
    cpus = len(os.sched_getaffinity(0))
    size = 4 + args.blocks * 2500
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "input.bin")
        with open(path, "wb") as f:
            f.write(random.Random(20261126).randbytes(size))
        with open(path, "rb") as f:
            f.read()
        # The rngtest-equivalent run: no min-entropy assessment
        # (benches/assess_ratio.py measures that against NIST's tool).
        check = [binary, "check", "--source", path, "--blocks", str(args.blocks), "--format", "json",
                 "--estimate-every", "off"]
        plans = {
            "jobs-1": [check + ["--jobs", "1"]],
            f"jobs-{cpus}": [check + ["--jobs", str(cpus)]],
            "limit": [[limit, path, str(size)]],
            f"machine-{cpus}": [check + ["--jobs", "1"]] * cpus,
        }
        if args.rngtest:
            plans = {"rngtest": [[args.rngtest, "-c", str(args.blocks)]], **plans}
        times = {name: [] for name in plans}
        reports = {}
        for _ in range(args.runs):
            for name, cmds in plans.items():
                t, outs = wall(cmds, stdin_path=path if name == "rngtest" else None)
                times[name].append(t)
                reports[name] = outs[0]
        one = json.loads(reports["jobs-1"][0])
        many = json.loads(reports[f"jobs-{cpus}"][0])
        for r in (one, many):
            r.pop("seconds")
        if one != many:
            sys.exit(f"--jobs {cpus} report differs from --jobs 1:\n{many}\n{one}")
        if args.rngtest:
            theirs = rngtest_counts(reports["rngtest"][1])
            ours = {k: one[v] for k, v in FIPS.items()}
            if ours != theirs and os.path.basename(args.rngtest) == "rngtest-fixed":
                sys.exit(f"counts differ: rngtest {theirs}, check {ours}")

    med = {name: statistics.median(ts) for name, ts in times.items()}
    mb = size / 1e6
    print(f"input: {mb:.0f} MB ({args.blocks} blocks), {args.runs} rounds alternating, "
          f"{cpus} CPUs, rngtest = {args.rngtest or 'none'}")
    for name, ts in times.items():
        n = cpus if name.startswith("machine") else 1
        print(f"  {name:<10} median {med[name]:8.4f} s  ({n * mb / med[name]:8.1f} MB/s)"
              f"  min {min(ts):.4f}  max {max(ts):.4f}")
    print("ratios (medians of whole-process wall times):")
    j1, jn = med["jobs-1"], med[f"jobs-{cpus}"]
    if args.rngtest:
        r = med["rngtest"] / j1
        print(f"  jobs-1 vs rngtest        {r:7.1f}x   (target >= 100x: {'met' if r >= 100 else 'missed'})")
    r = med["limit"] / j1
    print(f"  jobs-1 vs limit          {r:7.1%}   (target >= 40%: {'met' if r >= 0.4 else 'missed'})")
    r = j1 / jn
    print(f"  jobs-{cpus} vs jobs-1         {r:7.2f}x   (target >= 1.8x on 2 cores: {'met' if r >= 1.8 else 'missed'})")
    machine = cpus * j1 / med[f"machine-{cpus}"]
    print(f"  machine-{cpus} vs one process {machine:7.2f}x   (this machine's own scaling: the bound for jobs-{cpus})")


if __name__ == "__main__":
    main()
