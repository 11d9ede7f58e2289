//! NIST SP 800-90B section 4.4 continuous health tests on the byte stream.
//!
//! The Repetition Count Test catches a source stuck on one value; the
//! Adaptive Proportion Test catches one value coming up far too often. Both
//! run on every byte, carry their state across blocks, and are sized from
//! the claimed min-entropy per byte `H` and the false-alarm rate `alpha`.

use super::swar;

/// APT window for non-binary (byte) samples, from SP 800-90B 4.4.2.
pub const APT_WINDOW: u32 = 512;

/// Cutoffs derived from the claimed entropy and the false-alarm rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Cutoffs {
    /// The RCT fails when one byte value repeats this many times in a row.
    pub rct: u32,
    /// The APT fails when the window's first byte occurs this often in it.
    pub apt: u32,
}

/// Why a (H, alpha) pair gives no meaningful cutoffs.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CutoffError {
    #[error("min-entropy {0} is outside (0, 8] bits per byte")]
    MinEntropy(f64),
    #[error("alpha 2^{0} is not a false-alarm rate between 2^-1024 and 2^-1")]
    Alpha(f64),
    #[error(
        "min-entropy {h} with alpha 2^{alpha_log2} puts the APT cutoff beyond its {APT_WINDOW}-sample \
         window, so the test could never fail: H must be at least {min} (-log2(alpha) / {APT_WINDOW})"
    )]
    AptOff { h: f64, alpha_log2: f64, min: f64 },
}

impl Cutoffs {
    /// `min_entropy` is H in bits per byte (0 < H <= 8); `alpha_log2` is
    /// log2 of the false-alarm probability (for example -40).
    ///
    /// The APT needs H >= -log2(alpha) / 512: below that, even a window of
    /// 512 equal bytes is more likely than alpha, and the cutoff would lie
    /// beyond the window.
    pub fn new(min_entropy: f64, alpha_log2: f64) -> Result<Self, CutoffError> {
        if !(min_entropy > 0.0 && min_entropy <= 8.0) {
            return Err(CutoffError::MinEntropy(min_entropy));
        }
        if !(-1024.0..=-1.0).contains(&alpha_log2) {
            return Err(CutoffError::Alpha(alpha_log2));
        }
        let min = -alpha_log2 / f64::from(APT_WINDOW);
        if min_entropy < min {
            return Err(CutoffError::AptOff {
                h: min_entropy,
                alpha_log2,
                min,
            });
        }
        // C = 1 + ceil(-log2(alpha) / H); at most 1 + 1024 / (2/512) here.
        let rct = 1 + (-alpha_log2 / min_entropy).ceil() as u32;
        // C = 1 + CRITBINOM(W, 2^-H, 1 - alpha): the smallest count whose
        // upper tail P(X > c) is at most alpha, plus one.
        let p = (-min_entropy).exp2();
        let apt = (1 + binomial_critical(APT_WINDOW, p, alpha_log2)).min(APT_WINDOW);
        Ok(Self { rct, apt })
    }
}

/// Smallest `c` with P(X > c) <= 2^alpha_log2 for X ~ Binomial(n, p). The
/// tail is summed in log space from the top so that 2^-40 is not lost to
/// rounding against 1.
fn binomial_critical(n: u32, p: f64, alpha_log2: f64) -> u32 {
    let ln_alpha = alpha_log2 * std::f64::consts::LN_2;
    let ln_pmf = |k: u32| ln_choose(n, k) + f64::from(k) * p.ln() + f64::from(n - k) * (-p).ln_1p();
    // tail(c) = sum_{k > c} pmf(k); walk c down from n while it stays small.
    let mut ln_tail = f64::NEG_INFINITY;
    let mut c = n;
    while c > 0 {
        let with_c = ln_add(ln_tail, ln_pmf(c));
        if with_c > ln_alpha {
            break;
        }
        ln_tail = with_c;
        c -= 1;
    }
    c
}

fn ln_add(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    hi + (lo - hi).exp().ln_1p()
}

fn ln_choose(n: u32, k: u32) -> f64 {
    let k = k.min(n - k);
    (0..k)
        .map(|i| f64::from(n - i).ln() - f64::from(i + 1).ln())
        .sum()
}

