//! How far one source is trusted, in one place: its gate (start-up test and
//! hold-back), its standing under the failure policy, the probe a retried
//! source must pass, and the passes the quarantine counts.
//!
//! The pool and [`crate::TestedRng`] both feed their blocks through a
//! [`Trust`], so a library user and the daemon judge a source alike by
//! construction. It does no I/O and reports nothing itself: each call says
//! what changed, and the caller logs and counts that.
//!
//! The rules, in the order a source meets them:
//! - after every (re)start the first block is the start-up test's, tested
//!   and discarded; a passing start-up block forgives nothing;
//! - a trusted source's failures count under the [`super::FailurePolicy`]; one
//!   that collects too many is marked failed;
//! - a failed source, when it is due its retry, starts over with a start-up
//!   test and must then pass [`PROBE_BLOCKS`] blocks in a row (across
//!   cycles) to be trusted again; one failure on the way ends the probe and
//!   doubles the wait;
//! - a read error marks the source failed as well (its stream broke), with
//!   no count of test failures;
//! - a released block is credited by the source's [`CreditRule`] and the
//!   newest min-entropy estimate known when it is released; bytes the
//!   caller says are not creditable (a replayable file, a stream nobody
//!   named) are credited nothing.
//!
//! The estimate itself is made elsewhere (on a thread of its own, in the
//! pool) and handed in with [`Trust::estimated`].

use std::time::{Duration, Instant};

use super::{Block, BlockVerdict, Gate, HealthConfig, SourceHealth, TESTS, Test};

/// Passing blocks in a row a retried source must give, after its start-up
/// test, to be trusted again. Fixed, not a batch: with a large batch a
/// source would otherwise have to pass millions of blocks without the one
/// false alarm in 1,250 that good data gives. 16 good blocks in a row fail
/// by chance about once in 80 tries.
pub const PROBE_BLOCKS: u32 = 16;

/// Per test, the blocks that failed it since the source last had no
/// unforgiven failure: what a verdict to give a source up rests on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TestTally(pub [u32; TESTS]);

impl std::fmt::Display for TestTally {
    /// `poker:20,runs:5`: the tests that failed, with their counts.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (t, n) in Test::ALL.iter().zip(self.0).filter(|(_, n)| *n > 0) {
            let sep = if first { "" } else { "," };
            write!(f, "{sep}{}:{n}", t.name())?;
            first = false;
        }
        Ok(())
    }
}

/// A change in how far the source is trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrustEvent {
    /// A trusted source collected too many unforgiven failures: not used
    /// until its retry.
    MarkedFailed {
        failures: u32,
        tests: TestTally,
        retry_in: Duration,
    },
    /// A retried source failed during its probe: retried later, after a
    /// doubled wait.
    ProbeFailed {
        tests: TestTally,
        retry_in: Duration,
    },
    /// A retried source passed its start-up test and the probe blocks.
    Recovered,
}

/// What one block did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pushed {
    pub verdict: BlockVerdict,
    /// The block was the start-up test's: tested, then discarded.
    pub start_up: bool,
    /// The block held back before this one passed every window and was
    /// copied out.
    pub released: bool,
    /// Bits the released block is credited, 0 when none was released.
    pub credit_bits: f64,
    pub event: Option<TrustEvent>,
}

/// What a source's released bytes are credited.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CreditRule {
    /// The source's claim, in bits per byte (0 to 8).
    pub claim: f64,
    /// `--entropy-per-byte auto`: never more than the newest estimate, and
    /// nothing before the first.
    pub capped_by_estimate: bool,
}

impl CreditRule {
    /// Nothing credited: what a source is until told its rule.
    pub const NONE: Self = Self {
        claim: 0.0,
        capped_by_estimate: false,
    };

    /// Bits per byte, given the newest estimate and whether the bytes may
    /// be credited at all.
    pub fn per_byte(self, estimate: Option<f64>, creditable: bool) -> f64 {
        match (creditable, self.capped_by_estimate, estimate) {
            (false, _, _) => 0.0,
            (true, false, _) => self.claim,
            (true, true, None) => 0.0,
            (true, true, Some(e)) => self.claim.min(e.max(0.0)),
        }
    }
}

/// One source's trust; see the module documentation for its rules.
#[derive(Clone, Debug)]
pub struct Trust {
    gate: Gate,
    health: SourceHealth,
    /// Marked failed by the health tests (not by a read error).
    failed_by_tests: bool,
    /// Passing blocks still needed before a retried source is trusted.
    probe_left: u32,
    /// Passing blocks since the last start-up test while trusted.
    trusted_passes: u64,
    tally: TestTally,
    blocks_passed: u64,
    blocks_failed: u64,
    credit: CreditRule,
    /// The open stream's bytes may be credited (see [`Trust::opened`]).
    creditable: bool,
    /// The newest min-entropy estimate, in bits per byte.
    estimate: Option<f64>,
}

