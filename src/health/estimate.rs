//! How much entropy a source really delivers: SP 800-90B §6.3 min-entropy
//! estimates computed online, over windows of the source's own bytes.
//!
//! Two estimators, and the lower of the two is the source's estimate:
//! - the Most Common Value estimate (§6.3.1): how often the commonest byte
//!   occurs, with the standard's 99 % upper bound;
//! - the MultiMMC prediction estimate (§6.3.10) of order 1 on bytes: a
//!   predictor that guesses each byte as the commonest successor so far of
//!   the byte before it, judged by its global hit rate (with its upper
//!   bound) and by its longest run of hits (the local bound). It sees the
//!   sequential structure MCV cannot: a counter has flat byte counts, but
//!   its next byte is always the last one plus one.
//!
//! The predictor follows NIST's reference implementation
//! (SP800-90B_EntropyAssessment): the first transition seeds the table,
//! predictions start at the third byte (N = L - 2), a context never seen
//! makes no prediction (neither a hit nor the end of a run), and of equal
//! counts the larger byte value is predicted.
//!
//! Windows are consecutive, not overlapping, and sampled: one window in
//! every `every` is estimated, the others only counted past, because the
//! predictor's table costs about three times what all the health tests
//! cost per byte (benchmarked: `cargo bench --bench health`). At the
//! defaults, one 64 KiB window in 64 (one estimate per 4 MiB, about 5 %
//! of the gate's time): a new estimate every 7 minutes from a 10 KB/s
//! device, many a second from RDRAND. An estimate always describes the
//! newest estimated window.

/// Bytes per estimated window, by default: 64 KiB, where the 99 % bounds
/// put a full-entropy source at about 7.7 bits per byte.
pub const DEFAULT_WINDOW: usize = 64 * 1024;
/// One window in this many is estimated, by default.
pub const DEFAULT_EVERY: u32 = 64;
/// The smallest window: below it the bounds say little.
pub const MIN_WINDOW: usize = 4096;
/// The normal quantile of the standard's 99 % confidence bounds.
const Z_ALPHA: f64 = 2.576;

/// One window's estimates, in bits per byte.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Estimate {
    /// Most Common Value estimate.
    pub mcv: f64,
    /// MultiMMC (order 1) prediction estimate.
    pub mmc: f64,
    /// The lower of the two: the source's estimate.
    pub min: f64,
    /// Bytes the window held.
    pub bytes: u64,
}

/// Estimates one stream's min-entropy window after window.
#[derive(Clone, Debug)]
pub struct Estimator {
    window: usize,
    every: u32,
    /// Windows started, the current one included.
    windows: u64,
    seen: usize,
    counts: Box<[u32; 256]>,
    /// `successors[prev * 256 + next]`: how often `next` followed `prev`.
    successors: Box<[u32]>,
    /// The predicted successor of each byte, and how often it followed.
    best: Box<[(u8, u32); 256]>,
    prev: Option<u8>,
    predictions: u64,
    hits: u64,
    run: u64,
    longest_run: u64,
    last: Option<Estimate>,
}

impl Estimator {
    /// Estimates every window of `window` bytes (clamped to at least
    /// [`MIN_WINDOW`]).
    pub fn new(window: usize) -> Self {
        Self::sampled(window, 1)
    }

    /// Estimates one window in every `every` (the first among them).
    pub fn sampled(window: usize, every: u32) -> Self {
        Self {
            window: window.max(MIN_WINDOW),
            every: every.max(1),
            windows: 1,
            seen: 0,
            counts: Box::new([0; 256]),
            successors: vec![0; 256 * 256].into_boxed_slice(),
            best: Box::new([(0, 0); 256]),
            prev: None,
            predictions: 0,
            hits: 0,
            run: 0,
            longest_run: 0,
            last: None,
        }
    }

    /// The estimate of the newest complete window, if one is complete.
    pub fn last(&self) -> Option<Estimate> {
        self.last
    }

