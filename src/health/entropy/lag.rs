//! SP 800-90B §6.3.8: the Lag prediction estimate.
//!
//! 128 subpredictors each predict that the symbol repeats the one `d`
//! positions back (`d = 1..=128`); a scoreboard follows the best of them,
//! and its record (correct count and longest run) goes to the shared
//! predictor bound ([`prediction_estimate`]).
//!
//! NIST's tool (`cpp/non_iid/lag_test.h`, commit 68ed165) fixes the
//! details reproduced here:
//! * Every sample after the first is predicted (`N = L - 1`); before `d`
//!   samples exist, lag `d` neither predicts nor scores, and the initial
//!   leader is lag 1.
//! * After each prediction the matching lags score in increasing `d`, and
//!   each takes the lead if its score reaches (`>=`) the best so far: so
//!   the leader is the lag that most recently reached the top score, the
//!   longest lag on a tie within one step.
//! * Fewer than 3 samples: no estimate (NIST asserts `L > 2`).
//!
//! Tracks without a frequent symbol (no symbol above 1/8 of the samples)
//! are scored NIST's way, one prediction at a time, visiting only the
//! earlier occurrences of each sample's symbol. Otherwise 64 predictions
//! are taken at a time: a 64-bit mask per lag says where it is right, and
//! its popcount is that lag's gain. A lag that cannot reach the top score
//! within the block (score + gain below it) can neither lead nor move the
//! top, so it is credited in bulk; only lags that can are followed step by
//! step, and when the leader alone can, its mask is the block's record.
//! The masks come from word shifts of packed bits: of the samples
//! themselves on a 0/1 track, else of one indicator plane per frequent
//! symbol, the rarer symbols' matches being found by walking back over
//! their occurrences.

use super::prediction::prediction_estimate;
use super::support::Track;

/// The longest lag (`D` in §6.3.8).
const LAGS: usize = 128;

/// Predictions handled together: one mask word.
const BLOCK: usize = 64;

/// Zero bits ahead of a packed plane: sample `p` sits at bit `p + PAD`, so
/// each block's first prediction (`p = 1 + 64 b`) starts a word and lag
/// 128 of it is still inside the plane.
const PAD: usize = 127;

/// A symbol holding more than `1 / HEAVY` of the samples gets a bit
/// plane: walking its occurrences would cost more (about `128 p` matches
/// per sample against a few word operations).
const HEAVY: usize = 8;

/// No earlier occurrence.
const NONE: usize = usize::MAX;

/// Lag min-entropy per symbol of `track` (§6.3.8), or `None` with fewer
/// than 3 samples (NIST's tool asserts at least 3).
pub fn lag(track: Track) -> Option<f64> {
    let symbols = track.symbols;
    if symbols.len() < 3 {
        return None;
    }
    let (correct, longest_run) = score(symbols);
    let predictions = (symbols.len() - 1) as u64;
    Some(prediction_estimate(
        correct,
        predictions,
        longest_run,
        track.alphabet,
    ))
}

/// The leader's correct count and longest run of correct predictions.
fn score(symbols: &[u8]) -> (u64, u64) {
    let mut matches = Matches::new(symbols);
    if !matches.binary && matches.planes.is_empty() {
        return score_sparse(symbols);
    }
    let mut board = Board::<LAGS>::new();
    let mut masks = [0u64; LAGS];
    for first in (1..symbols.len()).step_by(BLOCK) {
        let count = BLOCK.min(symbols.len() - first);
        matches.block(first, count, &mut masks);
        if first <= LAGS || count < BLOCK {
            trim(&mut masks, first, count);
        }
        board.block(&masks, count as u32);
    }
    board.record_so_far()
}

