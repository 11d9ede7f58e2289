//! SP 800-90B §6.3.2, the Collision estimate, for binary data.
//!
//! The standard walks the bitstring in pairs: two equal bits are a
//! collision after 2 samples, two different bits one after 3 (the third
//! bit always collides with one of them, whatever its value). The mean wait
//! time, lowered by its 99 % confidence bound, gives the most likely bit's
//! probability.
//!
//! NIST's tool (`collision_test`) does not search for `p` as §6.3.2 step 7
//! describes: for binary data the expected wait time reduces to
//! `X' = -2p^2 + 2p + 2`, which it solves in closed form on the root above
//! 1/2, clamping `X'` to at least 2 and awarding full entropy when
//! `X' >= 2.5` (no real root). We do the same, and fuse the same products
//! into multiply-adds as its `-march=native` build does.

use super::support::Z_ALPHA;

/// Min-entropy per bit of `bits` (symbols 0/1; only the low bit of each
/// byte is read) by the Collision estimate, or `None` for fewer than two
/// bits.
///
/// Where NIST's arithmetic yields NaN (fewer than two collisions) it
/// reports full entropy, and so do we.
pub fn collision(bits: &[u8]) -> Option<f64> {
    if bits.len() < 2 {
        return None;
    }
    let (waits, end) = walk(bits);
    // Each wait is 2 or 3, so `end = 2 waits + threes`.
    let threes = end - 2 * waits;
    let twos = waits - threes;
    let sum_squares = (4 * twos + 9 * threes) as f64;

    let v = waits as f64;
    let mean = end as f64 / v;
    let sigma = ((-(end as f64)).mul_add(mean, sum_squares) / (waits as f64 - 1.0)).sqrt();
    let mut bound = mean - Z_ALPHA * sigma / v.sqrt();
    if bound < 2.0 {
        bound = 2.0;
    }
    if bound < 2.5 {
        let p = 0.5 + (-0.5f64).mul_add(bound, 1.25).sqrt();
        // `+ 0.0` turns the `-0.0` of p = 1 into `0.0`.
        Some(-p.log2() + 0.0)
    } else {
        // No root (or NaN): NIST takes p = 1/2.
        Some(1.0)
    }
}

/// The walk across one 8-bit chunk, for each of the three positions
/// (0, 1, 2) at which it may enter: byte `o` of the entry describes entry
/// at `o` as `8 * exit | waits << 5`, where the walk leaves the chunk at
/// `8 + exit` after `waits` collisions. Indexed by the chunk's 8 bits
/// (first bit most significant) and then the next bit, which a wait
/// starting on the chunk's last bit must see.
///
/// Keeping the exit as `8 * exit` in the low 5 bits makes the walk's
/// carried state a shift count: the next entry shifted by it (mod 32) is
/// the next state, one instruction per chunk on the dependency chain.
const CHUNK_STEPS: [u32; 512] = chunk_steps();

const fn chunk_steps() -> [u32; 512] {
    let mut table = [0u32; 512];
    let mut index = 0;
    while index < 512 {
        let mut entry = 0u32;
        let mut start = 0;
        while start < 3 {
            let (mut p, mut waits) = (start, 0u32);
            while p < 8 {
                // Bits p and p + 1 of the 9-bit index, first bit highest.
                let pair = (index >> (7 - p)) & 3;
                p += if pair == 0 || pair == 3 { 2 } else { 3 };
                waits += 1;
            }
            entry |= ((8 * (p as u32 - 8)) | (waits << 5)) << (8 * start);
            start += 1;
        }
        table[index] = entry;
        index += 1;
    }
    table
}

/// Gathers the low bits of 8 bytes into one byte, first byte most
/// significant (the multiplier's partial products never overlap).
fn pack8(bytes: &[u8]) -> u8 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    let low_bits = u64::from_le_bytes(word) & 0x0101_0101_0101_0101;
    (low_bits.wrapping_mul(0x8040_2010_0804_0201) >> 56) as u8
}

