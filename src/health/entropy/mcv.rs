//! SP 800-90B §6.3.1, the Most Common Value estimate: the proportion of the
//! most common symbol, taken at its 99 % upper confidence bound (with
//! `N - 1` in the variance, as the text has it), as a min-entropy.
//!
//! NIST's tool (`most_common`) runs it on both tracks. Its binary was built
//! with `-march=native` and GCC contracts `p + Z * s` into one fused
//! multiply-add; we do the same so the bound rounds as it does there.

use super::support::{Track, Z_ALPHA};

/// Min-entropy per symbol of `track` by the Most Common Value estimate
/// (§6.3.1 steps 1-3), or `None` for fewer than two symbols (NIST asserts
/// `len > 1`).
///
/// For an alphabet of at most two symbols the track is read as a
/// bitstring: any non-zero symbol counts as `1`.
pub fn most_common_value(track: Track) -> Option<f64> {
    let symbols = track.symbols;
    if symbols.len() < 2 {
        return None;
    }
    let len = symbols.len() as f64;
    let mode = if track.alphabet <= 2 {
        let zeros = count_zeros(symbols);
        zeros.max(symbols.len() - zeros)
    } else {
        histogram_mode(symbols)
    };
    let p_hat = mode as f64 / len;
    let spread = (p_hat * (1.0 - p_hat) / (len - 1.0)).sqrt();
    let p_u = Z_ALPHA.mul_add(spread, p_hat).min(1.0);
    // `+ 0.0` turns the `-0.0` of a constant track into `0.0`.
    Some(-p_u.log2() + 0.0)
}

/// How many bytes of `bytes` are zero, counted in 32 byte lanes the
/// compiler vectorises, emptied every 255 rows before a lane can overflow.
fn count_zeros(bytes: &[u8]) -> usize {
    const LANES: usize = 32;
    let mut rows = bytes.chunks_exact(LANES);
    let mut zeros = 0;
    loop {
        let mut lanes = [0u8; LANES];
        let mut taken = 0;
        for row in (&mut rows).take(255) {
            for (lane, &b) in lanes.iter_mut().zip(row) {
                *lane += u8::from(b == 0);
            }
            taken += 1;
        }
        zeros += lanes.iter().map(|&n| usize::from(n)).sum::<usize>();
        if taken < 255 {
            break;
        }
    }
    zeros + rows.remainder().iter().filter(|&&b| b == 0).count()
}

/// The largest count of any byte value, from four interleaved histograms so
/// that runs of one value do not serialise on a single counter.
fn histogram_mode(symbols: &[u8]) -> usize {
    let mut counts = [[0u64; 256]; 4];
    let mut quads = symbols.chunks_exact(4);
    for quad in &mut quads {
        counts[0][usize::from(quad[0])] += 1;
        counts[1][usize::from(quad[1])] += 1;
        counts[2][usize::from(quad[2])] += 1;
        counts[3][usize::from(quad[3])] += 1;
    }
    for &s in quads.remainder() {
        counts[0][usize::from(s)] += 1;
    }
    (0..256)
        .map(|s| counts.iter().map(|lane| lane[s]).sum::<u64>())
        .max()
        .unwrap_or(0) as usize
}

#[cfg(test)]
mod tests {
    use super::super::test_inputs::{sticky_bits, xorshift32};
    use super::*;

    fn literal(symbols: &[u8], alphabet: usize) -> Option<f64> {
        most_common_value(Track { symbols, alphabet })
    }

    #[test]
    fn too_short_is_none() {
        assert_eq!(literal(&[], 2), None);
        assert_eq!(literal(&[1], 2), None);
    }

    #[test]
    fn constant_track_has_no_entropy() {
        assert_eq!(literal(&[3; 100], 4), Some(0.0));
        assert_eq!(literal(&[1; 100], 2), Some(0.0));
    }

    #[test]
    fn hand_computed_bound() {
        // 10 symbols, mode count 3: p = 0.3, p_u = 0.3 + Z sqrt(0.21 / 9).
        let p_u = 0.3 + Z_ALPHA * (0.21f64 / 9.0).sqrt();
        let h = literal(&[0, 0, 0, 1, 2, 3, 4, 5, 6, 7], 8).unwrap();
        assert!((h + p_u.log2()).abs() < 1e-15, "{h}");
        // 4 symbols, mode count 2: the bound exceeds 1, so the estimate is 0.
        assert_eq!(literal(&[0, 1, 0, 2], 3), Some(0.0));
    }

    #[test]
    fn bitstring_and_literal_paths_agree() {
        let bits: Vec<u8> = (0..5000u32).map(|i| u8::from(i * 7 % 13 < 6)).collect();
        let as_bits = literal(&bits, 2).unwrap();
        let as_literal = literal(&bits, 3).unwrap();
        assert_eq!(as_bits, as_literal);
    }

    /// A 20-symbol example over 3 symbols: the mode 1 occurs 8 times,
    /// p-hat = 0.4, p_u = 0.4 + Z sqrt(0.24/19) = 0.68950, min-entropy
    /// 0.53638 (hand-computed).
    #[test]
    fn twenty_symbol_example() {
        let s = [0, 1, 1, 2, 0, 1, 2, 2, 0, 1, 0, 1, 1, 0, 2, 2, 1, 0, 2, 1];
        let h = literal(&s, 3).unwrap();
        assert!((h - 0.536381).abs() < 1e-6, "{h}");
    }

    /// Pinned from ea_non_iid (commit 68ed165): `ea_non_iid -vv FILE 2` on
    /// the 20 000 bytes of `two_bit_input` (literal track, k = 4), and
    /// `ea_non_iid -vv FILE 1` on those of `sticky_input` (k = 2).
    #[test]
    fn pinned_against_nist() {
        let h = literal(&two_bit_input(), 4).unwrap();
        assert!((h - 1.9450494734705264).abs() < 1e-12, "{h:.17}");
        let h = literal(&sticky_bits(), 2).unwrap();
        assert!((h - 0.9566373776656676).abs() < 1e-12, "{h:.17}");
    }

    /// xorshift32 (seed 1), each sample the top byte of the state masked
    /// to its low 2 bits.
    fn two_bit_input() -> Vec<u8> {
        let mut next = xorshift32(1);
        (0..20_000).map(|_| ((next() >> 24) & 3) as u8).collect()
    }
}
