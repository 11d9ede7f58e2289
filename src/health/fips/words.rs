//! The word loop every build of the tester shares: runs, ones and the long
//! run a 64-bit word at a time, plus two portable ways of counting nibbles.
//! Each architecture compiles it with its own instructions enabled and picks
//! the nibble counter that is fastest there.

use super::{BLOCK_BITS, Block, BlockStats};
use crate::health::swar::zero_byte_mask;

/// Words of the block, most significant bit first; the block's 20,000 bits
/// fill 312 words and the top half of one more.
pub(super) const WORDS: usize = BLOCK_BITS.div_ceil(64);
const LAST_WORD_VALID: u64 = !0u64 << (WORDS * 64 - BLOCK_BITS);

/// The block as big-endian words, the last one padded with zero bits.
pub(super) type Words = [u64; WORDS];

#[inline(always)]
pub(super) fn stats_words(
    block: &Block,
    nibbles: impl FnOnce(&Block, &Words) -> [u32; 16],
) -> BlockStats {
    let (full, tail) = block.as_chunks::<8>();
    let words: Words = std::array::from_fn(|i| match full.get(i) {
        Some(chunk) => u64::from_be_bytes(*chunk),
        None => {
            let mut last = [0u8; 8];
            last[..tail.len()].copy_from_slice(tail);
            u64::from_be_bytes(last)
        }
    });
    let (ones, ge1, ge_all) = run_lengths(&words);
    let mut s = BlockStats {
        ones,
        ..BlockStats::default()
    };
    for k in 0..6 {
        let ge0 = ge_all[k] - ge1[k];
        let (next1, next0) = if k < 5 {
            (ge1[k + 1], ge_all[k + 1] - ge1[k + 1])
        } else {
            (0, 0)
        };
        s.runs[1][k] = ge1[k] - next1;
        s.runs[0][k] = ge0 - next0;
    }
    s.has_long_run = has_equal_byte_pair(&words) && has_long_run(&words);
    s.nibbles = nibbles(block, &words);
    s
}

/// Where a bit continues the run of the bit before it, for word `i`: the
/// bit before bit 0 of the block is taken unlike it, so that bit 0 starts a
/// run, and past the block nothing continues, so that the last run ends with
/// the block.
#[inline(always)]
fn continues(words: &Words, i: usize) -> u64 {
    let w = words[i];
    let before = if i == 0 { !w >> 63 } else { words[i - 1] };
    let cont = !(w ^ ((w >> 1) | (before << 63)));
    if i == WORDS - 1 {
        cont & LAST_WORD_VALID
    } else {
        cont
    }
}

/// Ones, and runs at least k + 1 long (of ones, and of either bit) for k in
/// 0..6. A run of length >= k + 1 is a run start followed by k continuing
/// bits, so each count is one AND chain and a popcount per word; every
/// iteration is independent of the others, so the loop vectorises.
#[inline(always)]
fn run_lengths(words: &Words) -> (u32, [u32; 6], [u32; 6]) {
    // 64-bit sums: a vector popcount yields 64-bit lanes, and narrowing each
    // one to 32 bits would cost an instruction per count.
    let mut ge1 = [0u64; 6];
    let mut ge_all = [0u64; 6];
    let mut ones = 0u64;
    for i in 0..WORDS {
        let w = words[i];
        let c = continues(words, i);
        let next_c = if i + 1 < WORDS {
            continues(words, i + 1)
        } else {
            0
        };
        ones += u64::from(w.count_ones());
        // cont[j + s] for each bit j of this word.
        let ahead = |s: u32| (c << s) | (next_c >> (64 - s));
        let mut longer = !c & if i == WORDS - 1 { LAST_WORD_VALID } else { !0 };
        for (k, s) in (1..=6).enumerate() {
            ge_all[k] += u64::from(longer.count_ones());
            ge1[k] += u64::from((longer & w).count_ones());
            if s < 6 {
                longer &= ahead(s);
            }
        }
    }
    // At most 20,000 each.
    (ones as u32, ge1.map(|n| n as u32), ge_all.map(|n| n as u32))
}

/// A run of 26 bits spans two whole aligned bytes of equal bits: a 0x00
/// 0x00 or 0xFF 0xFF pair. Good data rarely has one, so only then is the
/// block checked exactly.
#[inline(always)]
fn has_equal_byte_pair(words: &Words) -> bool {
    let mut pair_equal = 0u64;
    for i in 0..WORDS {
        pair_equal |= equal_byte_pairs(words, i);
    }
    pair_equal != 0
}

/// The high bit of each byte of word `i` that, with the byte after it (in
/// the next word for the last), is 0x00 0x00 or 0xFF 0xFF.
#[inline(always)]
fn equal_byte_pairs(words: &Words, i: usize) -> u64 {
    let w = words[i];
    let next = if i + 1 < WORDS { words[i + 1] } else { 0 };
    let shifted = (w << 8) | (next >> 56);
    let pairs = zero_byte_mask(!(w & shifted)) | zero_byte_mask(w | shifted);
    // In the last word only the pairs inside its valid bytes count.
    if i + 1 < WORDS {
        pairs
    } else {
        pairs & (LAST_WORD_VALID << 8)
    }
}

/// Whether 26 equal bits follow each other anywhere. Such a run starting
/// at bit j holds the pair of whole bytes starting at the first byte
/// boundary at or after j, so in j's word or the next: only the words with
/// a pair, and the words before them, can start one.
#[cold]
fn has_long_run(words: &Words) -> bool {
    (0..WORDS).any(|i| {
        equal_byte_pairs(words, i) != 0
            && (long_run_starts_in(words, i) || (i > 0 && long_run_starts_in(words, i - 1)))
    })
}

