//! SP 800-90B §6.3.4, the Compression estimate, for binary data.
//!
//! The bitstring is cut into 6-bit blocks; the first `d = 1000` fill a
//! dictionary of last positions, and each later block contributes
//! `log2` of its distance to the previous occurrence of the same block
//! (Maurer's universal statistic). The mean, lowered by its 99 % bound, is
//! matched to the statistic's expectation `G(p) + 63 G(q)` under a
//! distribution with one block of probability `p` and the rest sharing
//! `1 - p`; `-log2(p) / 6` is the min-entropy per bit.
//!
//! NIST's tool (`compression_test`) is followed in its conventions:
//! a block not seen among the first `d` is at distance `i + 1` (its
//! dictionary slot starts at 0); `sigma = 0.5907 sqrt(S2/(v-1) - X^2)`;
//! `p` is found by NIST's bisection on `[1/64, 1]`, with its stopping rules
//! (`relEpsilonEqual` to 4 ulps, at most 1076 steps, the bracketing
//! invariants) and full entropy when no `p > 1/64` is found; fewer than
//! `d + 1` blocks give nothing. Its `-march=native` build fuses
//! `S2/(v-1) - X*X` and `G(p) + 63 G(q)` into multiply-adds, as we do.
//!
//! NIST evaluates `G` term by term in `long double` (x87, 64-bit
//! mantissa), up to `num_blocks` terms for each of some 110 evaluations.
//! Rust has no `f80`; we evaluate the same sums differently (see
//! [`Expectation`]) in double-double arithmetic to a relative error near
//! 1e-16, which is as close to the exact value as NIST's own `long double`
//! sums (their terms are rounded to `double` before a Kahan sum). The
//! bisection then takes the same path to within the last few ulps of `p`.

use super::support::{Z_ALPHA, rel_epsilon_equal};

/// Bits per block (`b`).
const BLOCK_BITS: usize = 6;
/// Blocks that only initialise the dictionary (`d`).
const DICT: usize = 1000;
/// NIST's bisection step limit (`ITERMAX`).
const ITER_MAX: usize = 1076;
/// Distances below this are counted in a histogram, the rest summed one
/// by one (they are rare: each takes this many blocks of one symbol's
/// history).
const HISTOGRAM: usize = 2048;

/// Min-entropy per bit of `bits` (symbols 0/1; only the low bit of each
/// byte is read, as NIST does) by the Compression estimate, or `None` when
/// there are not more than 1000 whole 6-bit blocks (NIST skips the test).
pub fn compression(bits: &[u8]) -> Option<f64> {
    let blocks = bits.len() / BLOCK_BITS;
    if blocks <= DICT {
        return None;
    }
    let (mean, sigma) = maurer_statistic(bits, blocks);
    let v = (blocks - DICT) as f64;
    let target = mean - Z_ALPHA * sigma / v.sqrt();
    let p = bisect(&Expectation::new(blocks), target);
    let floor = 1.0 / 64.0;
    // `+ 0.0` turns the `-0.0` of p = 1 into `0.0`.
    Some(if p > floor {
        -p.log2() / BLOCK_BITS as f64 + 0.0
    } else {
        1.0
    })
}

/// The 6-bit value of one block, its first bit most significant.
fn block_value(block: &[u8]) -> usize {
    let mut word = [0u8; 8];
    word[..BLOCK_BITS].copy_from_slice(block);
    let low_bits = u64::from_le_bytes(word) & 0x0000_0101_0101_0101;
    (low_bits.wrapping_mul(0x8040_2010_0804_0201) >> 58) as usize
}

