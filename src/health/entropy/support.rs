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
/// tool has it (`ZALPHA`), not rounded.
pub const Z_ALPHA: f64 = 2.5758293035489008;

/// One track of samples: symbols in `0..alphabet`.
#[derive(Clone, Copy, Debug)]
pub struct Track<'a> {
    pub symbols: &'a [u8],
    /// How many distinct symbols the track may hold (2 for a bitstring).
    pub alphabet: usize,
}
