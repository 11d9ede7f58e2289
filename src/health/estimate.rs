//! Which windows of a stream are assessed for min-entropy, and at what
//! cost: the stream is cut into consecutive windows of samples (1,000,000
//! by default, the size SP 800-90B §3.1.1 asks for), and some of them are
//! handed to the full assessment ([`super::entropy`]).
//!
//! The assessment costs far more per byte than the health tests (about a
//! thousand times; `cargo bench --bench health` measures both), so not every
//! window is assessed unless asked:
//! - [`Sampling::Budget`] (the default): the first window always, then a
//!   window whenever the time spent assessing is within a share of the
//!   time elapsed ([`DAEMON_BUDGET`] in the daemon, [`CHECK_BUDGET`] in
//!   `check`). A slow device has every window assessed; RDRAND has one
//!   assessed every few seconds, at a bounded cost.
//! - [`Sampling::Every`]: one window in every N, whatever it costs
//!   (`--estimate-every 1` assesses every window).
//! - [`Sampling::Off`]: no assessment, for a pure rngtest-equivalent run.
//!
//! Nothing here runs an estimator or reads a clock: the caller passes the
//! times in, so the rules are tested as plain arithmetic.

use std::time::Duration;

/// Samples per window, by default: the size the standard asks for.
pub const DEFAULT_WINDOW: usize = 1_000_000;
/// The smallest window, and the smallest last partial window assessed:
/// below it most estimators have too few samples to say anything.
pub const MIN_WINDOW: usize = 4096;
/// The largest window: 64 MiB of samples, each kept for its assessment.
pub const MAX_WINDOW: usize = 64 << 20;

/// A window size outside [`MIN_WINDOW`] to [`MAX_WINDOW`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0} samples is outside 4096 to 64 MiB")]
pub struct WindowSizeError(pub u64);

/// `n` samples as a window. The one rule, for the command line and for a
/// configuration built in code.
pub fn window_size(n: u64) -> Result<usize, WindowSizeError> {
    match (MIN_WINDOW as u64..=MAX_WINDOW as u64).contains(&n) {
        true => Ok(n as usize),
        false => Err(WindowSizeError(n)),
    }
}
/// The daemon assesses within 2 % of one core's time, over its life.
pub const DAEMON_BUDGET: f64 = 0.02;
/// `check` spends at most half its time assessing, past the first window.
pub const CHECK_BUDGET: f64 = 0.5;

/// Which windows are assessed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampling {
    /// The first window, then within the time budget.
    Budget,
    /// One window in every N (N >= 1), the first among them.
    Every(u32),
    /// None.
    Off,
}

impl std::fmt::Display for Sampling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Budget => f.write_str("auto"),
            Self::Every(n) => write!(f, "{n}"),
            Self::Off => f.write_str("off"),
        }
    }
}

/// A window's samples, ready to be assessed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Which window of the stream, from 0.
    pub index: u64,
    pub samples: Vec<u8>,
    /// The stream ended before the window was full.
    pub partial: bool,
}

/// Cuts a stream into windows and keeps the samples of those that may be
/// assessed.
#[derive(Clone, Debug)]
pub struct Windows {
    size: usize,
    sampling: Sampling,
    /// The window being filled.
    index: u64,
    /// Samples of the current window seen so far (kept or not).
    seen: usize,
    kept: Vec<u8>,
}

