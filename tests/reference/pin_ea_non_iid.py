#!/usr/bin/env python3
"""Pins NIST's SP 800-90B non-IID figures as the fixture tests/reference/ea_non_iid.json.

This script is the provenance of those figures. It runs only where NIST's tool
is built (usnistgov/SP800-90B_EntropyAssessment, cpp/, `make non_iid`); the
tests never run it, they only read the JSON it wrote.

For every input (the kinds listed in tests/reference/inputs.rs, read from its
KINDS table (its `kind(small, large, bits, ...)` rows), at 65,536 and 1,000,000 samples, then the real hwrng capture
hwrng-64k / hwrng-1m) it expects INPUT_DIR/NAME.bin, runs, one at a time and
in INPUT_DIR,

    TOOL -vv NAME.bin BITS > NAME.bin.out

and parses that output. `-vv` is verbosity level 3 (the tool's counter starts
at 1), the only level at which every estimator prints its figures with %.17g;
at -vvv only the final H values are printed. The input named by --time-input is
run under `/usr/bin/time -v` (report in NAME.bin.time) for its CPU seconds and
peak RSS.

Each figure is copied into the JSON exactly as the tool printed it (the %.17g
text, a number that reads back to the very double NIST computed). A track's
estimator is null where the tool printed no figure for it: the tool skips the
collision, Markov and compression estimators on a literal track with more
than 2 symbols, and prints nothing when an estimator declines (too few
samples, no tuple seen 35 times, v < u for LRS). The bitstring track (the low
BITS bits of each sample, MSB first) exists only when the literal alphabet has
more than 2 symbols. The script checks that H_original, H_bitstring and the
assessed value the tool printed are the minima of the figures it parsed, as in
non_iid_main.cpp.

--reuse parses an existing NAME.bin.out instead of running the tool again,
but only if the SHA-256 the tool printed in it is that of NAME.bin.

Stdlib only. Run as it was run for the committed fixture:

    python3 tests/reference/pin_ea_non_iid.py /work/nist/ea_non_iid /work/nist/inputs \\
        --commit 68ed165fd7a3eeef26b87a546ba23f338e82a3f3 \\
        --compiler "g++ (Debian 12.2.0-14+deb12u1) 12.2.0, -std=c++11 -fopenmp -O2 -ffloat-store -msse2 -march=native" \\
        --out tests/reference/ea_non_iid.json
"""
import argparse
import hashlib
import math
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# Estimator name as the tool prints it -> fixture key, in the order of §6.3.
ESTIMATORS = [
    ("Most Common Value Estimate", "mcv"),
    ("Collision Estimate", "collision"),
    ("Markov Estimate", "markov"),
    ("Compression Estimate", "compression"),
    ("t-Tuple Estimate", "t_tuple"),
    ("LRS Estimate", "lrs"),
    ("MultiMCW Prediction Estimate", "multi_mcw"),
    ("Lag Prediction Estimate", "lag"),
    ("MultiMMC Prediction Estimate", "multi_mmc"),
    ("LZ78Y Prediction Estimate", "lz78y"),
]
KEY_OF = dict(ESTIMATORS)
PREDICTORS = ("multi_mcw", "lag", "multi_mmc", "lz78y")
NUMBER = re.compile(r"^-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")


class Raw:
    """A number kept as the exact text the tool printed."""

    def __init__(self, text):
        if not NUMBER.match(text):
            raise ValueError("not a JSON number: %r" % text)
        self.text = text

    def value(self):
        return float(self.text)


def dump(obj, indent=0):
    """JSON text, numbers from the tool written verbatim (json.dumps would round-trip
    them through float and drop the digits %.17g printed)."""
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(obj, Raw):
        return obj.text
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = ['%s"%s": %s' % (inner, k, dump(v, indent + 2)) for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list):
        if not obj:
            return "[]"
        if all(isinstance(x, str) for x in obj):
            return "[" + ", ".join(dump(x) for x in obj) + "]"
        return "[\n" + ",\n".join(inner + dump(x, indent + 2) for x in obj) + "\n" + pad + "]"
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "true" if obj else "false"
    if isinstance(obj, (int, float)):
        if isinstance(obj, float) and not math.isfinite(obj):
            raise ValueError("non-finite number")
        return repr(obj)
    if isinstance(obj, str):
        return '"' + obj.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(type(obj))


