//! FIPS 140-2 (change notice 2001-10-10) statistical tests on 20,000-bit blocks.
//!
//! Two implementations share one verdict type. [`reference`] walks the block
//! bit by bit, as the standard words it, and exists to be obviously right.
//! [`FipsTester`] is the one the daemon runs: it works a 64-bit word at a
//! time so that testing never becomes the cost of refreshing. Both must agree
//! on every block; the property tests and the fuzz target hold them to it.
//!
//! Semantics follow `rngtest` from rng-tools 6.11 on (and Debian's
//! rng-tools-debian 2.2 on), after the runs-test fix: bits are read most
//! significant first, runs are counted inside each block only (the last run
//! of a block is closed at its end), and the continuous run test compares each
//! little-endian 32-bit word with the one before it, across blocks.

/// Bytes in one FIPS 140-2 block (20,000 bits).
pub const BLOCK_BYTES: usize = 2500;
/// One FIPS 140-2 block.
pub type Block = [u8; BLOCK_BYTES];

const BLOCK_BITS: usize = BLOCK_BYTES * 8;
/// Monobit fails at or beyond these counts of ones.
const MONOBIT_FAIL_LOW: u32 = 9725;
const MONOBIT_FAIL_HIGH: u32 = 10275;
/// Poker statistic bounds, as the sum of squared nibble counts: the standard's
/// X = 16/5000 * sum - 5000 must lie in (2.16, 46.17).
const POKER_SUM_MIN: u64 = 1_563_176;
const POKER_SUM_MAX: u64 = 1_576_928;
/// Allowed counts of runs of length 1, 2, 3, 4, 5 and 6 or more, for runs of
/// zeros and of ones alike.
const RUNS_BOUNDS: [(u32, u32); 6] = [
    (2315, 2685),
    (1114, 1386),
    (527, 723),
    (240, 384),
    (103, 209),
    (103, 209),
];
/// A run this long or longer fails the long run test.
const LONG_RUN_BITS: u32 = 26;

/// Which of the five tests a block failed. A block passes when none did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FipsVerdict {
    pub monobit: bool,
    pub poker: bool,
    pub runs: bool,
    pub long_run: bool,
    pub continuous_run: bool,
}

impl FipsVerdict {
    pub fn passed(&self) -> bool {
        !(self.monobit || self.poker || self.runs || self.long_run || self.continuous_run)
    }

    /// Adds these results to a block's verdict over all tests.
    pub fn record(&self, v: &mut super::BlockVerdict) {
        use super::Test;
        v.set(Test::Monobit, self.monobit);
        v.set(Test::Poker, self.poker);
        v.set(Test::Runs, self.runs);
        v.set(Test::LongRun, self.long_run);
        v.set(Test::ContinuousRun, self.continuous_run);
    }
}

/// The counts a block's verdict is decided from; shared by both
/// implementations so that only the counting differs between them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockStats {
    pub ones: u32,
    pub nibbles: [u32; 16],
    /// `runs[bit][k]`: runs of `bit` of length `k + 1`, the last bucket
    /// holding every run of 6 or more.
    pub runs: [[u32; 6]; 2],
    pub longest_run: u32,
}

impl BlockStats {
    fn verdict(&self, continuous_run: bool) -> FipsVerdict {
        let poker_sum: u64 = self
            .nibbles
            .iter()
            .map(|&n| u64::from(n) * u64::from(n))
            .sum();
        let runs = self.runs.iter().any(|per_bit| {
            per_bit
                .iter()
                .zip(RUNS_BOUNDS)
                .any(|(&n, (lo, hi))| n < lo || n > hi)
        });
        FipsVerdict {
            monobit: self.ones <= MONOBIT_FAIL_LOW || self.ones >= MONOBIT_FAIL_HIGH,
            poker: !(POKER_SUM_MIN..=POKER_SUM_MAX).contains(&poker_sum),
            runs,
            long_run: self.longest_run >= LONG_RUN_BITS,
            continuous_run,
        }
    }
}

/// Continuous run test state: the last 32-bit word seen on this stream.
#[derive(Clone, Copy, Debug, Default)]
pub struct ContinuousRun {
    last_word: Option<u32>,
}

