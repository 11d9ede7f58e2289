//! SP 800-90B §6.3.7: the Multi Most Common in Window (MultiMCW)
//! prediction estimate.
//!
//! Four subpredictors each predict the most common symbol of the last
//! `w = 63, 255, 1023, 4095` symbols; a scoreboard follows whichever has
//! been right most often, and its record (correct count and longest run)
//! goes to the shared predictor bound ([`prediction_estimate`]).
//!
//! NIST's tool (`cpp/non_iid/multi_mcw_test.h`, commit 68ed165) fixes what
//! the text leaves open, and this module reproduces it exactly:
//! * Ties for most common go to the symbol seen most recently: NIST's
//!   incremental bookkeeping always ends at the largest
//!   `(count in window, last position)`.
//! * Predictions start at `i = 63`, so `N = L - 63`; a subpredictor scores
//!   only once its window is full, and the scoreboard moves to any
//!   subpredictor whose score reaches (`>=`) the leader's, checked in
//!   window order right after each correct prediction.
//! * Fewer than 4096 samples: no estimate.
//!
//! For speed the windows keep running counts: binary tracks need only the
//! number of ones (every width is odd, so there is never a tie); other
//! tracks keep per-symbol counts, a count-of-counts table and the symbols
//! in order of last occurrence, and look for a new mode only when the mode
//! itself leaves the window.

use super::lag::Board;
use super::prediction::prediction_estimate;
use super::support::Track;

/// The subpredictors' window widths (§6.3.7 step 1).
const WINDOWS: [usize; 4] = [63, 255, 1023, 4095];

/// Predictions handed to the scoreboard together (one mask word).
const BLOCK: usize = 64;

/// Alphabets up to this size look for a new mode by scanning them all.
const SCAN_SPAN: usize = 16;

/// Room for every count a window can hold (at most 4095).
const LEVELS: usize = 4096;

/// Eight one-bytes: SWAR lane constants.
const LANES: u64 = 0x0101_0101_0101_0101;

/// MultiMCW min-entropy per symbol of `track` (§6.3.7), or `None` with
/// 4095 samples or fewer (NIST's tool skips the estimate).
pub fn multi_mcw(track: Track) -> Option<f64> {
    let symbols = track.symbols;
    if symbols.len() <= WINDOWS[3] {
        return None;
    }
    let (correct, longest_run) = score(symbols, track.alphabet);
    let predictions = (symbols.len() - WINDOWS[0]) as u64;
    Some(prediction_estimate(
        correct,
        predictions,
        longest_run,
        track.alphabet,
    ))
}

/// The winning subpredictor's correct count and longest run of correct
/// predictions over `symbols` (at least 4096 of them). Every window turns
/// full at a block boundary (`w - 63` is a multiple of 64).
fn score(symbols: &[u8], alphabet: usize) -> (u64, u64) {
    let mut board = Board::<4>::new();
    let mut masks = [0u64; 4];
    let blocks = (WINDOWS[0]..symbols.len()).step_by(BLOCK);
    if alphabet == 2 && symbols.iter().fold(0u8, |any, &s| any | s) < 2 {
        let mut windows = WINDOWS.map(|w| Majority::new(symbols, w));
        for first in blocks {
            let count = BLOCK.min(symbols.len() - first);
            for (mask, window) in masks.iter_mut().zip(&mut windows) {
                *mask = window.hits(symbols, first, count);
            }
            board.block(&masks, count as u32);
        }
    } else {
        let span = usize::from(symbols.iter().fold(0u8, |top, &s| top.max(s))) + 1;
        let mut windows = WINDOWS.map(|w| ModeWindow::new(symbols, w, span));
        for first in blocks {
            let count = BLOCK.min(symbols.len() - first);
            for (mask, window) in masks.iter_mut().zip(&mut windows) {
                *mask = window.hits(symbols, first, count);
            }
            board.block(&masks, count as u32);
        }
    }
    board.record_so_far()
}

/// One subpredictor on a 0/1 track: the number of ones in the window.
/// Every width is odd, so the majority is strict and is the mode.
struct Majority {
    width: usize,
    /// Majority means more than `half` ones.
    half: u32,
    /// Ones among the `width` samples before the next position.
    ones: u32,
}

impl Majority {
    fn new(bits: &[u8], width: usize) -> Self {
        let ones = bits[..width].iter().map(|&b| u32::from(b)).sum();
        Majority {
            width,
            half: (width / 2) as u32,
            ones,
        }
    }

