//! A verdict for CI gates: does the number of failing blocks say the source
//! is bad, given how often good data fails by chance?
//!
//! rngtest, and `check`'s exit code like it, fail a run on any failing
//! block; but good data fails FIPS 140-2 about once in 1,200 blocks, so a
//! long run of a good device always "fails". The verdict instead asks how
//! likely so many failures are from a good source, and fails the run only
//! when that is below a stated bound (the false-alarm rate of the gate).
//!
//! The rate of good data is an upper bound, so that the false-alarm bound
//! holds: FIPS 140-2 failed 832 of 1,000,000 blocks of `/dev/urandom`
//! (`check --source /dev/urandom --blocks 1000000`: monobit 114, poker 108,
//! runs 304, long run 308), whose 99.99 % upper bound is 9.4e-4; the verdict
//! takes 1e-3. The SP 800-90B tests and the repeated-block test fail good
//! data at their own, designed rates (the RCT and APT each at most alpha
//! per sample, the repeated-block test 2^-56 per block). Each family is
//! judged at half the bound (Bonferroni), so that the whole verdict keeps it.
//!
//! A count of failures from a good source is binomial with a tiny rate;
//! its tail is taken from the Poisson law of the same mean, which differs
//! from it by less than the rate itself.

/// Blocks of good data failing FIPS 140-2: an upper bound of the measured
/// rate (see the module's documentation).
pub const FIPS_GOOD_FAILURE_RATE: f64 = 1e-3;
/// The default false-alarm bound of the verdict.
pub const DEFAULT_BOUND: f64 = 1e-6;

/// The verdict on one family of tests.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct FamilyVerdict {
    pub failures: u64,
    /// Failures a good source gives on average in as many blocks.
    pub expected: f64,
    /// The chance that a good source gives at least as many.
    pub p_value: f64,
}

/// Whether the run passes, at a stated false-alarm bound.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Verdict {
    pub bound: f64,
    pub fips_140_2: FamilyVerdict,
    /// The SP 800-90B tests and the repeated-block test together.
    pub others: FamilyVerdict,
    pub passed: bool,
}

/// The verdict on `blocks` blocks with `fips` FIPS 140-2 failures and
/// `others` blocks failing the SP 800-90B or repeated-block tests, whose
/// RCT and APT were sized for a false-alarm rate of `alpha` per sample.
pub fn verdict(blocks: u64, fips: u64, others: u64, alpha: f64, bound: f64) -> Verdict {
    let samples_per_block = crate::health::BLOCK_BYTES as f64;
    let other_rate = (2.0 * samples_per_block * alpha + (-56f64).exp2()).min(1.0);
    let judge = |failures: u64, rate: f64| {
        let expected = blocks as f64 * rate;
        FamilyVerdict {
            failures,
            expected,
            p_value: poisson_tail(expected, failures),
        }
    };
    let fips_140_2 = judge(fips, FIPS_GOOD_FAILURE_RATE);
    let others = judge(others, other_rate);
    Verdict {
        bound,
        fips_140_2,
        others,
        passed: fips_140_2.p_value >= bound / 2.0 && others.p_value >= bound / 2.0,
    }
}

/// P(X >= k) for X Poisson with mean `lambda`.
fn poisson_tail(lambda: f64, k: u64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if lambda <= 0.0 {
        return 0.0;
    }
    // ln P(X = i), from ln(i!) summed as i grows.
    let ln_term = |i: u64, ln_factorial: f64| -lambda + i as f64 * lambda.ln() - ln_factorial;
    if (k as f64) <= lambda {
        // The tail is large: one less the sum of the terms below k.
        let (mut below, mut ln_factorial) = (0.0, 0.0);
        for i in 0..k {
            if i > 0 {
                ln_factorial += (i as f64).ln();
            }
            below += ln_term(i, ln_factorial).exp();
        }
        return (1.0 - below).clamp(0.0, 1.0);
    }
    // Past the mean the terms fall: sum from k until they stop counting.
    let mut ln_factorial: f64 = (1..=k).map(|i| (i as f64).ln()).sum();
    let (mut tail, mut i) = (0.0, k);
    loop {
        let term = ln_term(i, ln_factorial).exp();
        tail += term;
        if term <= tail * 1e-17 || term == 0.0 {
            break;
        }
        i += 1;
        ln_factorial += (i as f64).ln();
    }
    tail.clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poisson_tail_matches_its_closed_forms() {
        // P(X >= 1) = 1 - e^-l; P(X >= 2) = 1 - e^-l (1 + l).
        for l in [0.01, 0.5, 3.0, 40.0] {
            assert!(
                (poisson_tail(l, 1) - (1.0 - (-l).exp())).abs() < 1e-12,
                "{l}"
            );
            assert!(
                (poisson_tail(l, 2) - (1.0 - (-l).exp() * (1.0 + l))).abs() < 1e-12,
                "{l}"
            );
        }
        assert_eq!(poisson_tail(5.0, 0), 1.0);
        // Far in the tail: P(X >= 10 | 1) = 1.114e-7 (a table value).
        assert!((poisson_tail(1.0, 10) / 1.1142547e-7 - 1.0).abs() < 1e-6);
        assert_eq!(poisson_tail(0.0, 3), 0.0);
    }

    #[test]
    fn a_good_device_passes_long_runs_that_rngtest_fails() {
        let alpha = (-40f64).exp2();
        // 1,000,000 blocks of /dev/urandom: 832 FIPS failures, none other.
        let v = verdict(1_000_000, 832, 0, alpha, DEFAULT_BOUND);
        assert!(v.passed, "{v:?}");
        assert!((v.fips_140_2.expected - 1000.0).abs() < 1e-9);
        // Three failures in a thousand blocks: rare, not damning.
        assert!(verdict(1000, 3, 0, alpha, DEFAULT_BOUND).passed);
    }

    #[test]
    fn a_bad_device_fails_and_the_bound_decides_where() {
        let alpha = (-40f64).exp2();
        // A device failing 1 % of its blocks.
        assert!(!verdict(10_000, 100, 0, alpha, DEFAULT_BOUND).passed);
        // Ten failures in a thousand blocks (expected 1): p = 1.1e-7.
        let v = verdict(1000, 10, 0, alpha, DEFAULT_BOUND);
        assert!(!v.passed, "{v:?}");
        assert!(
            verdict(1000, 10, 0, alpha, 1e-7).passed,
            "a smaller false-alarm bound passes it"
        );
        // The RCT and APT are designed to fail good data at 2^-40 a sample:
        // in 1000 blocks one failure has p = 4.5e-6, two p = 1e-11.
        let one = verdict(1000, 0, 1, alpha, DEFAULT_BOUND);
        assert!(
            one.passed && (one.others.p_value / 4.547e-6 - 1.0).abs() < 1e-3,
            "{one:?}"
        );
        assert!(!verdict(1000, 0, 2, alpha, DEFAULT_BOUND).passed);
        assert!(!verdict(1000, 0, 1, alpha, 1e-4).passed);
    }
}