/// Whether a run of 26 equal bits starts in word `i`: cont[j + 1 ..= j + 25]
/// all set for some bit j of it.
fn long_run_starts_in(words: &Words, i: usize) -> bool {
    let next = if i + 1 < WORDS {
        continues(words, i + 1)
    } else {
        0
    };
    let ahead = (u128::from(continues(words, i)) << 64) | u128::from(next);
    let c1 = ahead << 1;
    let c2 = c1 & (c1 << 1);
    let c4 = c2 & (c2 << 2);
    let c8 = c4 & (c4 << 4);
    let c16 = c8 & (c8 << 8);
    let c25 = c16 & (c8 << 16) & (c1 << 24);
    (c25 >> 64) != 0
}

/// Counts of each 4-bit value among the block's 5,000 nibbles, through a byte
/// histogram: four interleaved tables keep consecutive increments from
/// waiting on each other. The fastest counter without a vector popcount.
#[inline(always)]
pub(super) fn nibble_counts_table(block: &Block, _: &Words) -> [u32; 16] {
    let mut hist = [[0u16; 256]; 4];
    let (quads, rest) = block.as_chunks::<4>();
    for q in quads {
        hist[0][usize::from(q[0])] += 1;
        hist[1][usize::from(q[1])] += 1;
        hist[2][usize::from(q[2])] += 1;
        hist[3][usize::from(q[3])] += 1;
    }
    for &b in rest {
        hist[0][usize::from(b)] += 1;
    }
    let mut nibbles = [0u32; 16];
    for byte in 0..256 {
        let n = u32::from(hist[0][byte] + hist[1][byte] + hist[2][byte] + hist[3][byte]);
        nibbles[byte >> 4] += n;
        nibbles[byte & 15] += n;
    }
    nibbles
}

/// Counts of each 4-bit value through popcounts only, for CPUs that count
/// bits of a whole vector at once. For each non-empty mask m of the four
/// nibble bits, `odd[m]` counts the nibbles v with popcount(v & m) odd: the
/// XOR of bit planes, masked to one bit per nibble, then popcounted. Those 15
/// counts are the block's Walsh-Hadamard transform, W(m) = N - 2 odd[m],
/// and the inverse transform gives the 16 counts exactly. Padding bits are
/// zero nibbles with every parity even, so they count nowhere.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
pub(super) fn nibble_counts_parity(_: &Block, words: &Words) -> [u32; 16] {
    from_parity_counts(&odd_parity_counts(words).map(|n| n as u32))
}

/// `odd[m]` of `nibble_counts_parity` over `words`, in 64-bit sums (a
/// vector popcount yields 64-bit lanes).
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
#[inline(always)]
pub(super) fn odd_parity_counts(words: &[u64]) -> [u64; 16] {
    const LOW_BITS: u64 = 0x1111_1111_1111_1111;
    let mut odd = [0u64; 16];
    for &w in words {
        let planes = [
            w & LOW_BITS,
            (w >> 1) & LOW_BITS,
            (w >> 2) & LOW_BITS,
            (w >> 3) & LOW_BITS,
        ];
        let mut parity = [0u64; 16];
        for m in 1..16 {
            parity[m] = parity[m & (m - 1)] ^ planes[m.trailing_zeros() as usize];
            odd[m] += u64::from(parity[m].count_ones());
        }
    }
    odd
}

/// The inverse Walsh-Hadamard transform of the parity counts of the block's
/// 5,000 nibbles.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
pub(super) fn from_parity_counts(odd: &[u32; 16]) -> [u32; 16] {
    const NIBBLES: i64 = (BLOCK_BITS / 4) as i64;
    let walsh = |m: usize| {
        if m == 0 {
            NIBBLES
        } else {
            NIBBLES - 2 * i64::from(odd[m])
        }
    };
    std::array::from_fn(|v| {
        let sum: i64 = (0..16)
            .map(|m| {
                if (v & m).count_ones() % 2 == 0 {
                    walsh(m)
                } else {
                    -walsh(m)
                }
            })
            .sum();
        (sum / 16) as u32
    })
}

/// The only build on architectures without code of their own.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PortableOnly;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
impl PortableOnly {
    pub(super) fn detect() -> Self {
        Self
    }

    pub(super) fn all_usable() -> Vec<Self> {
        vec![Self]
    }

    pub(super) fn name(self) -> &'static str {
        "portable"
    }

    pub(super) fn stats(self, block: &Block) -> BlockStats {
        stats_words(block, nibble_counts_table)
    }

    #[inline(always)]
    pub(super) fn with_features<R>(self, f: impl FnOnce() -> R) -> R {
        f()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_portable_nibble_counters_agree_with_a_plain_count() {
        let mut x = crate::test_support::XorShift(0x1234_5678_9ABC_DEF1);
        for skew in [0u8, 0x0F, 0xF0, 0x33] {
            let block: Block = std::array::from_fn(|_| x.byte() | skew);
            let mut want = [0u32; 16];
            for b in block {
                want[usize::from(b >> 4)] += 1;
                want[usize::from(b & 15)] += 1;
            }
            let table = stats_words(&block, nibble_counts_table).nibbles;
            let parity = stats_words(&block, nibble_counts_parity).nibbles;
            assert_eq!((table, parity), (want, want), "skew {skew:#x}");
        }
    }
}