/// [`score`] for tracks without a frequent symbol: NIST's own order of
/// work, one prediction at a time, visiting only the earlier occurrences
/// of each sample's symbol within reach (about `128 p` of them; fewer than
/// 16 here).
fn score_sparse(symbols: &[u8]) -> (u64, u64) {
    let mut scores = [0u64; LAGS];
    let (mut leader, mut top) = (0usize, 0u64);
    let (mut correct, mut run, mut longest_run) = (0u64, 0u64, 0u64);
    let mut last = [NONE; 256];
    let mut previous = [NONE; 256];
    if let Some(&s) = symbols.first() {
        last[usize::from(s)] = 0;
    }
    for p in 1..symbols.len() {
        let s = symbols[p];
        let hit = u64::from(symbols[p - leader - 1] == s);
        correct += hit;
        run = (run + 1) * hit;
        longest_run = longest_run.max(run);
        let latest = last[usize::from(s)];
        previous[p % 256] = latest;
        last[usize::from(s)] = p;
        // The latest occurrence without a branch (it is within reach
        // about as often as not); no occurrence (NONE) reads as lag p + 1,
        // out of reach.
        let gap = p.wrapping_sub(latest).wrapping_sub(1);
        let near = gap < LAGS && gap < p;
        let d = gap % LAGS;
        scores[d] += u64::from(near);
        if near && scores[d] >= top {
            (leader, top) = (d, scores[d]);
        }
        // Masked rather than branched on, for the same reason.
        let mut q = previous[latest % 256] | usize::from(near).wrapping_sub(1);
        while q != NONE && p - q <= LAGS {
            let d = p - q - 1;
            scores[d] += 1;
            if scores[d] >= top {
                (leader, top) = (d, scores[d]);
            }
            q = previous[q % 256];
        }
    }
    (correct, longest_run)
}

/// Clears mask bits past the last sample, and those where lag `d` would
/// look before the first sample (`first + t < d`).
fn trim(masks: &mut [u64; LAGS], first: usize, count: usize) {
    let valid = if count >= BLOCK {
        u64::MAX
    } else {
        (1u64 << count) - 1
    };
    for (d, mask) in (1..=LAGS).zip(masks.iter_mut()) {
        let early = match d.checked_sub(first) {
            None | Some(0) => u64::MAX,
            Some(skip) if skip >= BLOCK => 0,
            Some(skip) => u64::MAX << skip,
        };
        *mask &= valid & early;
    }
}

/// Where each lag is right, block by block.
struct Matches<'a> {
    symbols: &'a [u8],
    /// A 0/1 track: `planes[0]` holds the samples, compared by equality.
    binary: bool,
    /// Otherwise one indicator plane per heavy symbol, compared by both
    /// being set.
    planes: Vec<Vec<u64>>,
    heavy: [bool; 256],
    /// Latest position of each light symbol so far.
    last: [usize; 256],
    /// Previous position of the same symbol, for the last 256 positions.
    previous: [usize; 256],
}

impl<'a> Matches<'a> {
    fn new(symbols: &'a [u8]) -> Self {
        let binary = symbols.iter().fold(0u8, |any, &s| any | s) < 2;
        let mut heavy = [false; 256];
        let mut planes = Vec::new();
        if binary {
            planes.push(pack(symbols, |b| b));
        } else {
            let counts = histogram(symbols);
            for s in 0..=255u8 {
                if counts[usize::from(s)] * HEAVY > symbols.len() {
                    heavy[usize::from(s)] = true;
                    planes.push(pack(symbols, move |b| u8::from(b == s)));
                }
            }
        }
        let mut matches = Matches {
            symbols,
            binary,
            planes,
            heavy,
            last: [NONE; 256],
            previous: [NONE; 256],
        };
        if let Some(&s) = symbols.first() {
            matches.last[usize::from(s)] = 0;
        }
        matches
    }

    /// The masks for predictions `first..first + count` (`first` a block
    /// start); bits past the end or before a lag's reach may be set.
    fn block(&mut self, first: usize, count: usize, masks: &mut [u64; LAGS]) {
        let word = (first + PAD) / 64;
        if self.binary {
            plane_masks(&self.planes[0], word, masks, |now, back, _| !(now ^ back));
            return;
        }
        masks.fill(0);
        for plane in &self.planes {
            plane_masks(plane, word, masks, |now, back, old| old | (now & back));
        }
        for p in first..first + count {
            self.walk(p, p - first, masks);
        }
    }

    /// Marks bit `t` for every lag at which the light symbol at `p`
    /// occurred before, and records the occurrence.
    fn walk(&mut self, p: usize, t: usize, masks: &mut [u64; LAGS]) {
        let s = usize::from(self.symbols[p]);
        if self.heavy[s] {
            return;
        }
        let mut q = self.last[s];
        self.previous[p % 256] = q;
        self.last[s] = p;
        while q != NONE && p - q <= LAGS {
            masks[p - q - 1] |= 1 << t;
            q = self.previous[q % 256];
        }
    }
}