impl Trust {
    /// Judged by `config`'s cutoffs and failure policy.
    pub fn new(config: &HealthConfig) -> Self {
        Self {
            gate: Gate::new(config.cutoffs()),
            health: SourceHealth::new(config.policy()),
            failed_by_tests: false,
            probe_left: 0,
            trusted_passes: 0,
            tally: TestTally::default(),
            blocks_passed: 0,
            blocks_failed: 0,
            credit: CreditRule::NONE,
            creditable: false,
            estimate: None,
        }
    }

    /// Credits released bytes by `rule`.
    pub fn crediting(self, rule: CreditRule) -> Self {
        Self {
            credit: rule,
            ..self
        }
    }

    /// A stream was opened: it starts with a start-up test, and its bytes
    /// are credited only if `creditable` (they come from a device, a CPU
    /// instruction or a stream the operator named).
    pub fn opened(&mut self, creditable: bool) {
        self.restart();
        self.creditable = creditable;
    }

    /// A min-entropy estimate of the source's tested bytes finished: it
    /// caps the credit of bytes released from now on.
    pub fn estimated(&mut self, bits_per_byte: f64) {
        self.estimate = Some(bits_per_byte);
    }

    /// The newest estimate handed in.
    pub fn estimate(&self) -> Option<f64> {
        self.estimate
    }

    /// Bits per byte a byte released now is credited.
    fn credit_per_byte(&self) -> f64 {
        self.credit.per_byte(self.estimate, self.creditable)
    }

    /// Before reading: `switched` says the reader comes to this source from
    /// another one (or from nothing). The stream then starts over with a
    /// start-up test, and so does a failed source due its retry, which
    /// begins its probe; a probe under way goes on across calls. Returns
    /// true when a probe begins.
    pub fn begin(&mut self, switched: bool) -> bool {
        let retry_starts = self.health.is_failed() && self.probe_left == 0;
        if switched || retry_starts {
            self.restart();
        }
        if retry_starts {
            self.probe_left = PROBE_BLOCKS;
        }
        retry_starts
    }

    /// Tests `block`, lets the block held before it out into `out` when
    /// every window containing it has passed, and counts the verdict.
    pub fn push(&mut self, block: &Block, out: &mut Block, now: Instant) -> Pushed {
        let step = self.gate.push(block, out);
        let credit_bits = match step.released {
            true => super::BLOCK_BYTES as f64 * self.credit_per_byte(),
            false => 0.0,
        };
        Pushed {
            verdict: step.verdict,
            start_up: step.start_up,
            released: step.released,
            credit_bits,
            event: self.judge(step.verdict, step.start_up, now),
        }
    }

    /// Counts a verdict reached elsewhere under the same rules as
    /// [`Trust::push`]: for `check`, which tests blocks on several threads
    /// and judges them here in stream order. `start_up` says the block was
    /// a start-up test's.
    pub fn judge(
        &mut self,
        verdict: BlockVerdict,
        start_up: bool,
        now: Instant,
    ) -> Option<TrustEvent> {
        if verdict.passed() {
            self.blocks_passed += 1;
            self.passed(start_up)
        } else {
            self.blocks_failed += 1;
            for t in verdict.failed_tests() {
                self.tally.0[t as usize] += 1;
            }
            self.failed(now)
        }
    }

    fn passed(&mut self, start_up: bool) -> Option<TrustEvent> {
        if start_up {
            return None;
        }
        if !self.health.is_failed() {
            self.health.block_passed();
            self.trusted_passes += 1;
            if self.health.failures() == 0 {
                self.tally = TestTally::default();
            }
            return None;
        }
        self.probe_left = self.probe_left.saturating_sub(1);
        if self.probe_left > 0 {
            return None;
        }
        self.health.recovered();
        self.failed_by_tests = false;
        Some(TrustEvent::Recovered)
    }

    fn failed(&mut self, now: Instant) -> Option<TrustEvent> {
        let probing = self.health.is_failed();
        if probing {
            self.health.mark_failed(now);
        } else if !self.health.block_failed(now) {
            return None;
        }
        self.failed_by_tests = true;
        self.probe_left = 0;
        let tests = std::mem::take(&mut self.tally);
        let retry_in = self.health.retry_wait();
        Some(match probing {
            true => TrustEvent::ProbeFailed { tests, retry_in },
            false => TrustEvent::MarkedFailed {
                failures: self.health.failures(),
                tests,
                retry_in,
            },
        })
    }

