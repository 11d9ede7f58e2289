//! What every SP 800-90B §6.3 estimator shares: the confidence constant and
//! the shape of its input.
//!
//! An estimator takes one track of samples, already in NIST's form: the
//! literal track holds symbols translated to `0..k` (the `k` distinct values
//! seen, in increasing order), the bitstring track holds one bit per byte
//! (0 or 1, most significant bit of each sample first) with `k = 2`. It
//! returns the min-entropy in bits per symbol of that track, or `None` where
//! NIST's tool reports nothing for it (an estimate that does not apply, or
//! too few samples for it).

/// The normal quantile of the standard's 99 % confidence bounds, as NIST's
/// tool has it (`ZALPHA`), not rounded: the digits are NIST's, whatever
/// an f64 holds of them.
#[allow(clippy::excessive_precision)]
pub const Z_ALPHA: f64 = 2.5758293035489008;

/// One track of samples: symbols in `0..alphabet`.
#[derive(Clone, Copy, Debug)]
pub struct Track<'a> {
    pub symbols: &'a [u8],
    /// How many distinct symbols the track may hold (2 for a bitstring).
    pub alphabet: usize,
}

/// NIST's stopping test for its bisections, `relEpsilonEqual(a, b,
/// DBL_MIN, DBL_EPSILON, 4)` as every estimator calls it: equal within
/// `DBL_EPSILON` relative, within `DBL_MIN` absolute where a relative test
/// makes no sense (near zero), or within 4 ulps. Copied exactly, since
/// where a bisection stops decides the last digits of an estimate.
pub fn rel_epsilon_equal(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return false;
    }
    if a == b {
        return true;
    }
    if a.is_infinite() || b.is_infinite() {
        return false;
    }
    let (small, large) = if a.abs() > b.abs() { (b, a) } else { (a, b) };
    let diff = (large - small).abs();
    let tiny = f64::MIN_POSITIVE;
    if small.abs() < tiny || diff < tiny || diff.is_infinite() || large.abs() * f64::EPSILON < tiny
    {
        return diff <= tiny;
    }
    if diff <= large.abs() * f64::EPSILON {
        return true;
    }
    if small.is_sign_negative() != large.is_sign_negative() {
        return false;
    }
    large.abs().to_bits() - small.abs().to_bits() <= 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rel_epsilon_equal_as_nist() {
        assert!(rel_epsilon_equal(1.0, 1.0));
        assert!(rel_epsilon_equal(1.0, 1.0 + f64::EPSILON));
        let four_ulps = f64::from_bits(2.0f64.to_bits() + 4);
        assert!(rel_epsilon_equal(2.0, four_ulps));
        assert!(!rel_epsilon_equal(
            2.0,
            f64::from_bits(2.0f64.to_bits() + 5)
        ));
        assert!(!rel_epsilon_equal(f64::NAN, f64::NAN));
        assert!(rel_epsilon_equal(0.0, f64::MIN_POSITIVE / 2.0));
        let t = 0.99f64.ln();
        assert!(rel_epsilon_equal(f64::from_bits(t.to_bits() + 4), t));
        assert!(!rel_epsilon_equal(f64::from_bits(t.to_bits() + 5), t));
        assert!(!rel_epsilon_equal(f64::NAN, t));
    }
}