/// How often each byte value occurs (four interleaved tables, so runs
/// of one value do not serialise on one counter).
fn histogram(symbols: &[u8]) -> [usize; 256] {
    let mut tables = [[0usize; 256]; 4];
    let mut quads = symbols.chunks_exact(4);
    for quad in &mut quads {
        for (table, &s) in tables.iter_mut().zip(quad) {
            table[usize::from(s)] += 1;
        }
    }
    for &s in quads.remainder() {
        tables[0][usize::from(s)] += 1;
    }
    let mut counts = [0usize; 256];
    for table in &tables {
        for (c, &t) in counts.iter_mut().zip(table) {
            *c += t;
        }
    }
    counts
}

/// Packs `f(sample)` (0 or 1) as bits, sample `p` at bit `p + PAD`, with a
/// spare word at the end.
fn pack(symbols: &[u8], f: impl Fn(u8) -> u8) -> Vec<u64> {
    let mut words = vec![0u64; (symbols.len() + PAD) / 64 + 2];
    let Some((&head, rest)) = symbols.split_first() else {
        return words;
    };
    // Word 2 starts at sample 1 (2 * 64 - PAD); word 1 ends with sample 0.
    words[1] = u64::from(f(head) & 1) << 63;
    for (word, chunk) in words[2..].iter_mut().zip(rest.chunks(BLOCK)) {
        let mut bits = 0u64;
        for (k, eight) in chunk.chunks(8).enumerate() {
            let mut lanes = [0u8; 8];
            for (lane, &b) in lanes.iter_mut().zip(eight) {
                *lane = f(b) & 1;
            }
            bits |= u64::from(gather_lanes(u64::from_le_bytes(lanes))) << (8 * k);
        }
        *word = bits;
    }
    words
}

/// Bit `i` = byte `i` of `x`, for bytes that are 0 or 1: the multiply
/// moves each byte's bit into the top byte without carries.
fn gather_lanes(x: u64) -> u8 {
    (x.wrapping_mul(0x0102_0408_1020_4080) >> 56) as u8
}

/// Combines each lag's shifted view of a packed plane with the block at
/// `word`: `masks[d - 1] = combine(now, plane shifted by d, masks[d - 1])`.
fn plane_masks(
    plane: &[u64],
    word: usize,
    masks: &mut [u64; LAGS],
    combine: impl Fn(u64, u64, u64) -> u64,
) {
    let (now, back1, back2) = (plane[word], plane[word - 1], plane[word - 2]);
    masks[63] = combine(now, back1, masks[63]);
    masks[127] = combine(now, back2, masks[127]);
    for d in 1..64 {
        let near = (now << d) | (back1 >> (64 - d));
        let far = (back1 << d) | (back2 >> (64 - d));
        masks[d - 1] = combine(now, near, masks[d - 1]);
        masks[d + 63] = combine(now, far, masks[d + 63]);
    }
}

/// The scoreboard of §6.3.7 and §6.3.8, shared by MultiMCW (`N = 4`
/// windows) and Lag (`N = 128` lags), and the leader's record.
///
/// Both follow NIST's rule: after each prediction the subpredictors that
/// were right score in index order, each taking the lead if its score
/// reaches (`>=`) the leader's; the leader starts as subpredictor 0. The
/// board is fed 64 predictions at a time as one hit mask per
/// subpredictor.
pub(super) struct Board<const N: usize> {
    scores: [u64; N],
    /// The leader's score, the highest.
    top: u64,
    /// At least the best score among the others.
    rival: u64,
    leader: usize,
    correct: u64,
    run: u64,
    longest_run: u64,
}

impl<const N: usize> Board<N> {
    pub(super) fn new() -> Self {
        const { assert!(N >= 1 && N <= 128) };
        Board {
            scores: [0; N],
            top: 0,
            rival: 0,
            leader: 0,
            correct: 0,
            run: 0,
            longest_run: 0,
        }
    }

    /// The leader's correct predictions and its longest run of them.
    pub(super) fn record_so_far(&self) -> (u64, u64) {
        (self.correct, self.longest_run)
    }

    /// Applies `count` (at most 64) predictions: bit `t` of `masks[j]` says
    /// subpredictor `j` was right at prediction `t`.
    pub(super) fn block(&mut self, masks: &[u64; N], count: u32) {
        let mut gains = [0u64; N];
        for (gain, mask) in gains.iter_mut().zip(masks) {
            *gain = u64::from(mask.count_ones());
        }
        let count = u64::from(count.min(64));
        if self.rival + count < self.top || self.exact_rival() + count < self.top {
            // No other subpredictor can reach the top in this block, even
            // right every time: the leader keeps the lead throughout.
            for (score, &gain) in self.scores.iter_mut().zip(&gains) {
                *score += gain;
            }
            self.top = self.scores[self.leader];
            self.rival += count;
            let hits = masks[self.leader];
            self.record(hits, count);
            return;
        }
        // Those that may reach the top score in this block; the others are
        // credited now.
        let mut reach = [0u64; 2];
        for (d, (score, &gain)) in self.scores.iter_mut().zip(&gains).enumerate() {
            let can = gain > 0 && *score + gain >= self.top;
            reach[d / 64] |= u64::from(can) << (d % 64);
            *score += if can { 0 } else { gain };
        }
        let hits = self.step_through(masks, reach);
        self.exact_rival();
        self.record(hits, count);
    }