impl ContinuousRun {
    /// A stream whose first word is compared with `word`; `rngtest` primes
    /// itself this way with the first four bytes it reads.
    pub fn primed(word: u32) -> Self {
        Self {
            last_word: Some(word),
        }
    }

    /// True when any word of `block` repeats the word before it.
    fn repeats(&mut self, block: &Block) -> bool {
        let (words, _) = block.as_chunks::<4>();
        let mut repeated = false;
        let mut last = self.last_word;
        for word in words.iter().map(|w| u32::from_le_bytes(*w)) {
            repeated |= last == Some(word);
            last = Some(word);
        }
        self.last_word = last;
        repeated
    }
}

use super::swar::zero_byte_mask;

/// The bit-by-bit reference: slow, plain, and the definition the fast tester
/// is checked against.
pub mod reference {
    use super::*;

    pub fn stats(block: &Block) -> BlockStats {
        let bit = |i: usize| (block[i / 8] >> (7 - i % 8)) & 1;
        let mut s = BlockStats::default();
        for &byte in block {
            s.nibbles[usize::from(byte >> 4)] += 1;
            s.nibbles[usize::from(byte & 15)] += 1;
        }
        let mut run_bit = bit(0);
        let mut run_len = 0u32;
        for i in 0..BLOCK_BITS {
            let b = bit(i);
            s.ones += u32::from(b);
            if b == run_bit {
                run_len += 1;
            } else {
                close_run(&mut s, run_bit, run_len);
                run_bit = b;
                run_len = 1;
            }
        }
        close_run(&mut s, run_bit, run_len);
        s
    }

    fn close_run(s: &mut BlockStats, bit: u8, len: u32) {
        s.runs[usize::from(bit)][(len.min(6) - 1) as usize] += 1;
        s.longest_run = s.longest_run.max(len);
    }

    /// Tests one block, carrying the continuous run state over to the next.
    pub fn test_block(block: &Block, continuous: &mut ContinuousRun) -> FipsVerdict {
        stats(block).verdict(continuous.repeats(block))
    }
}

/// The fast tester: 64 bits at a time, no branch per bit, no allocation.
#[derive(Clone, Debug)]
pub struct FipsTester {
    continuous: ContinuousRun,
    level: SimdLevel,
}

/// Which build of the word loop this CPU can run, best first. The loop is
/// written once; each level compiles it with more of the CPU's instructions
/// so that the compiler can test several words per instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SimdLevel {
    Avx512,
    Avx2,
    Popcnt,
    Portable,
}

impl SimdLevel {
    fn detect() -> Self {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f")
            && has!("avx512vpopcntdq")
            && has!("avx512bw")
            && has!("avx512vl")
            && has!("popcnt")
        {
            Self::Avx512
        } else if has!("avx2") && has!("popcnt") {
            Self::Avx2
        } else if has!("popcnt") {
            Self::Popcnt
        } else {
            Self::Portable
        }
    }
}

impl Default for FipsTester {
    fn default() -> Self {
        Self::new(ContinuousRun::default())
    }
}

impl FipsTester {
    pub fn new(continuous: ContinuousRun) -> Self {
        Self {
            continuous,
            level: SimdLevel::detect(),
        }
    }

    pub fn test_block(&mut self, block: &Block) -> FipsVerdict {
        self.stats(block).verdict(self.continuous.repeats(block))
    }

    /// The counts of one block, without touching the continuous run state.
    pub fn stats(&self, block: &Block) -> BlockStats {
        // SAFETY (each arm): `SimdLevel::detect` saw the CPU support every
        // feature the called function is compiled for.
        match self.level {
            SimdLevel::Avx512 => unsafe { stats_avx512(block) },
            SimdLevel::Avx2 => unsafe { stats_avx2(block) },
            SimdLevel::Popcnt => unsafe { stats_popcnt(block) },
            SimdLevel::Portable => stats_words::<NIBBLES_TABLE>(block),
        }
    }

    /// Every build of the word loop this CPU can run, for tests that hold
    /// them all to the reference.
    pub fn all_levels(continuous: ContinuousRun) -> Vec<Self> {
        let best = SimdLevel::detect();
        [
            SimdLevel::Avx512,
            SimdLevel::Avx2,
            SimdLevel::Popcnt,
            SimdLevel::Portable,
        ]
        .into_iter()
        .skip_while(|l| *l != best)
        .map(|level| Self { continuous, level })
        .collect()
    }
}