/// Mean and NIST's `sigma` of `log2` of the distances (§6.3.4 steps 2-3).
///
/// NIST sums in Kahan order; we count distances and sum `count * log2(d)`
/// (and its square) in double-double, which is at least as close to the
/// exact sums. `log2` is the same libm function on the same values.
fn maurer_statistic(bits: &[u8], blocks: usize) -> (f64, f64) {
    let mut last = [0usize; 64];
    for (i, block) in bits.chunks_exact(BLOCK_BITS).take(DICT).enumerate() {
        last[block_value(block)] = i + 1;
    }
    // Four interleaved histograms, so that runs of one distance do not
    // serialise on one counter.
    let mut histogram = vec![[0u64; 4]; HISTOGRAM];
    let (mut sum, mut sum_squares) = (Dd::ZERO, Dd::ZERO);
    let mut far = |distance: usize| {
        let l = (distance as f64).log2();
        sum = sum.add_f64(l);
        sum_squares = sum_squares.add(two_prod(l, l));
    };
    let mut position = DICT; // 1-based position of the block just read
    let mut record = |block: &[u8], lane: usize| {
        let value = block_value(block);
        position += 1;
        let distance = position - last[value];
        last[value] = position;
        match histogram.get_mut(distance) {
            Some(counts) => counts[lane] += 1,
            None => far(distance),
        }
    };
    let body = &bits[DICT * BLOCK_BITS..blocks * BLOCK_BITS];
    let mut quads = body.chunks_exact(4 * BLOCK_BITS);
    for quad in &mut quads {
        for (lane, block) in quad.chunks_exact(BLOCK_BITS).enumerate() {
            record(block, lane);
        }
    }
    for block in quads.remainder().chunks_exact(BLOCK_BITS) {
        record(block, 0);
    }
    for (distance, counts) in histogram.iter().enumerate().skip(1) {
        let count = counts.iter().sum::<u64>() as f64;
        if count > 0.0 {
            let l = (distance as f64).log2();
            sum = sum.add(two_prod(l, count));
            sum_squares = sum_squares.add(two_prod(l, l).mul_f64(count));
        }
    }
    let v = (blocks - DICT) as f64;
    let mean = sum.value() / v;
    let spread = (-mean).mul_add(mean, sum_squares.value() / (v - 1.0));
    (mean, 0.5907 * spread.sqrt())
}

/// NIST's bisection for `p` in `[1/64, 1]` with `E(p) = target` (`E`
/// decreasing). Where its search fails it returns `1/64` (or `-1` when
/// even `E(1/64)` is not above the target), which the caller turns into
/// full entropy.
fn bisect(expectation: &Expectation, target: f64) -> f64 {
    let (low_domain, high_domain) = (1.0 / 64.0, 1.0);
    // Written so that a NaN target fails too, as in NIST's test.
    let bracketed = expectation.com_exp(low_domain) > target;
    if !bracketed {
        return -1.0;
    }
    let (mut low, mut high) = (low_domain, high_domain);
    let (mut low_value, mut high_value) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut p = (low + high) / 2.0;
    let mut value = expectation.com_exp(p);
    for _ in 0..ITER_MAX {
        if rel_epsilon_equal(value, target) {
            break;
        }
        if target < value {
            (low, low_value) = (p, value);
        } else {
            (high, high_value) = (p, value);
        }
        if low >= high {
            return low.max(high).min(high_domain);
        }
        let in_domain = |x| in_closed(x, low_domain, high_domain);
        if !(in_domain(low) && in_domain(high) && in_closed(target, low_value, high_value)) {
            return low_domain;
        }
        let last = p;
        p = (low + high) / 2.0;
        if !in_open(p, low, high) || last == p {
            return high;
        }
        value = expectation.com_exp(p);
        if !in_closed(value, low_value, high_value) {
            return high;
        }
    }
    p
}

/// NIST's `INCLOSEDINTERVAL`: either order of the ends.
fn in_closed(x: f64, a: f64, b: f64) -> bool {
    if a > b {
        x >= b && x <= a
    } else {
        x >= a && x <= b
    }
}

/// NIST's `INOPENINTERVAL`.
fn in_open(x: f64, a: f64, b: f64) -> bool {
    if a > b {
        x > b && x < a
    } else {
        x > a && x < b
    }
}

/// Taylor terms of `ln(1 + t)` kept per chunk; `t <= 64/1001`, so the
/// first dropped term is below 1e-20 of the sum.
const TERMS: usize = 15;
/// Moments `0..=TERMS + 1` per chunk length.
const MOMENTS: usize = TERMS + 2;
/// The shortest chunk of the Taylor-summed range.
const BASE_CHUNK: usize = 64;
/// Rows of 64 exponents in the first `d` terms.
const HEAD_ROWS: usize = DICT.div_ceil(BASE_CHUNK);

