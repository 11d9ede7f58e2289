//! SP 800-90B §6.3.3, the Markov estimate, for binary data.
//!
//! A first-order Markov model of the bitstring (initial and transition
//! probabilities from the counts, §6.3.3 steps 1-2) bounds the probability
//! of the most likely 128-bit sequence. The standard scores six candidate
//! paths (a run of either bit, the two alternations, and one switch into a
//! run); the estimate is the smallest of their `-log2` probabilities,
//! divided by 128 and capped at 1 bit (steps 3-4).
//!
//! As in NIST's tool (`markov_test`): the transition counts use bits
//! `0..len-1` as the "from" bit, the initial probabilities all `len` bits;
//! an empty row gives zero transition probabilities, and a path through a
//! zero probability is skipped rather than scored infinite. Its
//! `-march=native` build fuses `-log2(P) - k log2(Q)` into multiply-adds;
//! we fuse the same terms so every path scores bit for bit as there.

/// Min-entropy per bit of `bits` (symbols 0/1; any non-zero byte is a 1, as
/// in NIST's test of `data[i] == 0`) by the Markov estimate, or `None` for
/// fewer than two bits (NIST asserts `len > 1`).
pub fn markov(bits: &[u8]) -> Option<f64> {
    if bits.len() < 2 {
        return None;
    }
    let counts = Transitions::count(bits);
    let len = bits.len() as i64;
    let from_ones = len - 1 - counts.from_zeros;
    let (p00, p01) = row(counts.zero_zero, counts.from_zeros);
    let (p10, p11) = row(counts.one_zero, from_ones);
    let zeros = counts.from_zeros + i64::from(bits[bits.len() - 1] == 0);
    let p0 = zeros as f64 / len as f64;
    let p1 = 1.0 - p0;
    let (l0, l1) = (p0.log2(), p1.log2());

    // The six candidate paths, each as NIST rounds it (the fused products
    // are exactly where its compiler put them).
    let mut paths = [f64::INFINITY; 6];
    if p00 > 0.0 {
        paths[0] = -(127.0f64.mul_add(p00.log2(), l0)); // 00...0
    }
    if p01 > 0.0 && p10 > 0.0 {
        let start = -(64.0f64.mul_add(p01.log2(), l0)); // 0101...01
        paths[1] = (-63.0f64).mul_add(p10.log2(), start);
        let start = -(64.0f64.mul_add(p10.log2(), l1)); // 1010...10
        paths[4] = (-63.0f64).mul_add(p01.log2(), start);
    }
    if p01 > 0.0 && p11 > 0.0 {
        paths[2] = (-126.0f64).mul_add(p11.log2(), -l0 - p01.log2()); // 011...1
    }
    if p10 > 0.0 && p00 > 0.0 {
        paths[3] = (-126.0f64).mul_add(p00.log2(), -l1 - p10.log2()); // 100...0
    }
    if p11 > 0.0 {
        paths[5] = -(127.0f64.mul_add(p11.log2(), l1)); // 11...1
    }
    let h_min = paths
        .iter()
        .fold(128.0f64, |h, &t| if t < h { t } else { h });
    Some((h_min / 128.0).min(1.0) + 0.0)
}

/// `(P(x -> 0), P(x -> 1))` for a row with `to_zero` of `from` transitions,
/// both 0 for an empty row, as NIST has it.
fn row(to_zero: i64, from: i64) -> (f64, f64) {
    if from > 0 {
        let p = to_zero as f64 / from as f64;
        (p, 1.0 - p)
    } else {
        (0.0, 0.0)
    }
}

/// Counts over the `len - 1` transitions `bits[i] -> bits[i + 1]`.
struct Transitions {
    /// Zeros among `bits[..len - 1]`.
    from_zeros: i64,
    zero_zero: i64,
    one_zero: i64,
}

impl Transitions {
    /// From two plain counts: ones among the "from" bits, and changes
    /// `bits[i] != bits[i + 1]`. Changes alternate between 0 -> 1 and
    /// 1 -> 0, so their split follows from the first and last bits, and
    /// every "from" zero that does not change is a 0 -> 0.
    fn count(bits: &[u8]) -> Self {
        let (ones, changes) = ones_and_changes(&bits[..bits.len() - 1], &bits[1..]);
        let first = i64::from(bits[0] != 0);
        let last = i64::from(bits[bits.len() - 1] != 0);
        // changes = up + down, up - down = last - first.
        let one_zero = (changes + first - last) / 2;
        let zero_one = changes - one_zero;
        let from_zeros = (bits.len() as i64 - 1) - ones;
        Transitions {
            from_zeros,
            zero_zero: from_zeros - zero_one,
            one_zero,
        }
    }
}

