//! What judging a source takes, checked once: the SP 800-90B cutoffs and
//! the claim they were sized from, the failure policy, and the min-entropy
//! assessment's windows.
//!
//! `run`, `once` and `check` build it from the command line in one
//! conversion ([`crate::cli`]); a [`crate::TestedRng`] takes the default.
//! Every [`super::Trust`] and every assessment is made from one, so no
//! part of the program sizes a test from its own copy of an option. The
//! fields are private: a value of this type has passed [`HealthConfig::new`].

use std::time::Duration;

use super::estimate::{DEFAULT_WINDOW, Sampling, WindowSizeError, window_size};
use super::{CutoffError, Cutoffs, FailurePolicy};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HealthConfig {
    cutoffs: Cutoffs,
    claimed_min_entropy: f64,
    alpha_log2: f64,
    policy: FailurePolicy,
    estimate_window: usize,
    estimate_every: Sampling,
}

/// Why a health configuration was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum HealthConfigError {
    #[error(transparent)]
    Cutoffs(#[from] CutoffError),
    #[error("the longest retry wait {max:?} is shorter than the first {initial:?}")]
    RetryMax { max: Duration, initial: Duration },
    #[error("no failure may mark a source failed: at least one is needed")]
    MaxFailures,
    #[error(transparent)]
    Window(#[from] WindowSizeError),
}

impl HealthConfig {
    /// `claimed_min_entropy` is H in bits per byte and `alpha_log2` log2 of
    /// the RCT's and APT's false-alarm rate, as for [`Cutoffs::new`].
    pub fn new(
        claimed_min_entropy: f64,
        alpha_log2: f64,
        policy: FailurePolicy,
        estimate_window: usize,
        estimate_every: Sampling,
    ) -> Result<Self, HealthConfigError> {
        let cutoffs = Cutoffs::new(claimed_min_entropy, alpha_log2)?;
        if policy.retry_max < policy.retry_initial {
            return Err(HealthConfigError::RetryMax {
                max: policy.retry_max,
                initial: policy.retry_initial,
            });
        }
        if policy.max_failures == 0 {
            return Err(HealthConfigError::MaxFailures);
        }
        window_size(estimate_window as u64)?;
        Ok(Self {
            cutoffs,
            claimed_min_entropy,
            alpha_log2,
            policy,
            estimate_window,
            estimate_every,
        })
    }

    pub fn cutoffs(&self) -> Cutoffs {
        self.cutoffs
    }

    /// The H the cutoffs were sized from, shown beside the estimate.
    pub fn claimed_min_entropy(&self) -> f64 {
        self.claimed_min_entropy
    }

    /// The RCT's and APT's false-alarm rate per sample.
    pub fn alpha(&self) -> f64 {
        self.alpha_log2.exp2()
    }

    pub fn policy(&self) -> FailurePolicy {
        self.policy
    }

    /// Samples per assessment window.
    pub fn estimate_window(&self) -> usize {
        self.estimate_window
    }

    /// Which windows are assessed.
    pub fn estimate_every(&self) -> Sampling {
        self.estimate_every
    }
}

impl Default for HealthConfig {
    /// The daemon's defaults: H = 8 bits per byte, alpha = 2^-40, the
    /// default failure policy, windows of a million samples within the
    /// time budget.
    fn default() -> Self {
        let policy = FailurePolicy::default();
        Self::new(8.0, -40.0, policy, DEFAULT_WINDOW, Sampling::Budget)
            .unwrap_or_else(|e| unreachable!("the defaults are valid: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::estimate::{MAX_WINDOW, MIN_WINDOW};

    fn too(n: usize) -> Result<HealthConfig, HealthConfigError> {
        Err(HealthConfigError::Window(WindowSizeError(n as u64)))
    }

    fn with(policy: FailurePolicy, window: usize) -> Result<HealthConfig, HealthConfigError> {
        HealthConfig::new(8.0, -40.0, policy, window, Sampling::Budget)
    }

    #[test]
    fn each_inconsistent_value_is_refused_and_the_defaults_are_the_daemons() {
        let d = HealthConfig::default();
        assert_eq!(d.cutoffs(), Cutoffs::new(8.0, -40.0).unwrap());
        assert_eq!(d.policy(), FailurePolicy::default());
        assert_eq!(d.estimate_window(), DEFAULT_WINDOW);
        assert_eq!(d.alpha(), (-40f64).exp2());
        let p = FailurePolicy::default();
        let short = FailurePolicy {
            retry_max: p.retry_initial / 2,
            ..p
        };
        assert!(matches!(
            with(short, DEFAULT_WINDOW),
            Err(HealthConfigError::RetryMax { .. })
        ));
        let none = FailurePolicy {
            max_failures: 0,
            ..p
        };
        assert_eq!(
            with(none, DEFAULT_WINDOW),
            Err(HealthConfigError::MaxFailures)
        );
        assert_eq!(with(p, MIN_WINDOW - 1), too(MIN_WINDOW - 1));
        assert_eq!(with(p, MAX_WINDOW + 1), too(MAX_WINDOW + 1));
        assert!(with(p, MIN_WINDOW).is_ok() && with(p, MAX_WINDOW).is_ok());
        assert!(matches!(
            HealthConfig::new(0.01, -40.0, p, DEFAULT_WINDOW, Sampling::Off),
            Err(HealthConfigError::Cutoffs(CutoffError::AptOff { .. }))
        ));
    }
}