    /// Hit mask (bit `t`: the majority predicted `bits[first + t]`) for
    /// `count` positions, sliding past each; nothing before the window is
    /// full.
    fn hits(&mut self, bits: &[u8], first: usize, count: usize) -> u64 {
        if first < self.width {
            return 0;
        }
        let mut mask = 0u64;
        let mut t = 0;
        while t + 8 <= count {
            mask |= u64::from(self.eight(bits, first + t)) << t;
            t += 8;
        }
        for t in t..count {
            let (now, gone) = (bits[first + t], bits[first + t - self.width]);
            let majority = u8::from(self.ones > self.half);
            mask |= u64::from(majority == now) << t;
            self.ones = self.ones + u32::from(now) - u32::from(gone);
        }
        mask
    }

    /// Hits at positions `i..i + 8`, one byte lane per position: with
    /// `e = 1 + entering - leaving` per lane, the count before position
    /// `i + t` is `ones + (e_0 + .. + e_(t-1)) - t`, and one multiply gives
    /// all the prefix sums.
    fn eight(&mut self, bits: &[u8], i: usize) -> u8 {
        let now = lanes(&bits[i..i + 8]);
        let gone = lanes(&bits[i - self.width..i - self.width + 8]);
        let steps = now + LANES - gone;
        let inclusive = steps.wrapping_mul(LANES);
        let ones = self.ones;
        self.ones = ones + (inclusive >> 56) as u32 - 8;
        // Lane t: prefix_t + 7 - t, in 0..=21. Majority at t when
        // ones + prefix_t - t > half, i.e. lane > bar = half + 7 - ones.
        // The count moves at most 7 within the eight positions, so a bar
        // clamped to -1..=21 (all, none) decides the same, without a
        // branch the data would make unpredictable.
        let shifted = (inclusive << 8) + 0x0001_0203_0405_0607;
        let bar = (i64::from(self.half) + 7 - i64::from(ones)).clamp(-1, 21);
        // Lanes above the bar carry into their top bit (at most 149).
        let majority = ((shifted + (127 - bar) as u64 * LANES) >> 7) & LANES;
        gather_lanes(majority ^ now ^ LANES)
    }
}

/// Eight 0/1 bytes as the lanes of a word (lane `t` = byte `t`).
fn lanes(eight: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&eight[..8]);
    u64::from_le_bytes(word)
}

/// Bit `t` = lane `t`, for lanes that are 0 or 1: the multiply moves each
/// lane's bit into the top byte without carries.
fn gather_lanes(x: u64) -> u8 {
    (x.wrapping_mul(0x0102_0408_1020_4080) >> 56) as u8
}

/// One subpredictor on a general alphabet: the counts of the last `width`
/// symbols and their mode, ties going to the latest occurrence.
struct ModeWindow {
    width: usize,
    counts: [u32; 256],
    /// `levels[c]`: how many symbols have count `c` in the window (counts
    /// never exceed 4095; the index is reduced only to spare bounds checks).
    levels: Box<[u32; LEVELS]>,
    /// Last position of each symbol so far (NIST's `win_poses`).
    last: [usize; 256],
    /// One more than the largest symbol of the track.
    span: usize,
    /// The symbols from the latest occurrence back (a circular list:
    /// `older` of the least recent is the most recent, `newest`).
    older: [u8; 256],
    newer: [u8; 256],
    newest: u8,
    mode: u8,
    top: u32,
}

impl ModeWindow {
    /// The window over `symbols[..width]`, filled as NIST does: a symbol
    /// whose count reaches the running maximum becomes the mode.
    fn new(symbols: &[u8], width: usize, span: usize) -> Self {
        let mut window = ModeWindow {
            width,
            counts: [0; 256],
            levels: Box::new([0; LEVELS]),
            last: [0; 256],
            span,
            older: std::array::from_fn(|s| (s as u8).wrapping_add(1)),
            newer: std::array::from_fn(|s| (s as u8).wrapping_sub(1)),
            newest: 0,
            mode: 0,
            top: 0,
        };
        window.levels[0] = 256;
        for (t, &s) in symbols[..width].iter().enumerate() {
            window.bump(s, true);
            window.last[usize::from(s)] = t;
            window.touch(s);
            let count = window.counts[usize::from(s)];
            if count >= window.top {
                window.top = count;
                window.mode = s;
            }
        }
        window
    }

    /// Adds (`up`) or removes one occurrence of `s` from the counts.
    fn bump(&mut self, s: u8, up: bool) {
        let count = &mut self.counts[usize::from(s)];
        self.levels[*count as usize % LEVELS] -= 1;
        *count = if up { *count + 1 } else { *count - 1 };
        self.levels[*count as usize % LEVELS] += 1;
    }