    /// The stream broke (a read failed): the held block's next window never
    /// comes, and the source is failed until its retry.
    pub fn stream_broke(&mut self, now: Instant) {
        self.restart();
        self.probe_left = 0;
        self.health.mark_failed(now);
    }

    /// The source could not be opened: failed until its retry.
    pub fn unavailable(&mut self, now: Instant) {
        self.health.mark_failed(now);
    }

    /// A new stream (opened, reopened): start-up test first, and the
    /// quarantine's passes counted anew.
    pub fn restart(&mut self) {
        self.gate.restart();
        self.trusted_passes = 0;
    }

    /// The source now reads another device (`rng_current` changed): its
    /// failures, backoff and probe are forgotten, and it is judged from a
    /// start-up test on bytes read from now on.
    pub fn rejudge(&mut self) {
        self.health.recovered();
        self.failed_by_tests = false;
        self.probe_left = 0;
        self.tally = TestTally::default();
        self.restart();
    }

    /// Whether the source may be read now: trusted, or due its retry.
    pub fn usable(&self, now: Instant) -> bool {
        self.health.usable(now)
    }

    /// Failed, by the tests or a read error, and not yet trusted again.
    pub fn is_failed(&self) -> bool {
        self.health.is_failed()
    }

    /// Failed by the health tests, and not yet trusted again.
    pub fn failed_by_tests(&self) -> bool {
        self.failed_by_tests
    }

    /// Passing blocks since the last start-up test while trusted: what
    /// lifts a quarantine.
    pub fn trusted_passes(&self) -> u64 {
        self.trusted_passes
    }

    /// Blocks passed and failed since start.
    pub fn blocks(&self) -> (u64, u64) {
        (self.blocks_passed, self.blocks_failed)
    }

