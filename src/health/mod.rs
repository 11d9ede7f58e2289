//! The health gate: every block passes FIPS 140-2, the SP 800-90B continuous
//! tests and the repeated-block test before a sink sees it, and each
//! source's record of passes and failures decides whether it may be used.
//!
//! [`Test`] names every test once; metrics, JSON and the text report are
//! all built from it, so adding a test is one variant here plus its code.

mod config;
pub mod entropy;
pub mod estimate;
pub mod fips;
mod gate;
pub mod policy;
pub mod repeat;
pub mod sp800_90b;
mod swar;
pub mod trust;

pub use config::{HealthConfig, HealthConfigError};
pub use fips::{BLOCK_BYTES, Block, ContinuousRun, FipsTester, FipsVerdict};
pub use gate::{BlockScan, Gate, Scanner, Step, StreamTests};
pub use policy::{FailurePolicy, SourceHealth};
pub use sp800_90b::{CutoffError, Cutoffs};
pub use trust::{CreditRule, PROBE_BLOCKS, Pushed, TestTally, Trust, TrustEvent};

named_enum! {
    /// Every test a block can fail.
    pub enum Test {
        Monobit => "monobit",
        Poker => "poker",
        Runs => "runs",
        LongRun => "long_run",
        ContinuousRun => "continuous_run",
        Rct => "rct",
        Apt => "apt",
        RepeatedBlock => "repeated_block",
    }
}

/// Which standard a test comes from: `check` reports the FIPS 140-2
/// verdicts exactly as `rngtest` counts them, and the others beside them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Fips140_2,
    Sp800_90b,
    /// Ours: a device that replays a buffer passes every statistical test.
    RepeatedBlock,
}

impl Test {
    pub const fn family(self) -> Family {
        match self {
            Self::Monobit | Self::Poker | Self::Runs | Self::LongRun | Self::ContinuousRun => {
                Family::Fips140_2
            }
            Self::Rct | Self::Apt => Family::Sp800_90b,
            Self::RepeatedBlock => Family::RepeatedBlock,
        }
    }

    /// The label in `check`'s text report (the FIPS ones as rngtest prints them).
    pub const fn label(self) -> &'static str {
        match self {
            Self::Monobit => "FIPS 140-2(2001-10-10) Monobit",
            Self::Poker => "FIPS 140-2(2001-10-10) Poker",
            Self::Runs => "FIPS 140-2(2001-10-10) Runs",
            Self::LongRun => "FIPS 140-2(2001-10-10) Long run",
            Self::ContinuousRun => "FIPS 140-2(2001-10-10) Continuous run",
            Self::Rct => "SP 800-90B Repetition Count",
            Self::Apt => "SP 800-90B Adaptive Proportion",
            Self::RepeatedBlock => "Repeated block (one of the last 256)",
        }
    }

    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// How many tests there are.
pub const TESTS: usize = Test::ALL.len();

/// Which tests one block failed; the block passes when none did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockVerdict {
    failed: u16,
}

impl BlockVerdict {
    /// Records whether `test` failed.
    pub fn set(&mut self, test: Test, failed: bool) {
        if failed {
            self.failed |= test.bit();
        }
    }

    pub fn failed(&self, test: Test) -> bool {
        self.failed & test.bit() != 0
    }

    /// Every test passed.
    pub fn passed(&self) -> bool {
        self.failed == 0
    }

    /// Every test of `family` passed.
    pub fn family_passed(&self, family: Family) -> bool {
        !self.failed_tests().any(|t| t.family() == family)
    }

    pub fn failed_tests(self) -> impl Iterator<Item = Test> {
        Test::ALL.iter().copied().filter(move |t| self.failed(*t))
    }
}

/// Per-test failure counts over many blocks, as `check` reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TestCounts {
    pub blocks: u64,
    /// Blocks that passed every test.
    pub successes: u64,
    pub failures: u64,
    /// Blocks that passed the FIPS 140-2 tests, whatever the others said:
    /// `rngtest`'s "FIPS 140-2 successes".
    pub fips_successes: u64,
    pub fips_failures: u64,
    /// Blocks that failed the RCT or the APT.
    pub sp800_90b_failures: u64,
    by_test: [u64; TESTS],
}

impl TestCounts {
    pub fn add(&mut self, v: &BlockVerdict) {
        self.blocks += 1;
        let (ok, fips_ok) = (v.passed(), v.family_passed(Family::Fips140_2));
        self.successes += u64::from(ok);
        self.failures += u64::from(!ok);
        self.fips_successes += u64::from(fips_ok);
        self.fips_failures += u64::from(!fips_ok);
        self.sp800_90b_failures += u64::from(!v.family_passed(Family::Sp800_90b));
        for t in v.failed_tests() {
            self.by_test[t as usize] += 1;
        }
    }

    /// Blocks that failed `test`.
    pub fn failed(&self, test: Test) -> u64 {
        self.by_test[test as usize]
    }
}

impl serde::Serialize for TestCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(6 + TESTS))?;
        m.serialize_entry("blocks", &self.blocks)?;
        m.serialize_entry("successes", &self.successes)?;
        m.serialize_entry("failures", &self.failures)?;
        m.serialize_entry("fips_successes", &self.fips_successes)?;
        m.serialize_entry("fips_failures", &self.fips_failures)?;
        m.serialize_entry("sp800_90b_failures", &self.sp800_90b_failures)?;
        for &t in Test::ALL {
            m.serialize_entry(t.name(), &self.failed(t))?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_test_is_counted_named_and_serialised() {
        let mut all = BlockVerdict::default();
        for &t in Test::ALL {
            all.set(t, true);
        }
        assert_eq!(all.failed_tests().collect::<Vec<_>>(), Test::ALL);
        let mut counts = TestCounts::default();
        counts.add(&all);
        let json = serde_json::to_value(counts).unwrap();
        for &t in Test::ALL {
            assert_eq!(counts.failed(t), 1, "{t}");
            assert_eq!(json[t.name()], 1, "{t} in JSON");
            assert!(!t.label().is_empty());
        }
        let names: std::collections::HashSet<_> = Test::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(names.len(), TESTS, "names are unique");
    }

    #[test]
    fn a_block_failing_only_sp800_90b_is_a_fips_success() {
        let mut v = BlockVerdict::default();
        v.set(Test::Apt, true);
        let mut c = TestCounts::default();
        c.add(&v);
        assert_eq!((c.fips_successes, c.fips_failures), (1, 0));
        assert_eq!((c.successes, c.failures, c.sp800_90b_failures), (0, 1, 1));
    }
}
