//! The health gate: every block passes FIPS 140-2 and the SP 800-90B
//! continuous tests before a sink sees it, and each source's record of
//! passes and failures decides whether it may be used at all.

pub mod fips;
pub mod policy;
pub mod repeat;
pub mod sp800_90b;
mod swar;

pub use fips::{BLOCK_BYTES, Block, ContinuousRun, FipsTester, FipsVerdict};
pub use policy::{FailurePolicy, SourceHealth};
pub use sp800_90b::Cutoffs;

use sp800_90b::{AdaptiveProportion, RepetitionCount};

/// Which tests one block failed; the block passes when none did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BlockVerdict {
    pub fips: FipsVerdict,
    pub rct: bool,
    pub apt: bool,
    pub repeated_block: bool,
}

impl BlockVerdict {
    pub fn passed(&self) -> bool {
        self.fips.passed() && !self.rct && !self.apt && !self.repeated_block
    }

    /// The names of the failed tests, as used in metrics and JSON.
    pub fn failed_tests(&self) -> impl Iterator<Item = &'static str> {
        let f = &self.fips;
        [
            (f.monobit, "monobit"),
            (f.poker, "poker"),
            (f.runs, "runs"),
            (f.long_run, "long_run"),
            (f.continuous_run, "continuous_run"),
            (self.rct, "rct"),
            (self.apt, "apt"),
            (self.repeated_block, "repeated_block"),
        ]
        .into_iter()
        .filter_map(|(failed, name)| failed.then_some(name))
    }
}

/// Every test name a block can fail, in report order.
pub const TEST_NAMES: [&str; 8] = [
    "monobit",
    "poker",
    "runs",
    "long_run",
    "continuous_run",
    "rct",
    "apt",
    "repeated_block",
];

/// The tests for one stream of bytes (one source): all carry state across
/// blocks, so each source has its own gate.
#[derive(Clone, Debug)]
pub struct HealthGate {
    fips: FipsTester,
    rct: RepetitionCount,
    apt: AdaptiveProportion,
    repeats: repeat::RepeatedBlocks,
}

impl HealthGate {
    pub fn new(cutoffs: Cutoffs, continuous: ContinuousRun) -> Self {
        Self {
            fips: FipsTester::new(continuous),
            rct: RepetitionCount::new(cutoffs.rct),
            apt: AdaptiveProportion::new(cutoffs.apt),
            repeats: repeat::RepeatedBlocks::default(),
        }
    }

    pub fn test_block(&mut self, block: &Block) -> BlockVerdict {
        BlockVerdict {
            fips: self.fips.test_block(block),
            rct: self.rct.feed(block),
            apt: self.apt.feed(block),
            repeated_block: self.repeats.seen_before(block),
        }
    }
}

/// Per-test failure counts over many blocks, as `check` reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TestCounts {
    pub blocks: u64,
    pub successes: u64,
    pub failures: u64,
    pub monobit: u64,
    pub poker: u64,
    pub runs: u64,
    pub long_run: u64,
    pub continuous_run: u64,
    pub rct: u64,
    pub apt: u64,
    pub repeated_block: u64,
}

impl TestCounts {
    pub fn add(&mut self, v: &BlockVerdict) {
        self.blocks += 1;
        if v.passed() {
            self.successes += 1;
        } else {
            self.failures += 1;
        }
        let f = &v.fips;
        for (failed, count) in [
            (f.monobit, &mut self.monobit),
            (f.poker, &mut self.poker),
            (f.runs, &mut self.runs),
            (f.long_run, &mut self.long_run),
            (f.continuous_run, &mut self.continuous_run),
            (v.rct, &mut self.rct),
            (v.apt, &mut self.apt),
            (v.repeated_block, &mut self.repeated_block),
        ] {
            *count += u64::from(failed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_names_cover_every_way_a_block_can_fail() {
        let all = BlockVerdict {
            fips: FipsVerdict {
                monobit: true,
                poker: true,
                runs: true,
                long_run: true,
                continuous_run: true,
            },
            rct: true,
            apt: true,
            repeated_block: true,
        };
        assert_eq!(all.failed_tests().collect::<Vec<_>>(), TEST_NAMES);
    }
}
