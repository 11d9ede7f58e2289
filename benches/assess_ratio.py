#!/usr/bin/env python3
"""The SP 800-90B assessment against NIST's ea_non_iid, measured in one run.

On one file of 1,000,000 samples (written from a seeded generator, full
entropy, 8 bits per sample unless told otherwise):

  ea_non_iid   ea_non_iid -vvv FILE BITS, once (it takes about 25 s)
  jobs-1       random-refresher check --source FILE --estimate-every 1 --jobs 1
  jobs-C       the same with --jobs C, C = the CPUs this process may use

and prints, for each, the time the assessment took (for `check`, the
`min_entropy.seconds` it reports: the assessment alone, without the health
tests; for ea_non_iid, its user + system CPU time, since it does nothing
else), the peak resident memory of the whole process, the assessed value,
and the speed ratios. The assessed values must agree within 1e-6.

ea_non_iid is not installed by the test command (the test machines cannot
fetch NIST's repository); build it from usnistgov/SP800-90B_EntropyAssessment
(`make non_iid` in cpp/) and pass its path:

    cargo build --release
    python3 benches/assess_ratio.py --ea-non-iid PATH [--runs 5] [--bits 8]
"""
import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_measured(cmd):
    """Runs cmd with its stdout in a file; its output, wall and CPU seconds, peak RSS."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        fd = os.open(os.devnull, os.O_WRONLY)
        out = os.open(os.path.join(TMP, "out"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(out, 1)
        os.dup2(fd, 2)
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    with open(os.path.join(TMP, "out")) as f:
        out = f.read()
    code = os.waitstatus_to_exitcode(status)
    return {
        "code": code,
        "out": out,
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mib": usage.ru_maxrss / 1024,
    }


def main():
    global TMP
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ea-non-iid", default=os.environ.get("EA_NON_IID"))
    p.add_argument("--binary", default=os.path.join(ROOT, "target/release/random-refresher"))
    p.add_argument("--samples", type=int, default=1_000_000)
    p.add_argument("--bits", type=int, default=8)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    jobs = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as TMP:
        data = random.Random(90).randbytes(args.samples)
        if args.bits < 8:
            data = bytes(b & ((1 << args.bits) - 1) for b in data)
        path = os.path.join(TMP, "input.bin")
        with open(path, "wb") as f:
            f.write(data)
        rows = {}
        for label, j in [("jobs-1", 1), (f"jobs-{jobs}", jobs)]:
            times, rss, value = [], 0.0, None
            for _ in range(args.runs):
                r = run_measured([args.binary, "check", "--source", path, "--estimate-every", "1",
                                  "--bits-per-sample", str(args.bits), "--jobs", str(j), "--format", "json"])
                report = json.loads(r["out"])
                m = report["min_entropy"]
                times.append(m["seconds"])
                rss = max(rss, r["rss_mib"])
                value = m["assessed"][0]["assessed"]
            rows[label] = (statistics.median(times), rss, value)
        if args.ea_non_iid:
            r = run_measured([args.ea_non_iid, "-vvv", path, str(args.bits)])
            found = re.search(r"Assessed min entropy: (\S+)", r["out"])
            if r["code"] != 0 or not found:
                sys.exit(f"ea_non_iid failed (exit {r['code']})")
            rows["ea_non_iid"] = (r["cpu"], r["rss_mib"], float(found.group(1)))
    print(f"{args.samples} samples of {args.bits} bits, full entropy; median of {args.runs} runs for check")
    print(f"{'':12} {'seconds':>10} {'peak RSS MiB':>13} {'assessed':>20}")
    for label, (secs, rss, value) in rows.items():
        print(f"{label:12} {secs:10.3f} {rss:13.1f} {value:20.15f}")
    one = rows["jobs-1"][0]
    print(f"jobs-{jobs} vs jobs-1: {one / rows[f'jobs-{jobs}'][0]:.2f}x faster")
    if "ea_non_iid" in rows:
        nist = rows["ea_non_iid"]
        print(f"jobs-1 vs ea_non_iid: {nist[0] / one:.0f}x faster; jobs-{jobs}: {nist[0] / rows[f'jobs-{jobs}'][0]:.0f}x")
        diff = max(abs(rows[k][2] - nist[2]) for k in rows)
        print(f"largest difference in the assessed value: {diff:.2e}")
        if diff > 1e-6:
            sys.exit("the assessed values differ by more than 1e-6")
    else:
        print("ea_non_iid: not given (--ea-non-iid PATH); no ratio against it")


if __name__ == "__main__":
    main()
