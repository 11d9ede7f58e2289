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

pub(crate) const BLOCK_BITS: usize = BLOCK_BYTES * 8;
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
pub(crate) const LONG_RUN_BITS: u32 = 26;

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
    /// A run of `LONG_RUN_BITS` (26) or more: all the long run test asks,
    /// and all the fast builds find out (not the run's length).
    pub has_long_run: bool,
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
            long_run: self.has_long_run,
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

#[cfg(target_arch = "aarch64")]
mod aarch64;
mod words;
#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(target_arch = "aarch64")]
use aarch64::Level;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
use words::PortableOnly as Level;
#[cfg(target_arch = "x86_64")]
use x86::Level;

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
        s.has_long_run |= len >= LONG_RUN_BITS;
    }

    /// Tests one block, carrying the continuous run state over to the next.
    pub fn test_block(block: &Block, continuous: &mut ContinuousRun) -> FipsVerdict {
        stats(block).verdict(continuous.repeats(block))
    }
}

/// The fast tester: 64 bits at a time, no branch per bit, no allocation.
#[derive(Clone, Copy, Debug)]
pub struct FipsTester {
    continuous: ContinuousRun,
    level: Level,
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
            level: Level::detect(),
        }
    }

    pub fn test_block(&mut self, block: &Block) -> FipsVerdict {
        let stats = self.stats(block);
        self.finish(block, &stats)
    }

    /// The counts of one block, without touching the continuous run state:
    /// a pure function of the block, so blocks can be counted in any order
    /// and on any thread.
    pub fn stats(&self, block: &Block) -> BlockStats {
        self.level.stats(block)
    }

    /// Runs `f` compiled with the CPU features this tester's build uses, so
    /// that the other tests' loops are vectorised as widely as its own.
    #[inline(always)]
    pub fn with_features<R>(&self, f: impl FnOnce() -> R) -> R {
        self.level.with_features(f)
    }

    /// The verdict from a block's counts, in stream order: this is where
    /// the continuous run test sees the block.
    pub fn finish(&mut self, block: &Block, stats: &BlockStats) -> FipsVerdict {
        stats.verdict(self.continuous.repeats(block))
    }

    /// Every build of the word loop this CPU can run, for tests that hold
    /// them all to the reference.
    pub fn all_levels(continuous: ContinuousRun) -> Vec<Self> {
        Level::all_usable()
            .into_iter()
            .map(|level| Self { continuous, level })
            .collect()
    }

    /// The build this tester runs, as a name for benchmarks and logs.
    pub fn level_name(&self) -> &'static str {
        self.level.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small xorshift generator: deterministic test data without a crate.
    fn noise(seed: u64) -> Block {
        crate::test_support::XorShift(seed | 1).block()
    }

    fn assert_same_stats(block: &Block) {
        let fast = FipsTester::default().stats(block);
        let slow = reference::stats(block);
        assert_eq!(fast.ones, slow.ones);
        assert_eq!(fast.nibbles, slow.nibbles);
        assert_eq!(fast.runs, slow.runs);
        assert_eq!(fast.has_long_run, slow.has_long_run);
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
        assert!(s.has_long_run);
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
    fn long_run_of_25_passes_and_26_fails_at_every_offset_and_edge() {
        // Every bit offset across two word boundaries and one byte pair's
        // reach, the block's edges, runs of ones and of zeros: the fast
        // tester looks for long runs only near a 0x0000/0xFFFF byte pair.
        let starts = (0..140)
            .chain(6300..6420)
            .chain(BLOCK_BITS - 140..BLOCK_BITS - 24);
        for start in starts {
            for len in [25usize, 26, 27] {
                if start + len > BLOCK_BITS {
                    continue;
                }
                for ones in [true, false] {
                    let mut b = noise(7 + start as u64);
                    let set = |b: &mut Block, i: usize, one: bool| {
                        if one {
                            b[i / 8] |= 0x80 >> (i % 8);
                        } else {
                            b[i / 8] &= !(0x80 >> (i % 8));
                        }
                    };
                    for i in start..start + len {
                        set(&mut b, i, ones);
                    }
                    // Bound the run so that it is exactly `len` long.
                    for i in [start.wrapping_sub(1), start + len] {
                        if i < BLOCK_BITS {
                            set(&mut b, i, !ones);
                        }
                    }
                    assert_same_stats(&b);
                    let v = FipsTester::default().test_block(&b);
                    assert_eq!(v.long_run, len >= 26, "run of {len} at bit {start}");
                }
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
        assert!(levels.last().is_some_and(|t| t.level_name() == "portable"));
        let mut b = noise(11);
        b[100..104].fill(0xFF); // a long run, so that path runs too
        for block in [noise(11), b, [0u8; BLOCK_BYTES], [0x55u8; BLOCK_BYTES]] {
            let want = reference::stats(&block);
            for t in &levels {
                let got = t.stats(&block);
                assert_eq!(
                    (got.ones, got.nibbles, got.runs),
                    (want.ones, want.nibbles, want.runs),
                    "{}",
                    t.level_name()
                );
                assert_eq!(got.has_long_run, want.has_long_run, "{}", t.level_name());
            }
        }
    }
}