    /// Hit mask (bit `t`: the mode predicted `symbols[first + t]`) for
    /// `count` positions, sliding past each; nothing before the window is
    /// full.
    fn hits(&mut self, symbols: &[u8], first: usize, count: usize) -> u64 {
        let start = first.max(self.width);
        let end = first + count;
        if start >= end {
            return 0;
        }
        let entering = &symbols[start..end];
        let leaving = &symbols[start - self.width..end - self.width];
        let mut mask = 0u64;
        for (k, (&new, &old)) in entering.iter().zip(leaving).enumerate() {
            let i = start + k;
            mask |= u64::from(self.mode == new) << (i - first);
            self.slide(i, old, new);
        }
        mask
    }

    /// Moves the window from `i - width .. i` (`old` first) to
    /// `i - width + 1 ..= i` (`new` last).
    fn slide(&mut self, i: usize, old: u8, new: u8) {
        self.last[usize::from(new)] = i;
        self.touch(new);
        if old != new {
            self.bump(old, false);
            self.bump(new, true);
        }
        let count = self.counts[usize::from(new)];
        if count >= self.top {
            // Covers old == new at the top, too: the latest occurrence wins.
            self.top = count;
            self.mode = new;
        } else if old == self.mode && old != new {
            // The mode lost one: the new top is still `top` if another
            // symbol holds it, else one less (the old mode is there).
            if self.levels[self.top as usize % LEVELS] == 0 {
                self.top -= 1;
            }
            self.mode = self.latest_at(self.top);
        }
    }

    /// Makes `s` the most recent symbol.
    fn touch(&mut self, s: u8) {
        if s == self.newest {
            return;
        }
        let (before, after) = (self.newer[usize::from(s)], self.older[usize::from(s)]);
        self.older[usize::from(before)] = after;
        self.newer[usize::from(after)] = before;
        let oldest = self.newer[usize::from(self.newest)];
        self.older[usize::from(s)] = self.newest;
        self.newer[usize::from(s)] = oldest;
        self.older[usize::from(oldest)] = s;
        self.newer[usize::from(self.newest)] = s;
        self.newest = s;
    }

    /// The symbol with count `level` (at least 1) whose last occurrence is
    /// latest: by a scan of the symbols in use when they are few, else the
    /// first met from the most recent back (symbols still in the window
    /// all come before those that left it).
    fn latest_at(&self, level: u32) -> u8 {
        if self.span > SCAN_SPAN {
            let mut s = self.newest;
            for _ in 0..256 {
                if self.counts[usize::from(s)] == level {
                    return s;
                }
                s = self.older[usize::from(s)];
            }
        }
        let mut best = self.mode;
        let mut best_last = 0usize;
        for k in 0..self.span {
            if self.counts[k] == level && self.last[k] >= best_last {
                best = k as u8;
                best_last = self.last[k];
            }
        }
        best
    }
}

#[cfg(test)]
// Values are pinned as NIST prints them (%.17g); the references index
// like NIST's loops.
#[allow(
    clippy::excessive_precision,
    clippy::needless_range_loop,
    clippy::manual_is_multiple_of
)]
mod tests {
    use super::super::test_inputs::lcg;
    use super::*;

    /// NIST's procedure, step by step: per-window counts, mode updated as
    /// NIST does it (rescanning the alphabet when the mode leaves).
    fn reference(data: &[u8], k: usize) -> (u64, u64) {
        let mut counts = vec![vec![0i64; k]; 4];
        let mut poses = vec![vec![0usize; k]; 4];
        let mut top = [0i64; 4];
        let mut mode = [0usize; 4];
        for i in 0..WINDOWS[3] {
            for j in 0..4 {
                if i < WINDOWS[j] {
                    let s = usize::from(data[i]);
                    counts[j][s] += 1;
                    if top[j] <= counts[j][s] {
                        top[j] = counts[j][s];
                        mode[j] = s;
                    }
                    poses[j][s] = i;
                }
            }
        }
        let (mut scores, mut winner, mut correct, mut run, mut longest) = ([0u64; 4], 0, 0, 0, 0);
        for i in WINDOWS[0]..data.len() {
            let s = usize::from(data[i]);
            if mode[winner] == s {
                correct += 1;
                run += 1;
                longest = longest.max(run);
            } else {
                run = 0;
            }
            for j in 0..4 {
                if i >= WINDOWS[j] && mode[j] == s {
                    scores[j] += 1;
                    if scores[j] >= scores[winner] {
                        winner = j;
                    }
                }
            }
            for j in 0..4 {
                let w = WINDOWS[j];
                if i < w {
                    continue;
                }
                let old = usize::from(data[i - w]);
                counts[j][old] -= 1;
                counts[j][s] += 1;
                poses[j][s] = i;
                if old != mode[j] && top[j] <= counts[j][s] {
                    top[j] = counts[j][s];
                    mode[j] = s;
                } else if old == mode[j] {
                    top[j] -= 1;
                    let mut best_pos = i - w;
                    for c in 0..k {
                        if top[j] < counts[j][c]
                            || (top[j] == counts[j][c] && best_pos <= poses[j][c])
                        {
                            top[j] = counts[j][c];
                            mode[j] = c;
                            best_pos = poses[j][c];
                        }
                    }
                }
            }
        }
        (correct, longest)
    }