impl Windows {
    /// Windows of `size` samples (at least [`MIN_WINDOW`]).
    pub fn new(size: usize, sampling: Sampling) -> Self {
        Self {
            size: size.max(MIN_WINDOW),
            sampling,
            index: 0,
            seen: 0,
            kept: Vec::new(),
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn sampling(&self) -> Sampling {
        self.sampling
    }

    /// Samples of the window being filled.
    pub fn filling(&self) -> usize {
        self.seen
    }

    /// Whole windows seen so far.
    pub fn completed(&self) -> u64 {
        self.index
    }

    fn keeps(&self, index: u64) -> bool {
        match self.sampling {
            Sampling::Budget => true,
            Sampling::Every(n) => index.is_multiple_of(u64::from(n.max(1))),
            Sampling::Off => false,
        }
    }

    /// Feeds samples in stream order; returns the window this call
    /// completed, if it is one to assess (the newest, if it completed
    /// several). Under [`Sampling::Budget`] every window comes back and
    /// the caller asks its [`Budget`].
    pub fn feed(&mut self, mut samples: &[u8]) -> Option<Window> {
        let mut done = None;
        while !samples.is_empty() {
            let take = samples.len().min(self.size - self.seen);
            let (now, rest) = samples.split_at(take);
            if self.keeps(self.index) {
                if self.kept.capacity() == 0 {
                    self.kept.reserve_exact(self.size);
                }
                self.kept.extend_from_slice(now);
            }
            self.seen += take;
            samples = rest;
            if self.seen == self.size {
                let kept = self.keeps(self.index);
                let samples = std::mem::take(&mut self.kept);
                done = kept.then_some(Window {
                    index: self.index,
                    samples,
                    partial: false,
                });
                self.index += 1;
                self.seen = 0;
            }
        }
        done
    }

    /// At the end of the stream: the last, partial window, if it is one to
    /// assess and holds at least [`MIN_WINDOW`] samples.
    pub fn finish(&mut self) -> Option<Window> {
        let samples = std::mem::take(&mut self.kept);
        (self.keeps(self.index) && samples.len() >= MIN_WINDOW).then_some(Window {
            index: self.index,
            samples,
            partial: true,
        })
    }
}

/// How much of the elapsed time assessments may take.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    share: f64,
    spent: Duration,
}

impl Budget {
    pub fn new(share: f64) -> Self {
        Self {
            share,
            spent: Duration::ZERO,
        }
    }

    /// Whether another assessment may start, `elapsed` after the clock
    /// started: always the first, then while the time spent is within the
    /// share.
    pub fn allows(&self, elapsed: Duration) -> bool {
        self.spent.is_zero() || self.spent.as_secs_f64() <= self.share * elapsed.as_secs_f64()
    }

    /// Counts an assessment's time.
    pub fn charge(&mut self, took: Duration) {
        // A zero charge would make the next call look like the first.
        self.spent += took.max(Duration::from_nanos(1));
    }

    pub fn spent(&self) -> Duration {
        self.spent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(w: &mut Windows, total: usize, chunk: usize) -> Vec<Window> {
        let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        let mut out: Vec<Window> = data.chunks(chunk).filter_map(|c| w.feed(c)).collect();
        out.extend(w.finish());
        out
    }

    #[test]
    fn windows_are_consecutive_and_hold_the_stream_in_order() {
        let mut w = Windows::new(5000, Sampling::Every(1));
        let got = feed_all(&mut w, 12_500, 2500);
        assert_eq!(got.len(), 2, "the 2,500-sample tail is below the minimum");
        assert_eq!(got[1].index, 1);
        assert_eq!(got[1].samples[0], (5000 % 251) as u8);
        assert!(got.iter().all(|w| w.samples.len() == 5000 && !w.partial));
        let mut w = Windows::new(5000, Sampling::Every(1));
        let got = feed_all(&mut w, 14_096, 2500);
        assert_eq!(got.len(), 3);
        assert!(got[2].partial);
        assert_eq!(got[2].samples.len(), 4096);
    }

    #[test]
    fn one_window_in_every_n_is_kept_and_off_keeps_none() {
        let mut w = Windows::new(4096, Sampling::Every(3));
        let got = feed_all(&mut w, 4096 * 7, 1000);
        let indices: Vec<u64> = got.iter().map(|w| w.index).collect();
        assert_eq!(indices, [0, 3, 6]);
        let mut w = Windows::new(4096, Sampling::Off);
        assert!(feed_all(&mut w, 4096 * 3, 1000).is_empty());
        assert_eq!(w.completed(), 3);
    }

    #[test]
    fn the_budget_allows_the_first_then_a_share_of_the_time() {
        let s = Duration::from_secs;
        let mut b = Budget::new(0.02);
        assert!(b.allows(s(0)));
        b.charge(Duration::from_millis(400));
        assert!(!b.allows(s(10)), "0.4 s is 4 % of 10 s");
        assert!(b.allows(s(20)));
        b.charge(Duration::ZERO);
        assert!(b.spent() > Duration::from_millis(400));
    }
}