def input_list(inputs_rs):
    """(name, bits) for every input, in the order of inputs::all(), then hwrng."""
    text = open(inputs_rs, encoding="utf-8").read()
    kinds = re.findall(r'\bkind\(\s*"([^"]+)",\s*"([^"]+)",\s*(\d+),', text)
    if not kinds:
        sys.exit("no Kind entries found in %s" % inputs_rs)
    small = [(s, int(b)) for s, _, b in kinds] + [("hwrng-64k", 8)]
    large = [(l, int(b)) for _, l, b in kinds] + [("hwrng-1m", 8)]
    return small + large


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def printed_sha(out_path):
    try:
        with open(out_path, encoding="utf-8") as f:
            m = re.search(r"SHA-256 hash ([0-9a-f]{64})", f.readline())
            return m.group(1) if m else None
    except OSError:
        return None


def run_tool(tool, name, bits, input_dir, timed):
    """Runs the tool on NAME.bin (in INPUT_DIR, so the printed path is NAME.bin)."""
    cmd = [tool, "-vv", name + ".bin", str(bits)]
    if timed:
        cmd = ["/usr/bin/time", "-v", "-o", name + ".bin.time"] + cmd
    out_path = os.path.join(input_dir, name + ".bin.out")
    with open(out_path + ".tmp", "w", encoding="utf-8") as out:
        rc = subprocess.run(cmd, cwd=input_dir, stdout=out, stderr=subprocess.PIPE).returncode
    if rc != 0:
        sys.exit("%s exited with %d" % (" ".join(cmd), rc))
    os.replace(out_path + ".tmp", out_path)


def parse_time(path):
    text = open(path, encoding="utf-8").read()
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", text).group(1))
    system = float(re.search(r"System time \(seconds\): ([\d.]+)", text).group(1))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    return round(user + system, 2), rss


def parse_output(text):
    """The per-track figures, details and final values of one -vv output."""
    tracks = {"Literal": {}, "Bitstring": {}}
    details = {"Literal": {}, "Bitstring": {}}
    result = {"warnings": []}
    for line in text.splitlines():
        m = re.match(r"^(Literal|Bitstring) (.+?): (.+)$", line)
        if m and m.group(2) in KEY_OF:
            track, key, rest = m.group(1), KEY_OF[m.group(2)], m.group(3)
            detail = details[track].setdefault(key, {})
            kv = re.match(r"^(.+?) = (\S+)$", rest)
            if kv and kv.group(1) == "min entropy":
                if key in tracks[track]:
                    sys.exit("two figures for %s %s" % (track, key))
                tracks[track][key] = Raw(kv.group(2))
            elif kv:
                detail[kv.group(1)] = Raw(kv.group(2))
            elif rest in ("Found p.",):
                detail["p_search"] = "found"
            elif rest.startswith("Could Not Find p."):
                detail["p_search"] = "not found, lower bound used"
            elif rest.startswith("P_local can't change"):
                detail["P_local"] = None
            else:
                sys.exit("unparsed line: %r" % line)
            continue
        m = re.match(r"^Loaded (\d+) samples of (\d+) distinct (\d+)-bit-wide symbols$", line)
        if m:
            result["samples"], result["alphabet"], result["word_size"] = map(int, m.groups())
            continue
        m = re.match(r"^(H_bitstring|H_original|Assessed min entropy)(?: =|:) (\S+)$", line)
        if m:
            result[m.group(1)] = Raw(m.group(2))
            continue
        stripped = line.strip()
        if "Warning" in stripped or "Can't Run" in stripped or "failed" in stripped:
            result["warnings"].append(stripped.strip("* ").strip())
        elif stripped and not re.match(
                r"^(Opening file:|Number of Binary Symbols:|Symbols have been translated\.|"
                r"H_bitstring Per Symbol =)", stripped):
            sys.exit("unexpected line: %r" % line)
    return tracks, details, result


def track_entry(figures, details):
    literal = {key: figures.get(key) for _, key in ESTIMATORS}
    detail = {key: details[key] for _, key in ESTIMATORS if key in details and details[key]}
    return literal, detail