    fn check(data: &[u8], k: usize) {
        assert_eq!(
            score(data, k),
            reference(data, k),
            "k = {k}, len = {}",
            data.len()
        );
    }

    #[test]
    fn too_short_gives_none() {
        let data = vec![0u8; 4095];
        assert_eq!(
            multi_mcw(Track {
                symbols: &data,
                alphabet: 2
            }),
            None
        );
        assert_eq!(
            multi_mcw(Track {
                symbols: &[],
                alphabet: 0
            }),
            None
        );
    }

    #[test]
    fn constant_input_is_fully_predictable() {
        let data = vec![0u8; 5000];
        assert_eq!(score(&data, 1), (5000 - 63, 5000 - 63));
        assert_eq!(
            multi_mcw(Track {
                symbols: &data,
                alphabet: 1
            }),
            Some(0.0)
        );
    }

    #[test]
    fn matches_reference_on_random_alphabets() {
        for (seed, k) in [(1u64, 2usize), (2, 3), (3, 4), (4, 16), (5, 256)] {
            let mut next = lcg(seed);
            let data: Vec<u8> = (0..9000).map(|_| (next() % k as u64) as u8).collect();
            check(&data, k);
        }
    }

    #[test]
    fn matches_reference_with_many_ties() {
        // Slowly drifting, biased and periodic inputs: modes leave and tie.
        let mut next = lcg(7);
        let biased: Vec<u8> = (0..9000)
            .map(|_| {
                if next() % 4 == 0 {
                    (next() % 5) as u8
                } else {
                    0
                }
            })
            .collect();
        check(&biased, 5);
        let periodic: Vec<u8> = (0..9000u32).map(|i| (i % 7) as u8).collect();
        check(&periodic, 7);
        let blocks: Vec<u8> = (0..9000u32).map(|i| ((i / 50) % 3) as u8).collect();
        check(&blocks, 3);
        let mut next = lcg(8);
        let wide: Vec<u8> = (0..9000).map(|_| (next() % 200) as u8).collect();
        check(&wide, 200);
        // Long runs over many symbols: the next mode is far back.
        let mut next = lcg(10);
        let mut byte = 0u8;
        let sticky: Vec<u8> = (0..9000)
            .map(|_| {
                if next() % 30 == 0 {
                    byte ^= 1 << (next() % 8);
                }
                byte
            })
            .collect();
        check(&sticky, 256);
        // Out-of-range symbols for the stated alphabet must not panic.
        let _ = score(&wide, 2);
    }

    #[test]
    fn matches_reference_on_bits() {
        let mut next = lcg(9);
        let bits: Vec<u8> = (0..12000).map(|_| u8::from(next() % 10 < 6)).collect();
        check(&bits, 2);
        // Same bits through the general path (alphabet stated as 3).
        assert_eq!(score(&bits, 3), reference(&bits, 2));
    }

    /// Pinned from ea_non_iid (commit 68ed165, `-vv FILE 8`) on 8192
    /// bytes `37 * (lcg(11)() % 7)`: the literal track is `lcg(11)() % 7`
    /// (the seven values translated in order), the bitstring their bits.
    #[test]
    fn matches_nist_tool() {
        let mut next = lcg(11);
        let literal: Vec<u8> = (0..8192).map(|_| (next() % 7) as u8).collect();
        let bits: Vec<u8> = literal
            .iter()
            .flat_map(|&v| (0..8).rev().map(move |j| (v * 37) >> j & 1))
            .collect();
        let ours = multi_mcw(Track {
            symbols: &literal,
            alphabet: 7,
        })
        .unwrap();
        assert!((ours - 2.7089119831138802).abs() < 1e-12, "{ours}");
        let ours = multi_mcw(Track {
            symbols: &bits,
            alphabet: 2,
        })
        .unwrap();
        assert!((ours - 0.56797101611010503).abs() < 1e-12, "{ours}");
    }
}