    /// Sets `rival` to the best score of a subpredictor other than the
    /// leader.
    fn exact_rival(&mut self) -> u64 {
        let mut rival = 0;
        for (d, &score) in self.scores.iter().enumerate() {
            if d != self.leader && score > rival {
                rival = score;
            }
        }
        self.rival = rival;
        rival
    }

    /// Follows the subpredictors in `reach` prediction by prediction (only
    /// where one of them is right); returns the leader's hits.
    fn step_through(&mut self, masks: &[u64; N], reach: [u64; 2]) -> u64 {
        let mut chosen = [0usize; N];
        let mut n = 0;
        let mut events = 0u64;
        for (half, &bits) in reach.iter().enumerate() {
            let mut bits = bits;
            while bits != 0 {
                let d = half * 64 + bits.trailing_zeros() as usize;
                chosen[n] = d;
                n += 1;
                events |= masks[d];
                bits &= bits - 1;
            }
        }
        let mut hits = 0u64;
        // Positions not yet credited to a leader.
        let mut pending = u64::MAX;
        while events != 0 {
            let t = events.trailing_zeros();
            let through = u64::MAX >> (63 - t);
            hits |= masks[self.leader] & pending & through;
            pending = !through;
            for &d in &chosen[..n] {
                if masks[d] >> t & 1 == 1 {
                    self.scores[d] += 1;
                    if self.scores[d] >= self.top {
                        self.leader = d;
                        self.top = self.scores[d];
                    }
                }
            }
            events &= events - 1;
        }
        hits | (masks[self.leader] & pending)
    }

    /// Adds `count` predictions' outcomes (bit `t` = prediction `t` right)
    /// to the correct count and the run lengths.
    fn record(&mut self, hits: u64, count: u64) {
        if count == 0 {
            return;
        }
        let full = u64::MAX >> (64 - count);
        let hits = hits & full;
        self.correct += u64::from(hits.count_ones());
        if hits == full {
            self.run += count;
            self.longest_run = self.longest_run.max(self.run);
            return;
        }
        self.run += u64::from(hits.trailing_ones());
        self.longest_run = self.longest_run.max(self.run);
        if has_run_over(hits, self.longest_run) {
            self.longest_run = longest_ones(hits);
        }
        // The run still open at the block's end.
        self.run = u64::from((hits << (64 - count)).leading_ones());
        self.longest_run = self.longest_run.max(self.run);
    }
}

/// Whether `x` has more than `n` consecutive set bits.
fn has_run_over(x: u64, n: u64) -> bool {
    if n >= 64 {
        return false;
    }
    let want = n + 1;
    // `starts` marks the first bit of every run of at least `have` ones.
    let (mut starts, mut have) = (x, 1u64);
    while have < want && starts != 0 {
        let step = have.min(want - have);
        starts &= starts >> step;
        have += step;
    }
    starts != 0
}