/// §6.3.4's `G(z)` for one sample size, with what does not depend on `z`
/// computed once.
///
/// With `n` blocks, `v = n - d`, `x = 1 - z` and `a_i = log2(i) x^(i-1)`:
///
/// `G(z) = z (z W + T) / v`, `T = sum_{i=d+1}^{n} a_i`,
/// `W = (n - d) sum_{i=2}^{d} a_i + sum_{i=d+1}^{n} (n - i) a_i`
///
/// (NIST's `firstSum` and `Ai - Ad1`). The first `d` terms are summed one
/// by one. Beyond them the sum runs over chunks `[c, c + m)` with
/// `m <= c/16` (or 64), in which `log2(c + j) = log2(c) + ln(1 + j/c)/ln 2`
/// expands in powers of `j/c <= 0.064`; each chunk then costs a few
/// moments `sum_j (j/m)^k x^j`, shared by all chunks of that length and
/// built by doubling. Chunk lengths grow with `c`, so a few hundred chunks
/// cover a million blocks. The sum stops once the rest cannot change the
/// result by 2^-62 of it; NIST stops where its terms underflow a double.
/// (It also drops its last term `a_n` after an underflow: far below that.)
///
/// Sums of many terms use Ogita, Rump and Oishi's cascaded `Sum2` (error
/// terms of exact two-sums added aside), as accurate as double-double.
struct Expectation {
    blocks: usize,
    /// At `[b][r]`, `log2(j + 1)` for the exponent `j = 64 r + b` of the
    /// first `d` terms, 0 from `j = d` on.
    head_logs: Vec<[f64; HEAD_ROWS]>,
    /// At `[j][k]`, `(j/64)^k`: the weights of the base moments.
    moment_weights: Vec<[f64; MOMENTS]>,
    chunks: Vec<Chunk>,
    /// First `i` summed one by one after the chunks, and `log2` of each.
    tail: usize,
    tail_logs: Vec<f64>,
    log_blocks: f64,
}

#[derive(Clone, Copy)]
struct Chunk {
    start: usize,
    /// The chunk is `BASE_CHUNK << level` long.
    level: usize,
    log_start: f64,
    /// `(-1)^(k+1) (m/c)^k / (k ln 2)` for `k = 1..=TERMS`.
    series: [f64; TERMS],
}

impl Expectation {
    fn new(blocks: usize) -> Self {
        let head_logs = (0..BASE_CHUNK)
            .map(|b| {
                std::array::from_fn(|r| {
                    let j = r * BASE_CHUNK + b;
                    if j < DICT {
                        ((j + 1) as f64).log2()
                    } else {
                        0.0
                    }
                })
            })
            .collect();
        let moment_weights = (0..BASE_CHUNK)
            .map(|j| {
                let u = j as f64 / BASE_CHUNK as f64;
                let mut weights = [1.0; MOMENTS];
                for k in 1..MOMENTS {
                    weights[k] = weights[k - 1] * u;
                }
                weights
            })
            .collect();
        let mut chunks = Vec::new();
        let mut start = DICT + 1;
        while blocks + 1 - start >= BASE_CHUNK {
            let left = blocks + 1 - start;
            let mut level = 0;
            while (BASE_CHUNK << (level + 1)) * 16 <= start && BASE_CHUNK << (level + 1) <= left {
                level += 1;
            }
            chunks.push(Chunk::new(start, level));
            start += BASE_CHUNK << level;
        }
        Expectation {
            blocks,
            head_logs,
            moment_weights,
            chunks,
            tail: start,
            tail_logs: (start..=blocks).map(|i| (i as f64).log2()).collect(),
            log_blocks: (blocks as f64).log2(),
        }
    }

