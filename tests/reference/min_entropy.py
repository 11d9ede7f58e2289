#!/usr/bin/env python3
"""SP 800-90B min-entropy estimates of a byte file, written apart from the
Rust code as its independent check: the Most Common Value estimate (6.3.1)
and the MultiMMC prediction estimate (6.3.10) of order 1, with the predictor
conventions of NIST's SP800-90B_EntropyAssessment (the first transition
seeds the table, N = L - 2, an unseen context predicts nothing, of equal
counts the larger byte wins).

usage: min_entropy.py FILE SKIP WINDOW -> one JSON object per window
"""
import json
import math
import sys

Z = 2.576


def mcv(window):
    counts = [0] * 256
    for b in window:
        counts[b] += 1
    n = len(window)
    p = max(counts) / n
    upper = min(1.0, p + Z * math.sqrt(p * (1 - p) / (n - 1)))
    return -math.log2(upper)


def mmc_order1(window):
    table = {}          # prev -> {next: count}
    best = {}           # prev -> (symbol, count)
    hits = predictions = run = longest = 0
    for i in range(1, len(window)):
        prev, b = window[i - 1], window[i]
        if i >= 2:
            predictions += 1
            if prev in best:
                if best[prev][0] == b:
                    hits += 1
                    run += 1
                    longest = max(longest, run)
                else:
                    run = 0
        row = table.setdefault(prev, {})
        row[b] = row.get(b, 0) + 1
        c = row[b]
        if prev not in best or c > best[prev][1] or (c == best[prev][1] and b > best[prev][0]):
            best[prev] = (b, c)
    return prediction(hits, predictions, longest, 256)


def run_fn(p, r, n):
    q = 1 - p
    x = 1.0
    for _ in range(66):
        nxt = 1 + q * p ** r * x ** (r + 1)
        if abs(nxt - x) <= sys.float_info.epsilon * nxt:
            x = nxt
            break
        x = nxt
    return math.log(1 - p * x) - math.log((r + 1 - r * x) * q) - (n + 1) * math.log(x)


def prediction(hits, n, longest, k):
    pg = hits / n
    if hits == 0:
        upper = 1 - 0.01 ** (1 / n)
    else:
        upper = min(1.0, pg + Z * math.sqrt(pg * (1 - pg) / (n - 1)))
    p = max(upper, 1 / k)
    r = longest + 1
    if p < 1 and run_fn(p, r, n) > math.log(0.99):
        lo, hi = p, 1.0
        for _ in range(100):
            mid = (lo + hi) / 2
            try:
                v = run_fn(mid, r, n)
            except (ValueError, OverflowError):
                hi = mid
                continue
            if v > math.log(0.99):
                lo = mid
            else:
                hi = mid
        p = max(p, hi)
    return -math.log2(p)


def main():
    path, skip, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    data = open(path, "rb").read()[skip:]
    for start in range(0, len(data) - size + 1, size):
        w = data[start:start + size]
        m, p = mcv(w), mmc_order1(w)
        print(json.dumps({"mcv": m, "mmc": p, "min": min(m, p)}))


if __name__ == "__main__":
    main()