/// Longest stretch of consecutive set bits in `x`.
fn longest_ones(mut x: u64) -> u64 {
    let mut best = 0;
    while x != 0 {
        x >>= x.trailing_zeros();
        let ones = x.trailing_ones();
        best = best.max(ones);
        x = x.checked_shr(ones).unwrap_or(0);
    }
    u64::from(best)
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

    /// §6.3.8 as NIST runs it, one prediction and one lag at a time.
    fn reference(s: &[u8]) -> (u64, u64) {
        let mut scores = [0u64; LAGS];
        let (mut leader, mut top, mut correct, mut run, mut longest) = (0usize, 0u64, 0, 0, 0);
        for i in 1..s.len() {
            if s[i] == s[i - leader - 1] {
                correct += 1;
                run += 1;
                longest = longest.max(run);
            } else {
                run = 0;
            }
            for d in 1..=LAGS.min(i) {
                if s[i - d] == s[i] {
                    scores[d - 1] += 1;
                    if scores[d - 1] >= top {
                        leader = d - 1;
                        top = scores[d - 1];
                    }
                }
            }
        }
        (correct, longest)
    }

    #[test]
    fn too_short_gives_none() {
        assert_eq!(
            lag(Track {
                symbols: &[0, 1],
                alphabet: 2
            }),
            None
        );
        assert_eq!(
            lag(Track {
                symbols: &[],
                alphabet: 0
            }),
            None
        );
        assert!(
            lag(Track {
                symbols: &[0, 1, 0],
                alphabet: 2
            })
            .is_some()
        );
    }

    #[test]
    fn constant_input_is_fully_predictable() {
        let data = vec![3u8; 1000];
        assert_eq!(score(&data), (999, 999));
        assert_eq!(
            lag(Track {
                symbols: &data,
                alphabet: 1
            }),
            Some(0.0)
        );
    }

    #[test]
    fn bit_helpers() {
        assert_eq!(longest_ones(0), 0);
        assert_eq!(longest_ones(u64::MAX), 64);
        assert_eq!(longest_ones(0b1110_1111_0110), 4);
        assert_eq!(longest_ones(1 << 63 | 0b11), 2);
        assert!(has_run_over(0b1110_1111_0110, 3));
        assert!(!has_run_over(0b1110_1111_0110, 4));
        assert!(has_run_over(u64::MAX, 63));
        assert!(!has_run_over(u64::MAX, 64));
        assert_eq!(gather_lanes(0x0100_0001_0101_0001), 0b1001_1101);
    }

    #[test]
    fn matches_reference() {
        let mut cases: Vec<Vec<u8>> = Vec::new();
        for (seed, k) in [(1u64, 2u64), (2, 3), (3, 16), (4, 256)] {
            let mut next = lcg(seed);
            cases.push((0..5000).map(|_| (next() % k) as u8).collect());
        }
        let mut next = lcg(5);
        cases.push((0..5000).map(|_| u8::from(next() % 8 == 0)).collect());
        // A frequent symbol (plane) among rare ones (walked).
        let mut next = lcg(6);
        cases.push(
            (0..5000)
                .map(|_| {
                    if next() % 3 == 0 {
                        (next() % 40) as u8
                    } else {
                        7
                    }
                })
                .collect(),
        );
        cases.push((0..5000u32).map(|i| (i % 37 % 5) as u8).collect());
        cases.push((0..5000u32).map(|i| u8::from(i % 200 < 3)).collect());
        cases.push((0..5000u32).map(|i| ((i * i) % 3) as u8).collect());
        for len in [3usize, 4, 63, 64, 65, 66, 127, 128, 129, 130, 200] {
            cases.push(
                (0..len as u32)
                    .map(|i| ((i * 7 + i / 3) % 2) as u8)
                    .collect(),
            );
            cases.push(
                (0..len as u32)
                    .map(|i| ((i * 5 + i / 7) % 4) as u8)
                    .collect(),
            );
        }
        for case in &cases {
            assert_eq!(score(case), reference(case), "len {}", case.len());
        }
    }

    /// Long 0/1 tracks: close races, a steady leader, long runs.
    #[test]
    fn matches_reference_on_long_bits() {
        let mut next = lcg(21);
        let mut cases: Vec<Vec<u8>> = Vec::new();
        cases.push((0..25000).map(|_| (next() & 1) as u8).collect());
        cases.push((0..20000).map(|_| u8::from(next() % 10 < 3)).collect());
        let mut echo = vec![0u8; 5];
        for p in 5..25000 {
            let copy = next() % 10 < 9;
            echo.push(if copy {
                echo[p - 5]
            } else {
                (next() & 1) as u8
            });
        }
        cases.push(echo);
        let mut sticky = vec![0u8];
        for p in 1..20000 {
            let flip = next() % 50 == 0;
            sticky.push(sticky[p - 1] ^ u8::from(flip));
        }
        cases.push(sticky);
        cases.push(
            (0..20000u32)
                .map(|i| u8::from(i % 13 < 6) ^ u8::from(next() % 40 == 0))
                .collect(),
        );
        for case in &cases {
            assert_eq!(score(case), reference(case), "len {}", case.len());
        }
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
        let ours = lag(Track {
            symbols: &literal,
            alphabet: 7,
        })
        .unwrap();
        assert!((ours - 2.6809455763454531).abs() < 1e-12, "{ours}");
        let ours = lag(Track {
            symbols: &bits,
            alphabet: 2,
        })
        .unwrap();
        assert!((ours - 0.55218392812470374).abs() < 1e-12, "{ours}");
    }
}