    /// Feeds bytes in order; returns the estimate of the window this call
    /// completed, if any (the newest, if it completed several).
    pub fn feed(&mut self, mut bytes: &[u8]) -> Option<Estimate> {
        let mut done = None;
        while !bytes.is_empty() {
            let take = bytes.len().min(self.window - self.seen);
            let (now, rest) = bytes.split_at(take);
            let estimated = (self.windows - 1).is_multiple_of(u64::from(self.every));
            if estimated {
                for &b in now {
                    self.push(b);
                }
            } else {
                self.seen += take;
            }
            bytes = rest;
            if self.seen < self.window {
                continue;
            }
            self.windows += 1;
            if estimated {
                let e = self.finish_window();
                self.last = Some(e);
                done = Some(e);
            } else {
                self.seen = 0;
            }
        }
        done
    }

    fn push(&mut self, b: u8) {
        let index = self.seen;
        self.seen += 1;
        self.counts[usize::from(b)] += 1;
        let Some(prev) = self.prev else {
            self.prev = Some(b);
            return;
        };
        // Index 1 is the seeding transition; every later byte is predicted
        // (N = L - 2), and an unseen context predicts nothing.
        if index >= 2 {
            self.predictions += 1;
            let (guess, guess_count) = self.best[usize::from(prev)];
            if guess_count > 0 {
                if guess == b {
                    self.hits += 1;
                    self.run += 1;
                    self.longest_run = self.longest_run.max(self.run);
                } else {
                    self.run = 0;
                }
            }
        }
        let cell = &mut self.successors[usize::from(prev) * 256 + usize::from(b)];
        *cell += 1;
        let best = &mut self.best[usize::from(prev)];
        if *cell > best.1 || (*cell == best.1 && b > best.0) {
            *best = (b, *cell);
        }
        self.prev = Some(b);
    }

    fn finish_window(&mut self) -> Estimate {
        let n = self.seen as f64;
        let most = f64::from(*self.counts.iter().max().unwrap_or(&0));
        let mcv = mcv_estimate(most, n);
        let mmc = prediction_estimate(self.hits, self.predictions, self.longest_run, 256);
        let e = Estimate {
            mcv,
            mmc,
            min: mcv.min(mmc),
            bytes: self.seen as u64,
        };
        self.reset();
        e
    }

    fn reset(&mut self) {
        self.seen = 0;
        self.counts.fill(0);
        self.successors.fill(0);
        self.best.fill((0, 0));
        self.prev = None;
        (self.predictions, self.hits, self.run, self.longest_run) = (0, 0, 0, 0);
    }
}

/// §6.3.1: -log2 of the 99 % upper bound on the commonest value's share.
pub fn mcv_estimate(most_common: f64, n: f64) -> f64 {
    let p = most_common / n;
    let upper = (p + Z_ALPHA * (p * (1.0 - p) / (n - 1.0)).sqrt()).min(1.0);
    -upper.log2()
}

/// §6.3 prediction estimate from `hits` correct of `predictions`, the
/// longest run of hits, over an alphabet of `k` symbols.
pub fn prediction_estimate(hits: u64, predictions: u64, longest_run: u64, k: u32) -> f64 {
    let n = predictions.max(1) as f64;
    let p_global = hits as f64 / n;
    let p_global_upper = if hits == 0 {
        1.0 - 0.01f64.powf(1.0 / n)
    } else {
        (p_global + Z_ALPHA * (p_global * (1.0 - p_global) / (n - 1.0).max(1.0)).sqrt()).min(1.0)
    };
    let mut p = p_global_upper.max(1.0 / f64::from(k));
    let r = longest_run + 1;
    if p < 1.0 && run_function(p, r, n) > 0.99f64.ln() {
        p = p.max(p_local(r, n, p));
    }
    -p.log2()
}