#[target_feature(enable = "avx512f,avx512vpopcntdq,avx512bw,avx512vl,avx2,popcnt")]
fn stats_avx512(block: &Block) -> BlockStats {
    stats_words::<NIBBLES_AVX2>(block)
}

#[target_feature(enable = "avx2,popcnt")]
fn stats_avx2(block: &Block) -> BlockStats {
    stats_words::<NIBBLES_AVX2>(block)
}

/// Which nibble counter a build of the word loop uses. (A 64-byte AVX-512
/// counter measured no faster than this one on AMD EPYC.)
const NIBBLES_TABLE: u8 = 0;
const NIBBLES_AVX2: u8 = 1;

/// Without POPCNT every `count_ones` becomes a dozen shifts and masks.
#[target_feature(enable = "popcnt")]
fn stats_popcnt(block: &Block) -> BlockStats {
    stats_words::<NIBBLES_TABLE>(block)
}

/// Words of the block, most significant bit first; the block's 20,000 bits
/// fill 312 words and the top half of one more.
const WORDS: usize = BLOCK_BITS.div_ceil(64);
const LAST_WORD_VALID: u64 = !0u64 << (WORDS * 64 - BLOCK_BITS);

#[inline(always)]
fn stats_words<const SIMD: u8>(block: &Block) -> BlockStats {
    // `ext[i + 1]` is word i; `ext[0]` stands before the block with its last
    // bit unlike bit 0, so that bit 0 starts a run.
    let mut ext = [0u64; WORDS + 1];
    let (full, tail) = block.as_chunks::<8>();
    for (w, chunk) in ext[1..].iter_mut().zip(full) {
        *w = u64::from_be_bytes(*chunk);
    }
    let mut last = [0u8; 8];
    last[..tail.len()].copy_from_slice(tail);
    ext[WORDS] = u64::from_be_bytes(last);
    ext[0] = !ext[1] >> 63;
    let words = &ext[1..];

    // `cont[i]` is set where a bit continues the run of the bit before it;
    // past the block it is clear, so that the last run ends with the block.
    // `starts` is where runs begin, inside the block only.
    let mut cont = [0u64; WORDS + 1];
    let mut starts = [0u64; WORDS];
    for i in 0..WORDS {
        let (w, before) = (ext[i + 1], ext[i]);
        cont[i] = !(w ^ ((w >> 1) | (before << 63)));
        starts[i] = !cont[i];
    }
    cont[WORDS - 1] &= LAST_WORD_VALID;
    starts[WORDS - 1] &= LAST_WORD_VALID;

    // ge[bit][k]: runs of `bit` at least k + 1 long. Every iteration is
    // independent of the others, so the loop vectorises.
    let mut ge1 = [0u32; 6];
    let mut ge_all = [0u32; 6];
    let mut ones = 0u32;
    for i in 0..WORDS {
        let (w, c, next_c) = (words[i], cont[i], cont[i + 1]);
        ones += w.count_ones();
        // cont[j + s] for each bit j of this word.
        let ahead = |s: u32| (c << s) | (next_c >> (64 - s));
        let mut longer = starts[i];
        for (k, s) in (1..=6).enumerate() {
            ge_all[k] += longer.count_ones();
            ge1[k] += (longer & w).count_ones();
            if s < 6 {
                longer &= ahead(s);
            }
        }
    }
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
    // Only whether a long run exists decides the test; report it as that.
    s.longest_run = if has_equal_byte_pair(words) && has_long_run(words, &cont) {
        LONG_RUN_BITS
    } else {
        0
    };
    // SAFETY: SIMD names a level only in the builds `SimdLevel::detect`
    // chose for a CPU with that level's features.
    s.nibbles = match SIMD {
        NIBBLES_AVX2 => unsafe { nibble_counts_avx2(block) },
        _ => nibble_counts(block),
    };
    s
}