    /// NIST's `com_exp(p)`: `G(p) + 63 G(q)`, `q = (1 - p)/63`, fused.
    fn com_exp(&self, p: f64) -> f64 {
        let q = (1.0 - p) / 63.0;
        63.0f64.mul_add(self.g(q), self.g(p))
    }

    fn g(&self, z: f64) -> f64 {
        if z.is_nan() || z <= 0.0 {
            return 0.0; // G(0) = 0 * (finite sums)
        }
        let n = self.blocks;
        let powers = Powers::new(two_sum(1.0, -z)); // exact, as NIST's long double 1 - z
        let mut w = self.head(&powers).mul_f64((n - DICT) as f64);
        let mut t = Dd::ZERO;
        let mut moments = Moments::new(&powers.low, &self.moment_weights);
        let mut power = powers.high[DICT / BASE_CHUNK].mul(powers.low[DICT % BASE_CHUNK]);
        // The terms from x^(c-1) on add at most `bound * x^(c-1)` to z W + T.
        let bound = (1.0 + z) * (n as f64 + 1.0) * self.log_blocks / z;
        for chunk in &self.chunks {
            if bound * power.hi <= (z * w.hi + t.hi) * 2f64.powi(-62) {
                return finish(z, n, w, t);
            }
            let (m, xm) = moments.level(chunk.level);
            let (s0, s1) = chunk.sums(m);
            t = t.add(power.mul(s0));
            let length = (BASE_CHUNK << chunk.level) as f64;
            let weighted = s0
                .mul_f64((n - chunk.start) as f64)
                .add(s1.mul_f64(-length));
            w = w.add(power.mul(weighted));
            power = power.mul(xm);
        }
        for (j, &l) in self.tail_logs.iter().enumerate() {
            let a = l * power.mul(powers.low[j]).hi;
            t = t.add_f64(a);
            w = w.add(two_prod(a, (n - self.tail - j) as f64));
        }
        finish(z, n, w, t)
    }

    /// `sum_{i=2}^{d} log2(i) x^(i-1)` as 16 rows of 64 powers, summed side
    /// by side (independent chains) and weighted by `x^(64 row)` at the end.
    fn head(&self, powers: &Powers) -> Dd {
        let (mut hi, mut lo) = ([0.0f64; HEAD_ROWS], [0.0f64; HEAD_ROWS]);
        for (logs, low) in self.head_logs.iter().zip(&powers.low) {
            for r in 0..HEAD_ROWS {
                let s = two_sum(hi[r], logs[r] * low.hi);
                hi[r] = s.hi;
                lo[r] += s.lo;
            }
        }
        (0..HEAD_ROWS).fold(Dd::ZERO, |sum, r| {
            sum.add(powers.high[r].mul(two_sum(hi[r], lo[r])))
        })
    }
}

/// `x^j` for `j <= 64` and `x^(64 a)` for the rows of the head, in
/// double-double.
struct Powers {
    low: [Dd; BASE_CHUNK + 1],
    high: [Dd; HEAD_ROWS],
}

impl Powers {
    fn new(x: Dd) -> Self {
        let mut low = [Dd::ONE; BASE_CHUNK + 1];
        for j in 1..=BASE_CHUNK {
            low[j] = low[j - 1].mul(x);
        }
        let mut high = [Dd::ONE; HEAD_ROWS];
        for a in 1..HEAD_ROWS {
            high[a] = high[a - 1].mul(low[BASE_CHUNK]);
        }
        Powers { low, high }
    }
}

/// `z (z W + T) / v` as NIST rounds it (`1/v * z * fma(z, W, T)`).
fn finish(z: f64, blocks: usize, w: Dd, t: Dd) -> f64 {
    let v = (blocks - DICT) as f64;
    1.0 / v * z * z.mul_add(w.value(), t.value())
}

impl Chunk {
    fn new(start: usize, level: usize) -> Self {
        let ratio = (BASE_CHUNK << level) as f64 / start as f64;
        let mut series = [0.0; TERMS];
        let mut power = std::f64::consts::LOG2_E;
        for (index, c) in series.iter_mut().enumerate() {
            power *= ratio;
            let k = (index + 1) as f64;
            *c = if index % 2 == 0 {
                power / k
            } else {
                -power / k
            };
        }
        Chunk {
            start,
            level,
            log_start: (start as f64).log2(),
            series,
        }
    }

