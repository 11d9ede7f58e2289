//! When a source is trusted, after rngd's rule and a little more.
//!
//! Good data fails FIPS 140-2 about once in 1,250 blocks, so one failure says
//! nothing: the block is dropped and the next one read at once. Failures are
//! forgiven one per `forgive_after` passes; a source that collects
//! `max_failures` unforgiven failures is marked failed, the loop fails over to
//! the next source, and the failed one is retried later with a backoff that
//! doubles up to a ceiling. A retried source must pass its start-up test
//! and [`super::PROBE_BLOCKS`] blocks to be trusted again
//! ([`super::Trust`], which applies this policy).

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailurePolicy {
    /// Unforgiven block failures that mark a source failed (rngd: 25).
    pub max_failures: u32,
    /// Passing blocks that forgive one failure (rngd: 1000).
    pub forgive_after: u32,
    /// First wait before a failed source is tried again.
    pub retry_initial: Duration,
    /// Longest wait between retries.
    pub retry_max: Duration,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        Self {
            max_failures: 25,
            forgive_after: 1000,
            retry_initial: Duration::from_secs(10),
            retry_max: Duration::from_secs(600),
        }
    }
}

/// One source's standing under the policy.
#[derive(Clone, Debug)]
pub struct SourceHealth {
    policy: FailurePolicy,
    failures: u32,
    passes: u32,
    failed_at: Option<Instant>,
    retry_wait: Duration,
}

impl SourceHealth {
    pub fn new(policy: FailurePolicy) -> Self {
        Self {
            policy,
            failures: 0,
            passes: 0,
            failed_at: None,
            retry_wait: policy.retry_initial,
        }
    }

    pub fn is_failed(&self) -> bool {
        self.failed_at.is_some()
    }

    /// Records a passing block.
    pub fn block_passed(&mut self) {
        self.passes += 1;
        if self.passes >= self.policy.forgive_after {
            self.passes = 0;
            self.failures = self.failures.saturating_sub(1);
        }
    }

    /// Records a failing block; true if this marks the source failed.
    pub fn block_failed(&mut self, now: Instant) -> bool {
        self.failures += 1;
        if self.failures >= self.policy.max_failures && !self.is_failed() {
            self.mark_failed(now);
            return true;
        }
        false
    }

    /// Marks the source failed for a reason outside the tests (it cannot be
    /// read); a source already failed has its backoff doubled.
    pub fn mark_failed(&mut self, now: Instant) {
        if self.is_failed() {
            self.retry_wait = (self.retry_wait * 2).min(self.policy.retry_max);
        }
        self.failed_at = Some(now);
    }

    /// Whether the source may be used now: healthy, or failed and due a retry.
    pub fn usable(&self, now: Instant) -> bool {
        match self.failed_at {
            None => true,
            Some(at) => now.duration_since(at) >= self.retry_wait,
        }
    }

    /// A retried source passed its probe: trust it again. Also a new
    /// standing for a source that now reads another device.
    pub fn recovered(&mut self) {
        *self = Self::new(self.policy);
    }

    /// How long after its failure a failed source waits for its retry.
    pub fn retry_wait(&self) -> Duration {
        self.retry_wait
    }

    /// Unforgiven failures so far (for reports).
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> FailurePolicy {
        FailurePolicy {
            max_failures: 3,
            forgive_after: 4,
            retry_initial: Duration::from_secs(10),
            retry_max: Duration::from_secs(25),
        }
    }

    #[test]
    fn fails_after_max_unforgiven_failures() {
        let now = Instant::now();
        let mut h = SourceHealth::new(policy());
        assert!(!h.block_failed(now));
        assert!(!h.block_failed(now));
        assert!(h.block_failed(now));
        assert!(h.is_failed());
        assert!(!h.usable(now));
        assert!(h.usable(now + Duration::from_secs(10)));
    }

    #[test]
    fn passes_forgive_failures() {
        let now = Instant::now();
        let mut h = SourceHealth::new(policy());
        h.block_failed(now);
        h.block_failed(now);
        for _ in 0..4 {
            h.block_passed();
        }
        assert_eq!(h.failures(), 1);
        assert!(!h.block_failed(now));
        assert!(!h.is_failed());
    }

    #[test]
    fn retry_backoff_doubles_up_to_the_ceiling_and_resets_on_recovery() {
        let t0 = Instant::now();
        let mut h = SourceHealth::new(policy());
        h.mark_failed(t0);
        h.mark_failed(t0);
        assert!(!h.usable(t0 + Duration::from_secs(19)));
        assert!(h.usable(t0 + Duration::from_secs(20)));
        h.mark_failed(t0);
        h.mark_failed(t0);
        assert!(h.usable(t0 + Duration::from_secs(25)));
        h.recovered();
        assert!(!h.is_failed());
        assert_eq!(h.failures(), 0);
    }
}
