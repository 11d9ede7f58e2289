//! One stream's tests, and the gate that lets a block through only once
//! every test window containing it has closed and passed.
//!
//! Three tests look across block edges: the FIPS continuous run test (the
//! last word of a block against the first of the next), the RCT (a run that
//! starts at the end of one block and reaches the cutoff in the next) and the
//! APT (a 512-byte window that starts in one block and fails in the next).
//! So a block that passes is held back until the next block from the same
//! stream has been tested too; any failure drops the held block with the
//! failing one. That is the simplest rule that is always correct, and it
//! costs one block in a thousand or so of good data.
//!
//! After every (re)start, the first block is the SP 800-90B §4.3 start-up
//! test: all tests run over it (2,500 samples, more than the 1,024 asked
//! for, and its first word primes the continuous run test) and its bytes are
//! discarded whatever the verdict.

use super::fips::BlockStats;
use super::repeat::{self, RepeatedBlocks};
use super::sp800_90b::{AdaptiveProportion, RctScreen, RepetitionCount};
use super::{Block, BlockVerdict, ContinuousRun, Cutoffs, FipsTester, Test};

/// What the tests find in one block on its own, before the tests that look
/// across blocks see it. A pure function of the block: `check --jobs`
/// scans blocks on several threads and [`StreamTests::finish`] takes them
/// in stream order, so the verdicts are those of one thread by construction.
#[derive(Clone, Copy, Debug, Default)]
pub struct BlockScan {
    stats: BlockStats,
    fingerprint: u64,
    rct: RctScreen,
}

/// Scans blocks for a [`StreamTests`]; a copy can go to another thread.
#[derive(Clone, Copy, Debug)]
pub struct Scanner {
    fips: FipsTester,
}

impl Scanner {
    pub fn scan(&self, block: &Block) -> BlockScan {
        self.fips.with_features(|| BlockScan {
            stats: self.fips.stats(block),
            fingerprint: repeat::fingerprint(block),
            rct: RctScreen::of(block),
        })
    }

    /// Scans every block into `scans`, one feature switch for all of them.
    pub fn scan_all(&self, blocks: &[Block], scans: &mut [BlockScan]) {
        self.fips.with_features(|| {
            for (block, scan) in blocks.iter().zip(scans) {
                *scan = BlockScan {
                    stats: self.fips.stats(block),
                    fingerprint: repeat::fingerprint(block),
                    rct: RctScreen::of(block),
                };
            }
        })
    }
}

/// Every test of one stream of bytes; all carry state from block to block.
#[derive(Clone, Debug)]
pub struct StreamTests {
    cutoffs: Cutoffs,
    fips: FipsTester,
    rct: RepetitionCount,
    apt: AdaptiveProportion,
    repeats: RepeatedBlocks,
}

impl StreamTests {
    /// `continuous` is the continuous run test's state: `check` primes it
    /// with the stream's first word, as `rngtest` does.
    pub fn new(cutoffs: Cutoffs, continuous: ContinuousRun) -> Self {
        Self {
            cutoffs,
            fips: FipsTester::new(continuous),
            rct: RepetitionCount::new(cutoffs.rct),
            apt: AdaptiveProportion::new(cutoffs.apt),
            repeats: RepeatedBlocks::default(),
        }
    }

    pub fn test_block(&mut self, block: &Block) -> BlockVerdict {
        let scan = self.scanner().scan(block);
        self.finish(block, &scan)
    }

    pub fn scanner(&self) -> Scanner {
        Scanner { fips: self.fips }
    }

    /// The block's verdict from its scan, in stream order: the tests that
    /// look across blocks see it here.
    pub fn finish(&mut self, block: &Block, scan: &BlockScan) -> BlockVerdict {
        let fips = self.fips;
        fips.with_features(|| self.finish_inner(block, scan))
    }