/// Repetition Count Test state.
#[derive(Clone, Debug)]
pub struct RepetitionCount {
    cutoff: u32,
    last: Option<u8>,
    count: u32,
}

impl RepetitionCount {
    pub fn new(cutoff: u32) -> Self {
        Self {
            cutoff,
            last: None,
            count: 0,
        }
    }

    /// Feeds bytes in order; true if the test fired at least once. After a
    /// failure the count restarts so that each stuck stretch counts once.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        let screen = RctScreen::of(bytes);
        self.feed_screened(bytes, screen)
    }

    /// As [`Self::feed`], with the bytes screened already (on any thread:
    /// the screen depends on the bytes alone).
    pub fn feed_screened(&mut self, bytes: &[u8], screen: RctScreen) -> bool {
        if self.cutoff < 3 || screen != RctScreen::NoTriple {
            return self.feed_bytes(bytes);
        }
        // The head goes byte by byte: it continues the run carried in.
        let mut failed = self.feed_bytes(&bytes[..RctScreen::HEAD]);
        let words_end = RctScreen::words_end(bytes.len());
        // No byte from HEAD on equals the two before it: no run reaches 3,
        // and the run at the end of the words is 1 or 2 long.
        let (a, b) = (bytes[words_end - 2], bytes[words_end - 1]);
        self.last = Some(b);
        self.count = if a == b { 2 } else { 1 };
        failed |= self.feed_bytes(&bytes[words_end..]);
        failed
    }

    fn feed_bytes(&mut self, bytes: &[u8]) -> bool {
        let mut failed = false;
        for &b in bytes {
            if self.last == Some(b) {
                self.count += 1;
                if self.count >= self.cutoff {
                    failed = true;
                    self.last = None;
                    self.count = 0;
                }
            } else {
                self.last = Some(b);
                self.count = 1;
            }
        }
        failed
    }
}

/// Whether a slice can hold a run of three equal bytes past its first few.
/// Good data has three equal bytes in a row about once in 65,536 positions,
/// so with a cutoff of 3 or more the bytes after the first few are screened
/// a word at a time; only a slice that has such a triple is walked byte by
/// byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RctScreen {
    /// Too short to screen, or a triple is there: walk every byte.
    #[default]
    Walk,
    /// No byte from the head on equals the two before it.
    NoTriple,
}

impl RctScreen {
    /// Bytes walked one by one: they continue the run carried in.
    const HEAD: usize = 8;

    fn words_end(len: usize) -> usize {
        Self::HEAD + (len - Self::HEAD) / 8 * 8
    }

    #[inline(always)]
    pub fn of(bytes: &[u8]) -> Self {
        if bytes.len() < Self::HEAD + 8 {
            return Self::Walk;
        }
        // Each byte against the one and the two before it, as three shifted
        // views of the slice: a plain loop the compiler turns into vector
        // compares at whatever width the CPU has.
        let end = Self::words_end(bytes.len());
        let (at, one_back, two_back) = (
            &bytes[Self::HEAD..end],
            &bytes[Self::HEAD - 1..end - 1],
            &bytes[Self::HEAD - 2..end - 2],
        );
        let mut triples = 0u8;
        for ((a, b), c) in at.iter().zip(one_back).zip(two_back) {
            triples |= u8::from(a == b) & u8::from(a == c);
        }
        if triples == 0 {
            Self::NoTriple
        } else {
            Self::Walk
        }
    }
}

/// Adaptive Proportion Test state.
#[derive(Clone, Debug)]
pub struct AdaptiveProportion {
    cutoff: u32,
    first: u8,
    count: u32,
    seen: u32,
}

impl AdaptiveProportion {
    pub fn new(cutoff: u32) -> Self {
        Self {
            cutoff,
            first: 0,
            count: 0,
            seen: 0,
        }
    }