    /// `sum_j log2(c + j) x^j` and `sum_j (j/m) log2(c + j) x^j` over the
    /// chunk, from its moments `m[k] = sum_j (j/m)^k x^j`.
    fn sums(&self, m: &[Dd; MOMENTS]) -> (Dd, Dd) {
        let (mut series0, mut series1) = (0.0, 0.0);
        for (k, c) in self.series.iter().enumerate() {
            series0 += c * m[k + 1].hi;
            series1 += c * m[k + 2].hi;
        }
        let s0 = m[0].mul_f64(self.log_start).add_f64(series0);
        let s1 = m[1].mul_f64(self.log_start).add_f64(series1);
        (s0, s1)
    }
}

/// Moments `sum_{j<m} (j/m)^k x^j` for `m = 64 << level`, built on demand:
/// level 0 directly, each next level from the last by [`doubled`] (all
/// its terms are positive, so the doubling loses nothing to cancellation).
struct Moments {
    levels: Vec<([Dd; MOMENTS], Dd)>,
}

impl Moments {
    fn new(powers: &[Dd; BASE_CHUNK + 1], weights: &[[f64; MOMENTS]]) -> Self {
        let (mut hi, mut lo) = ([0.0f64; MOMENTS], [0.0f64; MOMENTS]);
        for (weight, power) in weights.iter().zip(powers) {
            for k in 0..MOMENTS {
                let s = two_sum(hi[k], weight[k] * power.hi);
                hi[k] = s.hi;
                lo[k] += s.lo;
            }
        }
        let m = std::array::from_fn(|k| two_sum(hi[k], lo[k]));
        Moments {
            levels: vec![(m, powers[BASE_CHUNK])],
        }
    }

    /// The moments of `level` and `x^m`.
    fn level(&mut self, level: usize) -> (&[Dd; MOMENTS], Dd) {
        while self.levels.len() <= level {
            let Some(&(m, xm)) = self.levels.last() else {
                break;
            };
            self.levels.push((doubled(&m, xm), xm.mul(xm)));
        }
        // `levels` is never empty.
        let (m, xm) = &self.levels[level.min(self.levels.len() - 1)];
        (m, *xm)
    }
}

/// The moments of chunks twice as long as those of `m`, whose `x^m` is
/// `xm`: `M'_k = 2^-k (M_k + x^m sum_a C(k, a) M_a)`.
fn doubled(m: &[Dd; MOMENTS], xm: Dd) -> [Dd; MOMENTS] {
    let mut next = [Dd::ZERO; MOMENTS];
    let mut binomial = [0.0f64; MOMENTS];
    let mut scale = 1.0;
    for k in 0..MOMENTS {
        // Row k of Pascal's triangle, in place.
        binomial[k] = 1.0;
        for a in (1..k).rev() {
            binomial[a] += binomial[a - 1];
        }
        let shifted = (0..=k).fold(Dd::ZERO, |sum, a| sum.add(m[a].mul_f64(binomial[a])));
        next[k] = m[k].add(shifted.mul(xm)).mul_f64(scale);
        scale *= 0.5;
    }
    next
}

/// A double-double: `hi + lo` with `|lo| <= ulp(hi)/2`.
#[derive(Clone, Copy, Debug)]
struct Dd {
    hi: f64,
    lo: f64,
}

impl Dd {
    const ZERO: Dd = Dd { hi: 0.0, lo: 0.0 };
    const ONE: Dd = Dd { hi: 1.0, lo: 0.0 };

    fn value(self) -> f64 {
        self.hi + self.lo
    }

    fn add_f64(self, b: f64) -> Dd {
        let s = two_sum(self.hi, b);
        quick_two_sum(s.hi, s.lo + self.lo)
    }

    fn add(self, b: Dd) -> Dd {
        let s = two_sum(self.hi, b.hi);
        quick_two_sum(s.hi, s.lo + (self.lo + b.lo))
    }