/// Walks the collisions as NIST does and returns how many there were and
/// where the walk stopped (the sum of the wait times).
///
/// A wait that starts at `i` needs `i + 1 < len`, and `i + 2 < len` when it
/// is 3 long; NIST stops at the first wait that does not fit. Whole 8-bit
/// chunks go through [`CHUNK_STEPS`] while every wait starting in them
/// fits; the rest bit by bit.
fn walk(bits: &[u8]) -> (usize, usize) {
    let len = bits.len();
    // Chunks whose every wait fits: 8 k + 10 <= len.
    let chunks = if len >= 10 { (len - 10) / 8 + 1 } else { 0 };
    let (mut waits, mut state) = (0usize, 0u32);
    let mut step = |index: usize| {
        state = CHUNK_STEPS[index].wrapping_shr(state);
        waits += (state >> 5 & 7) as usize;
    };
    if chunks > 0 {
        // The next chunk's packed bits supply this chunk's lookahead bit.
        let mut current = pack8(bits);
        for bytes in bits[8..8 * chunks].chunks_exact(8) {
            let next = pack8(bytes);
            step(usize::from(current) << 1 | usize::from(next >> 7));
            current = next;
        }
        let last = 8 * chunks;
        step(usize::from(current) << 1 | usize::from(bits[last] & 1));
    }
    let mut i = 8 * chunks + (state & 31) as usize / 8;
    while i + 1 < len {
        if (bits[i] ^ bits[i + 1]) & 1 == 0 {
            i += 2;
        } else if i + 2 < len {
            i += 3;
        } else {
            break;
        }
        waits += 1;
    }
    (waits, i)
}

#[cfg(test)]
mod tests {
    use super::super::test_inputs::{sticky_bits, xorshift32};
    use super::*;

    /// NIST's loop, bit by bit, for checking the chunked walk.
    fn walk_slow(bits: &[u8]) -> (usize, usize) {
        let (mut i, mut waits) = (0usize, 0usize);
        while i + 1 < bits.len() {
            let t = if bits[i] == bits[i + 1] {
                2
            } else if i + 2 < bits.len() {
                3
            } else {
                break;
            };
            waits += 1;
            i += t;
        }
        (waits, i)
    }

    fn xorshift_bits(seed: u32, len: usize, ones_in_16: u32) -> Vec<u8> {
        let mut next = xorshift32(seed);
        (0..len)
            .map(|_| u8::from(next() >> 28 < ones_in_16))
            .collect()
    }

    #[test]
    fn chunked_walk_matches_bitwise_walk() {
        for len in 0..200 {
            for seed in 1..4 {
                let bits = xorshift_bits(seed, len, 8);
                assert_eq!(walk(&bits), walk_slow(&bits), "len {len} seed {seed}");
            }
        }
        let bits = xorshift_bits(9, 100_003, 11);
        assert_eq!(walk(&bits), walk_slow(&bits));
    }

    #[test]
    fn pack8_puts_first_byte_on_top() {
        assert_eq!(pack8(&[1, 0, 0, 0, 0, 0, 0, 1]), 0b1000_0001);
        assert_eq!(pack8(&[0, 1, 1, 0, 1, 0, 0, 0]), 0b0110_1000);
        assert_eq!(pack8(&[3, 2, 1, 0, 1, 0, 1, 0xff]), 0b1010_1011);
    }

    #[test]
    fn edge_cases() {
        assert_eq!(collision(&[]), None);
        assert_eq!(collision(&[1]), None);
        // One collision: sigma is 0/0, NaN, and NIST awards full entropy.
        assert_eq!(collision(&[0, 0]), Some(1.0));
        assert_eq!(collision(&[0, 1]), Some(1.0));
        // Constant: every wait is 2, X' = 2, p = 1.
        assert_eq!(collision(&[1; 1000]), Some(0.0));
        // Alternating: every wait is 3, X' = 3 >= 2.5: full entropy.
        let alternating: Vec<u8> = (0..999).map(|i| (i % 2) as u8).collect();
        assert_eq!(collision(&alternating), Some(1.0));
    }

    /// Hand-worked: bits 0,0 | 1,0,1 | 1,1 | 0,1 wait 2, 3 and 2; the last
    /// pair differs and has no third bit, so the walk stops at 7:
    /// v = 3, sum 7, sum of squares 17.
    #[test]
    fn hand_worked_walk() {
        let bits = [0, 0, 1, 0, 1, 1, 1, 0, 1];
        assert_eq!(walk(&bits), walk_slow(&bits));
        assert_eq!(walk(&bits), (3, 7));
        let mean = 7.0 / 3.0;
        let sigma = ((17.0 - 7.0 * mean) / 2.0f64).sqrt();
        let bound = (mean - Z_ALPHA * sigma / 3f64.sqrt()).max(2.0);
        let p = 0.5 + (1.25 - 0.5 * bound).sqrt();
        let h = collision(&bits).unwrap();
        assert!((h + p.log2()).abs() < 1e-15);
    }

    /// Pinned from ea_non_iid (commit 68ed165), `ea_non_iid -vv FILE 1` on
    /// the 20 000 bytes of `sticky_bits` written to FILE (literal track,
    /// k = 2).
    #[test]
    fn pinned_against_nist() {
        let h = collision(&sticky_bits()).unwrap();
        assert!((h - PINNED).abs() < 1e-12, "{h:.17}");
    }

    const PINNED: f64 = 0.41085455026229256;
}