    /// Feeds bytes in order; true if any window reached the cutoff. A failed
    /// window is abandoned and the next byte opens a new one.
    ///
    /// The rest of a window is counted a word at a time; only a window that
    /// reaches the cutoff is walked byte by byte, to end it where it failed.
    #[inline(always)]
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        let mut failed = false;
        let mut rest = bytes;
        while let Some((&b, after)) = rest.split_first() {
            if self.seen == 0 {
                self.first = b;
                self.count = 1;
                self.seen = 1;
                rest = after;
                continue;
            }
            let take = rest.len().min((APT_WINDOW - self.seen) as usize);
            let (window, after) = rest.split_at(take);
            let n = swar::count_equal(window, self.first);
            if self.count + n < self.cutoff {
                self.count += n;
                self.seen += take as u32;
                if self.seen == APT_WINDOW {
                    self.seen = 0;
                }
                rest = after;
                continue;
            }
            failed = true;
            let mut at = 0;
            for (i, &b) in window.iter().enumerate() {
                self.count += u32::from(b == self.first);
                if self.count >= self.cutoff {
                    at = i + 1;
                    break;
                }
            }
            self.seen = 0;
            rest = &rest[at..];
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (H, -log2 alpha, RCT cutoff, APT cutoff), worked out apart from this
    /// code: RCT as 1 + ceil(N / H) by hand; APT with exact rational
    /// arithmetic in Python (fractions.Fraction, math.comb; 2^-0.5 from a
    /// 100-digit decimal), walking c down from 512 while
    /// sum_{k > c} C(512, k) p^k (1 - p)^(512 - k) <= 2^-N, cutoff = 1 + c.
    /// The alpha = 2^-20 column is SP 800-90B's table 2.
    const TABLE: [(f64, u32, u32, u32); 21] = [
        (0.5, 20, 41, 410),
        (0.5, 30, 61, 422),
        (0.5, 40, 81, 432),
        (1.0, 20, 21, 311),
        (1.0, 30, 31, 325),
        (1.0, 40, 41, 336),
        (2.0, 20, 11, 177),
        (2.0, 30, 16, 190),
        (2.0, 40, 21, 201),
        (4.0, 20, 6, 62),
        (4.0, 30, 9, 71),
        (4.0, 40, 11, 78),
        (6.0, 20, 5, 25),
        (6.0, 30, 6, 31),
        (6.0, 40, 8, 35),
        (7.0, 20, 4, 18),
        (7.0, 30, 6, 22),
        (7.0, 40, 7, 26),
        (8.0, 20, 4, 13),
        (8.0, 30, 5, 16),
        (8.0, 40, 6, 19),
    ];

    #[test]
    fn cutoffs_match_an_independent_computation() {
        for (h, n, rct, apt) in TABLE {
            let c = Cutoffs::new(h, -f64::from(n)).unwrap();
            assert_eq!((c.rct, c.apt), (rct, apt), "H = {h}, alpha = 2^-{n}");
        }
    }

    #[test]
    fn cutoffs_that_would_mean_nothing_are_refused() {
        assert!(matches!(
            Cutoffs::new(1e-9, -40.0),
            Err(CutoffError::AptOff { .. })
        ));
        assert!(matches!(
            Cutoffs::new(0.07, -40.0),
            Err(CutoffError::AptOff { .. })
        ));
        assert!(Cutoffs::new(40.0 / 512.0, -40.0).unwrap().apt <= APT_WINDOW);
        for h in [0.0, -1.0, 8.5, f64::NAN, f64::INFINITY] {
            assert!(
                Cutoffs::new(h, -40.0)
                    .unwrap_err()
                    .to_string()
                    .contains("min-entropy")
            );
        }
        for a in [0.0, 1.0, f64::NAN, f64::NEG_INFINITY, -2000.0] {
            assert!(matches!(Cutoffs::new(8.0, a), Err(CutoffError::Alpha(_))));
        }
    }

    #[test]
    fn rct_fires_at_the_cutoff_and_not_before() {
        let mut t = RepetitionCount::new(6);
        assert!(!t.feed(&[1, 7, 7, 7, 7, 7, 2]));
        assert!(t.feed(&[9, 7, 7, 7, 7, 7, 7]));
        // State carries across calls.
        let mut t = RepetitionCount::new(6);
        assert!(!t.feed(&[3, 3, 3]));
        assert!(t.feed(&[3, 3, 3]));
    }

    #[test]
    fn apt_fires_when_the_first_value_dominates_a_window() {
        let mut t = AdaptiveProportion::new(14);
        let mut window: Vec<u8> = (0..512u32).map(|i| (i * 37 % 251) as u8 + 1).collect();
        window[0] = 0;
        assert!(!t.feed(&window));
        for slot in window.iter_mut().skip(1).step_by(40).take(13) {
            *slot = 0;
        }
        assert!(t.feed(&window));
    }
}