/// A run of 26 bits spans two whole aligned bytes of equal bits: a 0x00
/// 0x00 or 0xFF 0xFF pair. Good data rarely has one, so only then is the
/// block checked exactly.
#[inline(always)]
fn has_equal_byte_pair(words: &[u64]) -> bool {
    let equal_pairs =
        |w: u64, shifted: u64| zero_byte_mask(!(w & shifted)) | zero_byte_mask(w | shifted);
    let mut pair_equal = 0u64;
    for i in 0..WORDS - 1 {
        let (w, next) = (words[i], words[i + 1]);
        pair_equal |= equal_pairs(w, (w << 8) | (next >> 56));
    }
    // In the last word only the pairs inside its valid bytes count.
    let w = words[WORDS - 1];
    pair_equal |= equal_pairs(w, w << 8) & (LAST_WORD_VALID << 8);
    pair_equal != 0
}

/// Whether 26 equal bits follow each other anywhere: cont[j + 1 ..= j + 25]
/// all set for some bit j. Rare on good data, so plain code is fine.
#[cold]
fn has_long_run(words: &[u64], cont: &[u64]) -> bool {
    (0..words.len()).any(|i| {
        let ahead = (u128::from(cont[i]) << 64) | u128::from(cont[i + 1]);
        let c1 = ahead << 1;
        let c2 = c1 & (c1 << 1);
        let c4 = c2 & (c2 << 2);
        let c8 = c4 & (c4 << 4);
        let c16 = c8 & (c8 << 8);
        let c25 = c16 & (c8 << 16) & (c1 << 24);
        (c25 >> 64) != 0
    })
}

/// Counts of each 4-bit value, 32 bytes at a time: per value, a byte-wide
/// counter per lane is stepped by each match (a lane sees at most 2 x 78
/// matches per block, below 256), then the lanes are summed.
#[target_feature(enable = "avx2")]
fn nibble_counts_avx2(block: &Block) -> [u32; 16] {
    use std::arch::x86_64::*;
    let (chunks, tail) = block.as_chunks::<32>();
    let low = _mm256_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_si256(); 16];
    for chunk in chunks {
        // SAFETY: `chunk` is 32 readable bytes; the load has no alignment need.
        let x = unsafe { _mm256_loadu_si256(chunk.as_ptr().cast()) };
        let lo = _mm256_and_si256(x, low);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(x), low);
        for (v, a) in acc.iter_mut().enumerate() {
            let value = _mm256_set1_epi8(v as i8);
            // A match is -1 (0xFF): subtracting it adds one.
            *a = _mm256_sub_epi8(*a, _mm256_cmpeq_epi8(lo, value));
            *a = _mm256_sub_epi8(*a, _mm256_cmpeq_epi8(hi, value));
        }
    }
    let mut counts = [0u32; 16];
    for (count, a) in counts.iter_mut().zip(acc) {
        let sums = _mm256_sad_epu8(a, _mm256_setzero_si256());
        let mut lanes = [0u64; 4];
        // SAFETY: `lanes` is 32 writable bytes.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), sums) };
        *count = lanes.iter().sum::<u64>() as u32;
    }
    for &b in tail {
        counts[usize::from(b >> 4)] += 1;
        counts[usize::from(b & 15)] += 1;
    }
    counts
}