    #[inline(always)]
    fn finish_inner(&mut self, block: &Block, scan: &BlockScan) -> BlockVerdict {
        let mut v = BlockVerdict::default();
        self.fips.finish(block, &scan.stats).record(&mut v);
        v.set(Test::Rct, self.rct.feed_screened(block, scan.rct));
        v.set(Test::Apt, self.apt.feed(block));
        v.set(
            Test::RepeatedBlock,
            self.repeats.seen_fingerprint(scan.fingerprint),
        );
        v
    }

    /// A new stream: the continuous tests start over. The memory of recent
    /// blocks stays, since a reopened file or a device replaying its buffer
    /// is exactly what it catches.
    fn restart(&mut self) {
        let repeats = std::mem::take(&mut self.repeats);
        *self = Self::new(self.cutoffs, ContinuousRun::default());
        self.repeats = repeats;
    }
}

/// What the gate did with one block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub verdict: BlockVerdict,
    /// The block was the start-up test's: tested, then discarded.
    pub start_up: bool,
    /// The block held back before this one is now fully tested and was
    /// copied out.
    pub released: bool,
}

/// The per-source gate: the stream's tests, the held-back block and the
/// start-up state.
#[derive(Clone, Debug)]
pub struct Gate {
    tests: StreamTests,
    held: Box<Block>,
    holding: bool,
    starting: bool,
}

impl Gate {
    pub fn new(cutoffs: Cutoffs) -> Self {
        Self {
            tests: StreamTests::new(cutoffs, ContinuousRun::default()),
            held: Box::new([0; super::BLOCK_BYTES]),
            holding: false,
            starting: true,
        }
    }

    /// The stream was (re)opened or the pool switched to it: drop the held
    /// block, start the continuous tests over and run the start-up test.
    pub fn restart(&mut self) {
        self.tests.restart();
        self.holding = false;
        self.starting = true;
    }

    /// Tests `block`. When it passes, the block held until now has had
    /// every window that contains it closed: it is copied to `out` and
    /// `block` is held in its place.
    pub fn push(&mut self, block: &Block, out: &mut Block) -> Step {
        let verdict = self.tests.test_block(block);
        let mut step = Step {
            verdict,
            start_up: self.starting,
            released: false,
        };
        if !verdict.passed() {
            self.holding = false;
            return step;
        }
        if self.starting {
            self.starting = false;
            return step;
        }
        if self.holding {
            out.copy_from_slice(&self.held[..]);
            step.released = true;
        }
        self.held.copy_from_slice(block);
        self.holding = true;
        step
    }

    /// Whether a passed block waits for the next one.
    pub fn is_holding(&self) -> bool {
        self.holding
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::BLOCK_BYTES;

    fn block(seed: u64) -> Box<Block> {
        Box::new(crate::test_support::passing_block(seed))
    }

    #[test]
    fn start_up_block_is_discarded_and_each_block_waits_for_the_next() {
        let mut g = Gate::new(Cutoffs::new(8.0, -40.0).unwrap());
        let mut out = [0u8; BLOCK_BYTES];
        let s = g.push(&block(1), &mut out);
        assert!(s.start_up && !s.released && !g.is_holding());
        let s = g.push(&block(2), &mut out);
        assert!(!s.start_up && !s.released && g.is_holding());
        let s = g.push(&block(3), &mut out);
        assert!(s.released);
        assert_eq!(out, *block(2));
    }

    #[test]
    fn a_failure_drops_the_held_block_and_a_restart_tests_again() {
        let mut g = Gate::new(Cutoffs::new(8.0, -40.0).unwrap());
        let mut out = [0u8; BLOCK_BYTES];
        g.push(&block(1), &mut out);
        g.push(&block(2), &mut out);
        let s = g.push(&[0u8; BLOCK_BYTES], &mut out);
        assert!(!s.verdict.passed() && !s.released && !g.is_holding());
        let s = g.push(&block(3), &mut out);
        assert!(!s.released, "block 2 is gone for good");
        g.restart();
        assert!(!g.is_holding());
        assert!(
            g.push(&block(4), &mut out).start_up,
            "tested as a start-up block again"
        );
        let s = g.push(&block(2), &mut out);
        assert!(
            s.verdict.failed(Test::RepeatedBlock),
            "memory survives a restart"
        );
    }
}