/// Non-zero bytes of `from`, and lanes where `from` and `to` (equally long)
/// differ in being zero. Counted in 32 byte lanes the compiler vectorises,
/// emptied every 255 rows before a lane can overflow.
fn ones_and_changes(from: &[u8], to: &[u8]) -> (i64, i64) {
    const LANES: usize = 32;
    let (mut ones, mut changes) = (0i64, 0i64);
    let mut from_rows = from.chunks_exact(LANES);
    let mut to_rows = to.chunks_exact(LANES);
    loop {
        let (mut one_lanes, mut change_lanes) = ([0u8; LANES], [0u8; LANES]);
        let mut rows = 0;
        for (f, t) in (&mut from_rows).zip(&mut to_rows).take(255) {
            for lane in 0..LANES {
                let (a, b) = (f[lane] != 0, t[lane] != 0);
                one_lanes[lane] += u8::from(a);
                change_lanes[lane] += u8::from(a != b);
            }
            rows += 1;
        }
        ones += one_lanes.iter().map(|&n| i64::from(n)).sum::<i64>();
        changes += change_lanes.iter().map(|&n| i64::from(n)).sum::<i64>();
        if rows < 255 {
            break;
        }
    }
    for (&a, &b) in from_rows.remainder().iter().zip(to_rows.remainder()) {
        ones += i64::from(a != 0);
        changes += i64::from((a != 0) != (b != 0));
    }
    (ones, changes)
}

#[cfg(test)]
mod tests {
    use super::super::test_inputs::{sticky_bits, xorshift32};
    use super::*;

    fn counts_slow(bits: &[u8]) -> (i64, i64, i64) {
        let mut c = (0, 0, 0);
        for w in bits.windows(2) {
            let (a, b) = (w[0] != 0, w[1] != 0);
            c.0 += i64::from(!a);
            c.1 += i64::from(!a && !b);
            c.2 += i64::from(a && !b);
        }
        c
    }

    fn xorshift_bytes(seed: u32, len: usize) -> Vec<u8> {
        let mut next = xorshift32(seed);
        (0..len).map(|_| (next() >> 24) as u8).collect()
    }

    #[test]
    fn swar_counts_match_plain_counts() {
        for len in 2..300 {
            // Raw bytes too: any non-zero byte must count as a 1.
            let bytes = xorshift_bytes(len as u32, len);
            let bits: Vec<u8> = bytes.iter().map(|b| b >> 7).collect();
            for data in [&bytes, &bits] {
                let c = Transitions::count(data);
                assert_eq!((c.from_zeros, c.zero_zero, c.one_zero), counts_slow(data));
            }
        }
        let bits: Vec<u8> = xorshift_bytes(5, 200_001)
            .iter()
            .map(|b| u8::from(*b < 90))
            .collect();
        let c = Transitions::count(&bits);
        assert_eq!((c.from_zeros, c.zero_zero, c.one_zero), counts_slow(&bits));
    }

    #[test]
    fn edge_cases() {
        assert_eq!(markov(&[]), None);
        assert_eq!(markov(&[0]), None);
        // Constant: P_11 = 1, P_1 = 1, path 11...1 has probability 1.
        assert_eq!(markov(&[1; 100]), Some(0.0));
        assert_eq!(markov(&[0; 100]), Some(0.0));
        // Strict alternation: P_01 = P_10 = 1, P_0 = 1/2: 1/128 bit.
        let alternating: Vec<u8> = (0..1000).map(|i| (i % 2) as u8).collect();
        assert_eq!(markov(&alternating), Some(1.0 / 128.0));
    }

    /// A 40-bit hand example: 19 "from" zeros (9 to 0), 20 "from" ones
    /// (11 to 0), 20 zeros in all: P0 = 0.5, P00 = 9/19, P10 = 0.55. The
    /// alternating path 1010...10 is the most likely, -log2 p = 114.538:
    /// min-entropy 0.89483.
    #[test]
    fn hand_computed_counts() {
        let s = [
            1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 1, 0,
            0, 1, 0, 1, 0, 0, 0, 1, 1, 1, 0,
        ];
        let (c0, c00, c10) = counts_slow(&s);
        let c1 = 39 - c0;
        let p0 = (c0 + 1) as f64 / 40.0;
        let (p00, p01) = (c00 as f64 / c0 as f64, 1.0 - c00 as f64 / c0 as f64);
        let (p10, p11) = (c10 as f64 / c1 as f64, 1.0 - c10 as f64 / c1 as f64);
        let p1 = 1.0 - p0;
        let candidates = [
            -p0.log2() - 127.0 * p00.log2(),
            -p0.log2() - 64.0 * p01.log2() - 63.0 * p10.log2(),
            -p0.log2() - p01.log2() - 126.0 * p11.log2(),
            -p1.log2() - p10.log2() - 126.0 * p00.log2(),
            -p1.log2() - 64.0 * p10.log2() - 63.0 * p01.log2(),
            -p1.log2() - 127.0 * p11.log2(),
        ];
        let want = candidates.iter().cloned().fold(128.0, f64::min) / 128.0;
        let h = markov(&s).unwrap();
        assert!((h - want.min(1.0)).abs() < 1e-14, "{h} {want}");
        assert_eq!((c0, c00, c10), (19, 9, 11));
        assert!((h - 0.894826).abs() < 1e-6, "{h}");
    }

    /// Pinned from ea_non_iid (commit 68ed165), `ea_non_iid -vv FILE 1` on
    /// the 20 000 bytes of `sticky_bits` written to FILE (literal track,
    /// k = 2).
    #[test]
    fn pinned_against_nist() {
        let h = markov(&sticky_bits()).unwrap();
        assert!((h - PINNED).abs() < 1e-12, "{h:.17}");
    }

    const PINNED: f64 = 0.6948326149472839;
}