/// Counts of each 4-bit value among the block's 5,000 nibbles, through a byte
/// histogram: four interleaved tables keep consecutive increments from
/// waiting on each other.
#[inline(always)]
fn nibble_counts(block: &Block) -> [u32; 16] {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn block_from(f: impl FnMut(usize) -> u8) -> Block {
        std::array::from_fn(f)
    }

    /// A small xorshift generator: deterministic test data without a crate.
    fn noise(seed: u64) -> Block {
        let mut x = seed | 1;
        block_from(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
    }

    fn assert_same_stats(block: &Block) {
        let fast = FipsTester::default().stats(block);
        let slow = reference::stats(block);
        assert_eq!(fast.ones, slow.ones);
        assert_eq!(fast.nibbles, slow.nibbles);
        assert_eq!(fast.runs, slow.runs);
        assert_eq!(
            fast.longest_run >= LONG_RUN_BITS,
            slow.longest_run >= LONG_RUN_BITS
        );
    }

    #[test]
    fn good_noise_passes_both() {
        for seed in 1..50 {
            let b = noise(seed);
            assert_same_stats(&b);
            assert!(reference::test_block(&b, &mut ContinuousRun::default()).passed());
        }
    }

    #[test]
    fn all_zeros_fails_everything_but_poker_bounds_too() {
        let b = [0u8; BLOCK_BYTES];
        let v = FipsTester::default().test_block(&b);
        assert!(v.monobit && v.poker && v.runs && v.long_run && v.continuous_run);
        assert_same_stats(&b);
        let s = reference::stats(&b);
        assert_eq!(s.runs[0][5], 1);
        assert_eq!(s.longest_run, 20_000);
    }

    #[test]
    fn alternating_bits_are_all_runs_of_one() {
        let b = [0xAAu8; BLOCK_BYTES];
        let s = reference::stats(&b);
        assert_eq!(s.runs[1][0], 10_000);
        assert_eq!(s.runs[0][0], 10_000);
        assert_same_stats(&b);
        let v = reference::test_block(&b, &mut ContinuousRun::default());
        assert!(!v.monobit && v.poker && v.runs && !v.long_run && v.continuous_run);
    }

    #[test]
    fn monobit_thresholds_are_exact() {
        // Set exactly n ones, spread so that no other count matters here.
        for (n, fails) in [(9725, true), (9726, false), (10274, false), (10275, true)] {
            let mut b = [0u8; BLOCK_BYTES];
            for i in 0..n {
                let bit = i * BLOCK_BITS / n;
                b[bit / 8] |= 0x80 >> (bit % 8);
            }
            assert_eq!(reference::stats(&b).ones as usize, n);
            assert_eq!(
                FipsTester::default().test_block(&b).monobit,
                fails,
                "{n} ones"
            );
        }
    }

    #[test]
    fn long_run_of_25_passes_and_26_fails_at_block_edges() {
        for len in [25usize, 26] {
            for start in [0, BLOCK_BITS - len, 60, 64 * 100 - 13] {
                let mut b = noise(7);
                for i in start..start + len {
                    b[i / 8] |= 0x80 >> (i % 8);
                }
                // Bound the run with zeros so it is exactly `len` long.
                for i in [start.wrapping_sub(1), start + len] {
                    if i < BLOCK_BITS {
                        b[i / 8] &= !(0x80 >> (i % 8));
                    }
                }
                assert_same_stats(&b);
                let v = FipsTester::default().test_block(&b);
                assert_eq!(v.long_run, len >= 26, "run of {len} at bit {start}");
            }
        }
    }

    #[test]
    fn continuous_run_is_carried_across_blocks() {
        let first = noise(3);
        let mut second = noise(4);
        second[..4].copy_from_slice(&first[BLOCK_BYTES - 4..]);
        let mut t = FipsTester::default();
        assert!(!t.test_block(&first).continuous_run);
        assert!(t.test_block(&second).continuous_run);
        // A primed tester compares the first word with the priming word.
        let mut primed = FipsTester::new(ContinuousRun::primed(u32::from_le_bytes([1, 2, 3, 4])));
        let mut third = noise(5);
        third[..4].copy_from_slice(&[1, 2, 3, 4]);
        assert!(primed.test_block(&third).continuous_run);
    }

    #[test]
    fn every_simd_level_agrees_with_the_reference() {
        let levels = FipsTester::all_levels(ContinuousRun::default());
        assert!(
            levels
                .last()
                .is_some_and(|t| t.level == SimdLevel::Portable)
        );
        let mut b = noise(11);
        b[100..104].fill(0xFF); // a long run, so that path runs too
        for block in [noise(11), b, [0u8; BLOCK_BYTES], [0x55u8; BLOCK_BYTES]] {
            let want = reference::stats(&block);
            for t in &levels {
                let got = t.stats(&block);
                assert_eq!(
                    (got.ones, got.nibbles, got.runs),
                    (want.ones, want.nibbles, want.runs),
                    "{:?}",
                    t.level
                );
                assert_eq!(
                    got.longest_run >= LONG_RUN_BITS,
                    want.longest_run >= LONG_RUN_BITS,
                    "{:?}",
                    t.level
                );
            }
        }
    }
}