    fn mul(self, b: Dd) -> Dd {
        let p = two_prod(self.hi, b.hi);
        quick_two_sum(p.hi, p.lo + (self.hi * b.lo + self.lo * b.hi))
    }

    fn mul_f64(self, b: f64) -> Dd {
        let p = two_prod(self.hi, b);
        quick_two_sum(p.hi, p.lo + self.lo * b)
    }
}

/// `a + b` exactly (Knuth).
fn two_sum(a: f64, b: f64) -> Dd {
    let s = a + b;
    let bb = s - a;
    Dd {
        hi: s,
        lo: (a - (s - bb)) + (b - bb),
    }
}

/// `a + b` exactly when `|a| >= |b|` (Dekker).
fn quick_two_sum(a: f64, b: f64) -> Dd {
    let s = a + b;
    Dd {
        hi: s,
        lo: b - (s - a),
    }
}

/// `a * b` exactly (Dekker's split; no reliance on a hardware FMA).
fn two_prod(a: f64, b: f64) -> Dd {
    let split = |v: f64| {
        let c = 134_217_729.0 * v;
        let hi = c - (c - v);
        (hi, v - hi)
    };
    let p = a * b;
    let ((ah, al), (bh, bl)) = (split(a), split(b));
    Dd {
        hi: p,
        lo: ((ah * bh - p) + ah * bl + al * bh) + al * bl,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_inputs::sticky_bits;
    use super::*;

    /// NIST's G, term by term, in double-double (for checking the chunks).
    fn g_slow(z: f64, n: usize) -> f64 {
        let x = two_sum(1.0, -z);
        let (mut power, mut a, mut t, mut first) = (x, Dd::ZERO, Dd::ZERO, Dd::ZERO);
        for i in 2..=n {
            let ai = power.mul_f64((i as f64).log2());
            if i <= DICT {
                a = a.add(ai);
            } else {
                t = t.add(ai);
                first = first.add(ai.mul_f64((n - i) as f64));
            }
            power = power.mul(x);
        }
        let w = first.add(a.mul_f64((n - DICT) as f64));
        finish(z, n, w, t)
    }

    #[test]
    fn chunked_g_matches_term_by_term() {
        for n in [1001, 1064, 1100, 5000, 40_000] {
            let e = Expectation::new(n);
            for z in [1.0 / 64.0, 0.02, 0.3, 0.999, 1e-3, 1e-5, 2e-9, 1.0] {
                let (fast, slow) = (e.g(z), g_slow(z, n));
                let rel = ((fast - slow) / slow).abs();
                assert!(
                    rel < 4e-16 || fast == slow,
                    "n {n} z {z}: {fast:e} {slow:e} {rel:e}"
                );
            }
        }
    }

    #[test]
    fn block_value_reads_msb_first() {
        assert_eq!(block_value(&[1, 0, 0, 0, 0, 0]), 32);
        assert_eq!(block_value(&[0, 0, 0, 0, 0, 1]), 1);
        assert_eq!(block_value(&[1, 1, 0, 1, 0, 1]), 0b110101);
        assert_eq!(block_value(&[3, 2, 0xff, 0, 0, 0]), 0b101000);
    }

    #[test]
    fn edge_cases() {
        assert_eq!(compression(&[]), None);
        assert_eq!(compression(&[1; 6006 - 1]), None);
        // Constant: every distance is 1, X' = 0, and the search runs to p = 1.
        // 1001 blocks: v = 1, sigma is 0/0 and NIST awards full entropy.
        assert_eq!(compression(&[0; 6006]), Some(1.0));
        assert_eq!(compression(&[1; 7000]), Some(0.0));
    }

    /// Pinned from ea_non_iid (commit 68ed165), `ea_non_iid -vv FILE 1` on
    /// the 20 000 bytes of `sticky_bits` written to FILE (literal track,
    /// k = 2).
    #[test]
    fn pinned_against_nist() {
        let h = compression(&sticky_bits()).unwrap();
        assert!((h - PINNED).abs() < 1e-12, "{h:.17}");
    }

    const PINNED: f64 = 0.47256496067377657;
}