    /// Whether a passed block waits for the next one.
    pub fn is_holding(&self) -> bool {
        self.gate.is_holding()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::BLOCK_BYTES;
    use crate::health::FailurePolicy;
    use crate::health::estimate::{DEFAULT_WINDOW, Sampling};
    use crate::test_support::passing_block;

    fn policy() -> FailurePolicy {
        FailurePolicy {
            max_failures: 3,
            forgive_after: 4,
            retry_initial: Duration::from_secs(10),
            retry_max: Duration::from_secs(40),
        }
    }

    fn trust() -> Trust {
        let config = HealthConfig::new(8.0, -40.0, policy(), DEFAULT_WINDOW, Sampling::Budget);
        Trust::new(&config.unwrap())
    }

    const ZEROS: Block = [0; super::super::BLOCK_BYTES];

    fn push(t: &mut Trust, b: &Block, now: Instant) -> Pushed {
        t.push(b, &mut [0; super::super::BLOCK_BYTES], now)
    }

    #[test]
    fn credit_is_the_claim_capped_by_the_estimate_under_auto_and_nothing_uncreditable() {
        let claim = |claim, capped_by_estimate| CreditRule {
            claim,
            capped_by_estimate,
        };
        assert_eq!(claim(8.0, false).per_byte(None, true), 8.0, "the claim");
        assert_eq!(
            claim(8.0, true).per_byte(None, true),
            0.0,
            "auto, no estimate yet"
        );
        assert_eq!(claim(8.0, true).per_byte(Some(7.5), true), 7.5);
        assert_eq!(
            claim(1.0 / 32.0, true).per_byte(Some(7.5), true),
            1.0 / 32.0
        );
        assert_eq!(claim(8.0, true).per_byte(Some(-0.1), true), 0.0);
        assert_eq!(
            claim(8.0, true).per_byte(Some(7.5), false),
            0.0,
            "not creditable"
        );
        assert_eq!(claim(8.0, false).per_byte(None, false), 0.0);
        assert_eq!(CreditRule::NONE.per_byte(Some(8.0), true), 0.0);
        // In a trust: the estimate known when a block is released counts,
        // and only a released block is credited.
        let now = Instant::now();
        let mut t = trust().crediting(claim(8.0, true));
        t.opened(true);
        assert_eq!(
            push(&mut t, &passing_block(1), now).credit_bits,
            0.0,
            "start-up"
        );
        assert_eq!(
            push(&mut t, &passing_block(2), now).credit_bits,
            0.0,
            "auto, no estimate"
        );
        t.estimated(6.0);
        let p = push(&mut t, &passing_block(3), now);
        assert!(p.released);
        assert_eq!(p.credit_bits, 6.0 * BLOCK_BYTES as f64);
        t.opened(false);
        push(&mut t, &passing_block(4), now);
        assert_eq!(
            push(&mut t, &passing_block(5), now).credit_bits,
            0.0,
            "a replayable file"
        );
    }

    #[test]
    fn a_passing_start_up_block_forgives_nothing() {
        let now = Instant::now();
        let mut t = trust();
        t.begin(true);
        let mut seed = 0;
        // Two failures, then restarts whose start-up blocks pass: were
        // they counted, four of them would forgive one failure.
        push(&mut t, &passing_block(seed), now);
        push(&mut t, &ZEROS, now);
        push(&mut t, &ZEROS, now);
        for _ in 0..8 {
            seed += 1;
            t.restart();
            assert!(push(&mut t, &passing_block(seed), now).start_up);
        }
        let e = push(&mut t, &ZEROS, now).event;
        assert!(
            matches!(e, Some(TrustEvent::MarkedFailed { failures: 3, .. })),
            "{e:?}"
        );
    }

    #[test]
    fn a_failed_source_is_retried_on_probation_and_trusted_after_the_probe_blocks() {
        let t0 = Instant::now();
        let mut t = trust();
        t.begin(true);
        let mut seed = 100;
        let mut next = || {
            seed += 1;
            passing_block(seed)
        };
        push(&mut t, &next(), t0);
        let mut event = None;
        for _ in 0..3 {
            event = push(&mut t, &ZEROS, t0).event;
        }
        let Some(TrustEvent::MarkedFailed {
            tests, retry_in, ..
        }) = event
        else {
            panic!("{event:?}")
        };
        assert_eq!(
            tests.to_string(),
            "monobit:3,poker:3,runs:3,long_run:3,continuous_run:3,rct:3,apt:3,repeated_block:2"
        );
        assert_eq!(retry_in, Duration::from_secs(10));
        assert!(t.failed_by_tests() && !t.usable(t0));
        let t1 = t0 + retry_in;
        assert!(t.usable(t1));
        assert!(t.begin(false), "the retry starts a probe");
        assert!(push(&mut t, &next(), t1).start_up);
        for i in 1..PROBE_BLOCKS {
            assert_eq!(push(&mut t, &next(), t1).event, None, "probe block {i}");
            assert!(!t.begin(false), "the probe goes on across calls");
        }
        assert_eq!(push(&mut t, &next(), t1).event, Some(TrustEvent::Recovered));
        assert!(!t.is_failed() && !t.failed_by_tests());
    }

    #[test]
    fn a_failure_in_the_probe_ends_it_and_doubles_the_wait() {
        let t0 = Instant::now();
        let mut t = trust();
        t.begin(true);
        for _ in 0..3 {
            push(&mut t, &ZEROS, t0);
        }
        let t1 = t0 + Duration::from_secs(10);
        assert!(t.begin(false));
        push(&mut t, &passing_block(7), t1);
        push(&mut t, &passing_block(8), t1);
        let e = push(&mut t, &ZEROS, t1).event;
        let Some(TrustEvent::ProbeFailed { retry_in, tests }) = e else {
            panic!("{e:?}")
        };
        assert_eq!(retry_in, Duration::from_secs(20));
        assert_eq!(tests.0[Test::Monobit as usize], 1, "{tests}");
        assert!(!t.usable(t1 + Duration::from_secs(19)));
        assert!(t.usable(t1 + Duration::from_secs(20)));
        assert!(t.begin(false), "a new probe, from a start-up test");
    }

    #[test]
    fn a_read_error_fails_the_source_without_blaming_the_tests_and_a_switch_rejudges() {
        let t0 = Instant::now();
        let mut t = trust();
        t.begin(true);
        push(&mut t, &passing_block(1), t0);
        push(&mut t, &passing_block(2), t0);
        push(&mut t, &passing_block(3), t0);
        assert_eq!(t.trusted_passes(), 2);
        t.stream_broke(t0);
        assert!(t.is_failed() && !t.failed_by_tests() && !t.is_holding());
        assert_eq!(t.trusted_passes(), 0);
        for _ in 0..3 {
            push(&mut t, &ZEROS, t0);
        }
        assert!(t.failed_by_tests());
        t.rejudge();
        assert!(!t.is_failed() && !t.failed_by_tests() && t.usable(t0));
        assert!(push(&mut t, &passing_block(4), t0).start_up);
        assert_eq!(t.blocks(), (4, 3));
    }
}