/// ln of the probability that no run of `r` hits occurs in `n` predictions
/// with hit rate `p` (the standard's equation, in log space).
fn run_function(p: f64, r: u64, n: f64) -> f64 {
    let q = 1.0 - p;
    let r = r as f64;
    let mut x: f64 = 1.0;
    for _ in 0..66 {
        let next = 1.0 + q * p.powf(r) * x.powf(r + 1.0);
        if (next - x).abs() <= f64::EPSILON * next {
            x = next;
            break;
        }
        x = next;
    }
    (1.0 - p * x).ln() - ((r + 1.0 - r * x) * q).ln() - (n + 1.0) * x.ln()
}

/// The local bound: the `p` in [`low`, 1] at which the run function is
/// ln 0.99, by bisection (the function falls as `p` grows).
fn p_local(r: u64, n: f64, low: f64) -> f64 {
    let target = 0.99f64.ln();
    let (mut lo, mut hi) = (low, 1.0);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        let v = run_function(mid, r, n);
        if !v.is_finite() {
            hi = mid;
            continue;
        }
        if v > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xorshift(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed | 1;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn random_bytes_estimate_close_to_8_bits() {
        let mut next = xorshift(7);
        let data: Vec<u8> = (0..DEFAULT_WINDOW).map(|_| (next() >> 24) as u8).collect();
        let e = Estimator::new(DEFAULT_WINDOW).feed(&data).unwrap();
        // At 64 KiB the 99 % bounds leave a full-entropy source near 7.6.
        assert!(e.mcv > 7.45 && e.mmc > 7.45 && e.min > 7.45, "{e:?}");
    }

    #[test]
    fn one_value_at_1_in_16_is_about_4_bits() {
        let mut next = xorshift(9);
        let data: Vec<u8> = (0..DEFAULT_WINDOW)
            .map(|_| {
                let x = next();
                if x.is_multiple_of(16) {
                    0xAA
                } else {
                    ((x >> 8) % 255) as u8 + u8::from((x >> 8) % 255 >= 0xAA)
                }
            })
            .collect();
        let e = Estimator::new(DEFAULT_WINDOW).feed(&data).unwrap();
        // True min-entropy 4 bits; the 99 % bound takes about 0.055 bit
        // off at 64 KiB (2.576 * sqrt(p (1 - p) / n) on p = 1/16), and the
        // sample's own spread about as much again.
        assert!(e.mcv < 4.0 && e.mcv > 3.88, "{e:?}");
        assert!(e.min <= e.mcv);
    }

    #[test]
    fn a_counter_is_seen_by_the_predictor_not_by_mcv() {
        // Each byte is the one before plus one, restarting from a random
        // byte every 16: flat counts, true min-entropy 0.5 bit per byte.
        let mut next = xorshift(11);
        let mut b = 0u8;
        let data: Vec<u8> = (0..DEFAULT_WINDOW)
            .map(|i| {
                b = if i % 16 == 0 {
                    next() as u8
                } else {
                    b.wrapping_add(1)
                };
                b
            })
            .collect();
        let e = Estimator::new(DEFAULT_WINDOW).feed(&data).unwrap();
        assert!(e.mcv > 7.5, "{e:?}");
        assert!(e.mmc < 1.0 && e.min < 1.0, "{e:?}");
    }

    #[test]
    fn one_window_in_every_n_is_estimated() {
        let mut est = Estimator::sampled(MIN_WINDOW, 3);
        let w = vec![5u8; MIN_WINDOW];
        assert!(est.feed(&w).is_some(), "the first window is estimated");
        assert!(est.feed(&w).is_none() && est.feed(&w).is_none());
        assert!(est.feed(&w).is_some(), "then every third");
    }

    #[test]
    fn windows_are_consecutive_and_the_newest_is_kept() {
        let mut est = Estimator::new(MIN_WINDOW);
        assert_eq!(est.feed(&[1u8; 100]), None);
        assert_eq!(est.last(), None);
        let e = est.feed(&vec![1u8; 2 * MIN_WINDOW]).unwrap();
        assert_eq!(e.bytes, MIN_WINDOW as u64);
        assert!(e.min < 0.01, "a constant has no entropy: {e:?}");
        assert_eq!(est.last(), Some(e));
    }
}