def check_minima(entry, word_size):
    """H values recomputed from the parsed figures as non_iid_main.cpp combines them."""
    def lowest(start, figures):
        return min([start] + [v.value() for v in figures.values() if v is not None])

    h_original = lowest(float(word_size), entry["literal"])
    assessed = h_original
    if entry["bitstring"] is not None:
        h_bitstring = lowest(1.0, entry["bitstring"])
        if h_bitstring != entry["h_bitstring"].value():
            sys.exit("%s: H_bitstring does not match its figures" % entry["name"])
        assessed = min(float(word_size), word_size * h_bitstring, h_original)
    if h_original != entry["h_original"].value() or assessed != entry["assessed"].value():
        sys.exit("%s: H_original or assessed value does not match the figures" % entry["name"])


def pin_one(args, name, bits):
    path = os.path.join(args.input_dir, name + ".bin")
    digest = sha256(path)
    out_path = path + ".out"
    timed = name == args.time_input
    reusable = printed_sha(out_path) == digest and (
        not timed or os.path.exists(path + ".time"))
    if not (args.reuse and reusable):
        print("running %s (%d bits)" % (name, bits), file=sys.stderr, flush=True)
        run_tool(args.tool, name, bits, args.input_dir, timed)
    if printed_sha(out_path) != digest:
        sys.exit("%s: the tool's SHA-256 differs from the file's" % name)
    tracks, details, result = parse_output(open(out_path, encoding="utf-8").read())
    if result.get("word_size") != bits:
        sys.exit("%s: tool read %s-bit symbols" % (name, result.get("word_size")))
    literal, literal_detail = track_entry(tracks["Literal"], details["Literal"])
    has_bits = result["alphabet"] > 2
    bitstring, bitstring_detail = track_entry(tracks["Bitstring"], details["Bitstring"])
    if not has_bits and tracks["Bitstring"]:
        sys.exit("%s: bitstring figures with alphabet %d" % (name, result["alphabet"]))
    entry = {
        "name": name, "bits_per_sample": bits, "samples": result["samples"],
        "sha256": digest, "alphabet": result["alphabet"],
        "literal": literal, "bitstring": bitstring if has_bits else None,
        "h_original": result.get("H_original"),
        "h_bitstring": result.get("H_bitstring") if has_bits else None,
        "assessed": result["Assessed min entropy"],
        "warnings": result["warnings"],
        "literal_detail": literal_detail,
        "bitstring_detail": bitstring_detail if has_bits else None,
    }
    check_minima(entry, bits)
    return entry


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tool", help="path of the built ea_non_iid")
    ap.add_argument("input_dir", help="directory holding NAME.bin for every input")
    ap.add_argument("--commit", required=True, help="40-hex commit the tool was built from")
    ap.add_argument("--compiler", required=True, help="compiler and flags it was built with")
    ap.add_argument("--out", default=os.path.join(HERE, "ea_non_iid.json"))
    ap.add_argument("--inputs-rs", default=os.path.join(HERE, "inputs.rs"))
    ap.add_argument("--time-input", default="full-entropy-1m")
    ap.add_argument("--reuse", action="store_true",
                    help="parse an existing NAME.bin.out whose printed SHA-256 matches")
    args = ap.parse_args()
    if not re.match(r"^[0-9a-f]{40}$", args.commit):
        sys.exit("--commit must be 40 lowercase hex digits")
    args.tool = os.path.abspath(args.tool)
    version = subprocess.run([args.tool, "--version"], stdout=subprocess.PIPE,
                             text=True).stdout.splitlines()[0].strip()
    entries = [pin_one(args, name, bits) for name, bits in input_list(args.inputs_rs)]
    cpu, rss = parse_time(os.path.join(args.input_dir, args.time_input + ".bin.time"))
    fixture = {
        "tool": "ea_non_iid (usnistgov/SP800-90B_EntropyAssessment, cpp/)",
        "version": version,
        "commit": args.commit,
        "compiler": args.compiler,
        "command": "ea_non_iid -vv FILE BITS",
        "generator": "tests/reference/inputs.rs",
        "timing": {"input": args.time_input, "cpu_seconds": cpu, "max_rss_kib": rss},
        "inputs": entries,
    }
    with open(args.out + ".tmp", "w", encoding="utf-8") as f:
        f.write(dump(fixture) + "\n")
    os.replace(args.out + ".tmp", args.out)
    print("wrote %s (%d inputs)" % (args.out, len(entries)), file=sys.stderr)


if __name__ == "__main__":
    main()
