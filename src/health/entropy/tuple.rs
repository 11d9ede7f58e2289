//! SP 800-90B §6.3.5 t-tuple and §6.3.6 longest repeated substring (LRS)
//! estimates.
//!
//! Both read one statistic of the sorted suffixes of the track: the runs of
//! adjacent suffixes whose common prefix is at least `t` symbols long are
//! exactly the groups of equal `t`-tuples (overlapping occurrences, as the
//! standard counts them). NIST's tool (`SAalgs` in `cpp/shared/lrs_test.h`,
//! commit 68ed165) builds a suffix array (libdivsufsort) and LCP array,
//! then runs Kaufer's algorithm for the tuple counts and a second loop for
//! the LRS pair counts; that loop costs the sum of all LCP drops, which is
//! quadratic for data repeating a long block. Here the same integers come
//! from the groups themselves, each tallied once ([`Tallies`]):
//!
//! * `Q[t]`, the most occurrences of one `t`-tuple, is the size of the
//!   largest group at depth `t` or deeper (1 where there is none);
//! * `S[W]`, the pairs of positions sharing their first `W` symbols (the
//!   standard's sum of `C(count, 2)` over `W`-tuples), sums `C(size, 2)`
//!   over the groups at depth `W`.
//!
//! The groups come from a radix sort of fixed-width windows (`width`
//! symbols packed in a `u64`: 64 bits of a bitstring, 8 bytes of an 8-bit
//! track), which is the suffix order as long as no two windows are equal:
//! shallow groups are counted from bucket sizes, deeper ones traversed
//! ([`RadixWalk`]); equal windows are sorted further by the next windows,
//! within a work budget; beyond it (data that is mostly long repeats) a
//! full suffix array is built ([`suffix`]). All three give NIST's counts
//! exactly.
//!
//! NIST's conventions, kept here: `u` is the first `t` with `Q[t] < 35`
//! (or `v + 1` when every `t` up to `v` has 35 occurrences), where `v` is
//! the LRS length; the t-tuple estimate takes `t` in `1..u` and fails when
//! `u = 1`; the LRS estimate takes `W` in `u..=v` and fails when `v < u`;
//! `P_max` is the maximum of the `t`-th (or `W`-th) roots, and the 99 %
//! bound is `p + Z_ALPHA·√(p(1-p)/(L-1))`, capped at 1. NIST computes these
//! few roots in `long double`; `f64` changes the result by about 1e-16 bit.

use super::suffix;
use super::support::{Track, Z_ALPHA};
use std::collections::BTreeMap;

/// The two estimates, in bits per symbol of the track, each `None` where
/// NIST's tool leaves its result at -1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TupleEstimates {
    /// §6.3.5: `None` when no symbol occurs 35 times.
    pub t_tuple: Option<f64>,
    /// §6.3.6: `None` when the longest repeated substring is shorter than
    /// `u`, the first tuple length with fewer than 35 occurrences.
    pub lrs: Option<f64>,
}

/// The tuple counts that mark a `t` as usable for the t-tuple estimate
/// (§6.3.5 step 1: "at least 35 times").
const MIN_TUPLE_COUNT: u32 = 35;

/// §6.3.5 and §6.3.6 on one track, computed together as NIST does. Only
/// the symbols matter (the alphabet size is not needed).
///
/// Tracks of fewer than 2 symbols (where NIST's tool asserts) or of
/// `u32::MAX` symbols or more (beyond 32-bit indices) get no estimates.
pub fn tuple_and_lrs(track: Track) -> TupleEstimates {
    let none = TupleEstimates {
        t_tuple: None,
        lrs: None,
    };
    let symbols = track.symbols;
    let n = symbols.len();
    if n < 2 || n >= u32::MAX as usize {
        return none;
    }
    let tallies = match tally_by_windows(symbols) {
        Some(found) => found,
        None => match tally_by_suffix_array(symbols) {
            Some(found) => found,
            None => return none,
        },
    };
    let profile = tallies.finish();
    let u = profile.first_rare_length();
    TupleEstimates {
        t_tuple: profile.t_tuple(u),
        lrs: profile.lrs(u),
    }
}

/// The 99 % upper bound on a probability estimated from `n` symbols, as
/// min-entropy (NIST's `p_u`, then `-log2`; +0 rather than -0 at `p_u = 1`).
fn entropy_of_bound(p: f64, n: usize) -> f64 {
    let bound = p + Z_ALPHA * (p * (1.0 - p) / (n - 1) as f64).sqrt();
    0.0 - bound.min(1.0).log2()
}

/// What the estimates need from the sorted suffixes, indexed by length
/// (entry 0 unused): `tuple_max[t] = Q[t]` and `pairs[w] = S[W]`, both up to
/// the LRS length `v`.
struct RepeatProfile {
    n: usize,
    tuple_max: Vec<u32>,
    pairs: Vec<u64>,
}

impl RepeatProfile {
    /// The LRS length `v`.
    fn longest(&self) -> usize {
        self.tuple_max.len() - 1
    }

    /// NIST's `u`: the first `t` with fewer than 35 occurrences of every
    /// `t`-tuple, `v + 1` if there is none.
    fn first_rare_length(&self) -> usize {
        (1..=self.longest())
            .find(|&t| self.tuple_max[t] < MIN_TUPLE_COUNT)
            .unwrap_or(self.longest() + 1)
    }

    /// §6.3.5 steps 2-4: `P_max = max (Q[t] / (L - t + 1))^(1/t)` over
    /// `t < u`.
    fn t_tuple(&self, u: usize) -> Option<f64> {
        if u < 2 {
            return None;
        }
        let p_max = (1..u)
            .map(|t| (self.tuple_max[t] as f64 / (self.n - t + 1) as f64).powf(1.0 / t as f64))
            .fold(f64::NEG_INFINITY, f64::max);
        Some(entropy_of_bound(p_max, self.n))
    }

    /// §6.3.6 steps 2-4: `P_max = max (S[W] / C(L - W + 1, 2))^(1/W)` over
    /// `W` in `u..=v`.
    fn lrs(&self, u: usize) -> Option<f64> {
        if self.longest() < u {
            return None;
        }
        let p_max = (u..=self.longest())
            .map(|w| {
                let tuples = (self.n - w + 1) as u64;
                let choices = tuples * (tuples - 1) / 2;
                (self.pairs[w] as f64 / choices as f64).powf(1.0 / w as f64)
            })
            .fold(0.0, f64::max);
        Some(entropy_of_bound(p_max, self.n))
    }
}

/// Per-depth tallies of the groups of equal tuples, from which
/// [`RepeatProfile`] follows. Groups come either as counts (a group of
/// `size` positions sharing exactly-counted `depth` symbols) or from a
/// bottom-up traversal of the LCP intervals of a run of sorted suffixes.
struct Tallies {
    n: usize,
    /// By depth: the largest group recorded at exactly that depth.
    largest: Vec<u32>,
    /// By depth, wrapping: `S[W]` is the sum of the entries from `W` up.
    pair_steps: Vec<u64>,
    /// The traversal's open intervals: (depth, rank of their first suffix),
    /// depths strictly increasing above the run's base at the bottom.
    open: Vec<(u32, u32)>,
    /// Suffixes of the run seen so far (the rank of the next one).
    seen: u32,
}

impl Tallies {
    /// Tallies for a track of `n` symbols whose repeats are at most
    /// `max_depth` long.
    fn new(n: usize, max_depth: usize) -> Tallies {
        Tallies {
            n,
            largest: vec![0; max_depth + 1],
            pair_steps: vec![0; max_depth + 1],
            open: Vec::new(),
            seen: 0,
        }
    }

    /// Copies the per-depth entries (as deep as keys reach) into `saved`.
    fn save(&self, saved: &mut Vec<(u32, u64)>) {
        saved.clear();
        saved.extend(
            self.largest
                .iter()
                .copied()
                .zip(self.pair_steps.iter().copied())
                .take(TALLY_SAVED),
        );
    }

    /// Undoes the tallies since [`Tallies::save`], which touched no deeper
    /// entries.
    fn restore(&mut self, saved: &[(u32, u64)]) {
        for (depth, &(largest, pairs)) in saved.iter().enumerate() {
            self.largest[depth] = largest;
            self.pair_steps[depth] = pairs;
        }
    }

    /// Makes room for groups `depth` symbols deep.
    fn deepen(&mut self, depth: usize) {
        if depth >= self.largest.len() {
            self.largest.resize(depth + 1, 0);
            self.pair_steps.resize(depth + 1, 0);
        }
    }

    /// `pairs` more pairs of positions share at least `depth` symbols, for
    /// every depth in `above + 1..=depth`.
    fn add_pairs(&mut self, depth: usize, above: usize, pairs: u64) {
        self.pair_steps[depth] = self.pair_steps[depth].wrapping_add(pairs);
        self.pair_steps[above] = self.pair_steps[above].wrapping_sub(pairs);
    }

    /// Starts a run of sorted suffixes that share `base` symbols (groups of
    /// that depth or less are tallied elsewhere); its first suffix.
    fn start_run(&mut self, base: u32) {
        self.open.clear();
        self.open.push((base, 0));
        self.seen = 1;
    }

    /// The next suffix of the run, sharing `lcp` symbols with the previous.
    fn push(&mut self, lcp: u32) {
        let seen = self.seen;
        self.seen += 1;
        let depth = self.open.last().map_or(0, |&(d, _)| d);
        if lcp > depth {
            self.open.push((lcp, seen - 1));
        } else if lcp < depth {
            self.unwind(lcp, seen);
        }
    }

    /// Closes the open intervals deeper than `lcp` (at least the base); the
    /// suffix of rank `seen` is the first outside them.
    fn unwind(&mut self, lcp: u32, seen: u32) {
        while self.open.len() > 1 {
            let Some((depth, start)) = self.open.pop() else {
                break;
            };
            let below = self.open.last().map_or(0, |&(d, _)| d);
            // The interval is the group of one W-tuple for W in
            // max(below, lcp) + 1..=depth.
            let size = seen - start;
            self.largest[depth as usize] = self.largest[depth as usize].max(size);
            let pairs = u64::from(size) * u64::from(size - 1) / 2;
            self.add_pairs(depth as usize, below.max(lcp) as usize, pairs);
            if lcp >= below {
                if lcp > below {
                    self.open.push((lcp, start));
                }
                return;
            }
        }
    }

    /// Ends the run, closing every interval above its base.
    fn end_run(&mut self) {
        let base = self.open.first().map_or(0, |&(d, _)| d);
        self.unwind(base, self.seen);
    }

    /// Turns the per-depth entries into `Q[t]` and `S[W]`, up to the
    /// deepest group.
    fn finish(self) -> RepeatProfile {
        let deepest = self.largest.iter().rposition(|&s| s > 1).unwrap_or(0);
        let mut tuple_max = self.largest;
        let mut pairs = self.pair_steps;
        tuple_max.truncate(deepest + 1);
        pairs.truncate(deepest + 1);
        let (mut most, mut sum) = (1u32, 0u64);
        for t in (1..=deepest).rev() {
            most = most.max(tuple_max[t]);
            tuple_max[t] = most;
            sum = sum.wrapping_add(pairs[t]);
            pairs[t] = sum;
        }
        RepeatProfile {
            n: self.n,
            tuple_max,
            pairs,
        }
    }
}

/// The exact path for any track: a suffix array and its LCP array, as one
/// run from the root.
fn tally_by_suffix_array(symbols: &[u8]) -> Option<Tallies> {
    let lcp = suffix::lcp_array(symbols, suffix::suffix_array(symbols)?);
    let max_lcp = lcp.iter().copied().max().unwrap_or(0) as usize;
    let mut tallies = Tallies::new(symbols.len(), max_lcp);
    tallies.start_run(0);
    for &l in &lcp[1..] {
        tallies.push(l);
    }
    tallies.end_run();
    Some(tallies)
}

/// The symbols packed `bits` each, most significant first, so that the
/// `width` symbols from any position read as one `u64` key whose order is
/// their lexicographic order (past the end the key is zero-padded).
struct Windows {
    words: Vec<u64>,
    /// Symbols in the track.
    len: usize,
    bits: usize,
    width: usize,
    mask: u64,
    /// Common prefix in symbols, by the leading zero bits of two keys' XOR.
    symbols_by_zeros: [u8; 65],
}

impl Windows {
    fn new(symbols: &[u8]) -> Windows {
        let top = symbols.iter().copied().max().unwrap_or(0);
        let bits = (8 - top.leading_zeros() as usize).max(1);
        let width = 64 / bits;
        let mut words = Vec::with_capacity(symbols.len() * bits / 64 + 2);
        let (mut pending, mut filled) = (0u128, 0usize);
        for &c in symbols {
            pending = (pending << bits) | u128::from(c);
            filled += bits;
            if filled >= 64 {
                filled -= 64;
                words.push((pending >> filled) as u64);
            }
        }
        words.push(if filled == 0 {
            0
        } else {
            (pending << (64 - filled)) as u64
        });
        words.push(0);
        let mask = u64::MAX << (64 - width * bits);
        let symbols_by_zeros = std::array::from_fn(|zeros| (zeros / bits).min(width) as u8);
        Windows {
            words,
            len: symbols.len(),
            bits,
            width,
            mask,
            symbols_by_zeros,
        }
    }

    fn key(&self, i: usize) -> u64 {
        let (word, offset) = (i * self.bits / 64, i * self.bits % 64);
        let pair = (u128::from(self.words[word]) << 64) | u128::from(self.words[word + 1]);
        ((pair << offset) >> 64) as u64 & self.mask
    }

    /// The keys of positions `first..first + count` in order, computed
    /// incrementally.
    fn keys_from(&self, first: usize, count: usize) -> impl Iterator<Item = u64> + '_ {
        let (word, mut offset) = (first * self.bits / 64, first * self.bits % 64);
        let mut pair = (u128::from(self.words[word]) << 64) | u128::from(self.words[word + 1]);
        let mut word = word + 1;
        (0..count).map(move |_| {
            let key = ((pair << offset) >> 64) as u64 & self.mask;
            offset += self.bits;
            if offset >= 64 {
                offset -= 64;
                word += 1;
                pair = (pair << 64) | u128::from(self.words[word]);
            }
            key
        })
    }

    /// Common prefix, in symbols, of two keys (at most `width`).
    fn common(&self, a: u64, b: u64) -> u32 {
        u32::from(self.symbols_by_zeros[(a ^ b).leading_zeros() as usize])
    }
}

/// `floor(log2(x))` for `x >= 1`, 0 for 0.
fn log2_floor(x: usize) -> u32 {
    (usize::BITS - 1).saturating_sub(x.leading_zeros())
}

/// Tallies the groups of a prefix-count table: `counts[p]` positions start
/// with the `high`-bit prefix `p` (all sharing the same `low` bits before
/// it). Every level of `low + 1..=high` bits that is a whole number of
/// symbols is tallied; `counts` is consumed as the scratch of the
/// aggregation.
fn tally_levels(tallies: &mut Tallies, counts: &mut [u32], low: u32, high: u32, bits: usize) {
    let mut len = counts.len();
    for level in (low + 1..=high).rev() {
        if (level as usize).is_multiple_of(bits) {
            let depth = level as usize / bits;
            let (mut most, mut pairs) = (0u32, 0u64);
            for &c in &counts[..len] {
                most = most.max(c);
                pairs += u64::from(c) * u64::from(c) - u64::from(c);
            }
            if most > 1 {
                tallies.largest[depth] = tallies.largest[depth].max(most);
                tallies.add_pairs(depth, depth - 1, pairs / 2);
            }
        }
        len /= 2;
        for i in 0..len {
            counts[i] = counts[2 * i] + counts[2 * i + 1];
        }
    }
}

/// The usual path: sort the suffixes by their first `width` symbols,
/// bucket by bucket, tallying the groups as the radix sort finds them.
/// Where full windows are equal the suffixes are compared further
/// ([`Ties`]). `None` (use the suffix array) when one
/// bucket holds too much of the track or the ties cost too much: data that
/// repetitive is sorted faster by SA-IS.
///
/// The suffixes shorter than `width` are left out of the buckets and added
/// at the end ([`Shorts`]).
fn tally_by_windows(symbols: &[u8]) -> Option<Tallies> {
    let n = symbols.len();
    let windows = Windows::new(symbols);
    let full = (n + 1).saturating_sub(windows.width);
    let top_bits = log2_floor(full).saturating_sub(TOP_LESS).clamp(1, 14);
    let buckets = Buckets::new(&windows, full, top_bits)?;
    let mut walk = RadixWalk {
        windows: &windows,
        tallies: Tallies::new(n, windows.width),
        ties: Ties {
            budget: TIE_BUDGET_PER_SYMBOL * n + (1 << 16),
            diagonals: BTreeMap::new(),
        },
        sizes: Vec::new(),
        lcps: Vec::new(),
    };
    let mut shorts = Shorts::new(&windows, full, n, top_bits, &buckets.counts);
    let (mut keys, mut scratch) = (Vec::new(), Vec::new());
    let mut saved = Vec::new();
    let mut tied = false;
    for bucket in 0..buckets.counts.len() {
        if buckets.counts[bucket] == 0 {
            continue;
        }
        keys.clear();
        keys.extend(buckets.positions(bucket).map(|p| windows.key(p)));
        shorts.count_in_bucket(bucket, &keys);
        // Bare keys are cheaper, but once a bucket has had equal keys the
        // next likely has too: go straight to pairs.
        if !tied {
            scratch.resize(keys.len(), 0);
            walk.tallies.save(&mut saved);
            if walk
                .sort_and_tally(&mut keys, &mut scratch, top_bits, 0)
                .is_ok()
            {
                continue;
            }
            walk.tallies.restore(&saved);
        }
        let mut items: Vec<(u64, u32)> = buckets
            .positions(bucket)
            .map(|p| (windows.key(p), p as u32))
            .collect();
        let mut spare = vec![(0, 0); items.len()];
        let before = walk.ties.budget;
        walk.sort_and_tally(&mut items, &mut spare, top_bits, 0)
            .ok()?;
        tied = walk.ties.budget < before;
    }
    let mut tallies = walk.tallies;
    let mut counts = buckets.counts;
    tally_levels(&mut tallies, &mut counts, 0, top_bits, windows.bits);
    shorts.tally(&mut tallies);
    Some(tallies)
}

/// The first radix pass buckets on `log2(n) - TOP_LESS` bits, a few
/// thousand positions per bucket, so that a bucket's sort stays in cache.
const TOP_LESS: u32 = 12;

/// Positions per block of the first radix pass (offsets fit a `u16`).
const BLOCK: usize = 1 << 16;

/// The full-window positions bucketed by their first `top_bits` key bits,
/// block by block: each block of [`BLOCK`] positions is counting-sorted on
/// its own, which keeps the scatter in cache and the positions in two
/// bytes each.
struct Buckets {
    /// Offsets within their block, each block's sorted by bucket.
    offsets: Vec<u16>,
    /// `starts[k * (buckets + 1) + b]`: where bucket `b` begins in block
    /// `k`'s offsets (the last entry of a row ends the block).
    starts: Vec<u32>,
    /// Positions in each bucket, over all blocks.
    counts: Vec<u32>,
}

impl Buckets {
    /// `None` if one bucket holds more than an eighth of the positions (and
    /// over 2^16): data that skewed has long repeats, sorted faster (and in
    /// less memory than such a bucket's buffers) by the suffix array.
    fn new(windows: &Windows, full: usize, top_bits: u32) -> Option<Buckets> {
        let shift = 64 - top_bits;
        let buckets = 1usize << top_bits;
        let blocks = full.div_ceil(BLOCK);
        let mut offsets = vec![0u16; full];
        let mut starts = vec![0u32; blocks * (buckets + 1)];
        let mut counts = vec![0u32; buckets];
        let mut next = vec![0u32; buckets];
        for (k, block) in offsets.chunks_mut(BLOCK).enumerate() {
            let first = k * BLOCK;
            next.fill(0);
            for key in windows.keys_from(first, block.len()) {
                next[(key >> shift) as usize] += 1;
            }
            let row = &mut starts[k * (buckets + 1)..(k + 1) * (buckets + 1)];
            let mut sum = 0u32;
            for b in 0..buckets {
                counts[b] += next[b];
                row[b] = sum;
                let c = next[b];
                next[b] = sum;
                sum += c;
            }
            row[buckets] = sum;
            for (offset, key) in windows.keys_from(first, block.len()).enumerate() {
                let b = (key >> shift) as usize;
                block[next[b] as usize] = offset as u16;
                next[b] += 1;
            }
        }
        if counts.iter().any(|&c| c as usize > (full / 8).max(1 << 16)) {
            return None;
        }
        Some(Buckets {
            offsets,
            starts,
            counts,
        })
    }

    /// The positions in `bucket`, block by block.
    fn positions(&self, bucket: usize) -> impl Iterator<Item = usize> + '_ {
        let row = self.counts.len() + 1;
        self.offsets
            .chunks(BLOCK)
            .enumerate()
            .flat_map(move |(k, block)| {
                let (lo, hi) = (
                    self.starts[k * row + bucket],
                    self.starts[k * row + bucket + 1],
                );
                block[lo as usize..hi as usize]
                    .iter()
                    .map(move |&o| k * BLOCK + usize::from(o))
            })
    }
}

/// What the radix walk sorts: bare keys, or (key, position) pairs once a
/// bucket has equal keys, whose ties only positions can resolve.
trait Item: Copy + Default + Ord {
    fn key(&self) -> u64;
    /// Sorts a run with equal keys exactly and completes its LCPs.
    fn resolve(
        ties: &mut Ties,
        windows: &Windows,
        run: &mut [Self],
        lcps: &mut [u32],
    ) -> Result<(), Tie>;
}

/// Two full windows are equal (keys only), or resolving them went over
/// budget (pairs).
struct Tie;

impl Item for u64 {
    fn key(&self) -> u64 {
        *self
    }
    fn resolve(_: &mut Ties, _: &Windows, _: &mut [u64], _: &mut [u32]) -> Result<(), Tie> {
        Err(Tie)
    }
}

impl Item for (u64, u32) {
    fn key(&self) -> u64 {
        self.0
    }
    fn resolve(
        ties: &mut Ties,
        windows: &Windows,
        run: &mut [Self],
        lcps: &mut [u32],
    ) -> Result<(), Tie> {
        ties.resolve(windows, run, lcps).ok_or(Tie)
    }
}

/// Most-significant-digit radix sort of one bucket, tallying as it goes:
/// each counting pass on the next key bits gives the groups down to those
/// bits ([`tally_levels`]); sub-buckets of two keys are one pair, small ones
/// are sorted and traversed, large ones recursed into.
struct RadixWalk<'a> {
    windows: &'a Windows,
    tallies: Tallies,
    ties: Ties,
    /// Sub-bucket sizes, one buffer per recursion level.
    sizes: Vec<Vec<u32>>,
    lcps: Vec<u32>,
}

/// Per-depth entries a bucket of bare keys can touch (its groups are less
/// than `width <= 64` symbols deep).
const TALLY_SAVED: usize = 65;

/// Sub-buckets at most this large are sorted by comparison and traversed.
const SMALL_RUN: usize = 64;

impl RadixWalk<'_> {
    /// Sorts `items` (sharing their first `skip` key bits) and tallies
    /// their groups deeper than that. `scratch` is as long as `items`; the
    /// sorted items may end in either.
    fn sort_and_tally<T: Item>(
        &mut self,
        items: &mut [T],
        scratch: &mut [T],
        skip: u32,
        level: usize,
    ) -> Result<(), Tie> {
        let bits = self.windows.bits as u32;
        let key_bits = self.windows.width as u32 * bits;
        let m = items.len();
        // Bits that all the items share need no pass: they are one group
        // down to there.
        let first = items[0].key();
        let shared = items
            .iter()
            .fold(0, |acc, item| acc | (item.key() ^ first))
            .leading_zeros()
            .min(key_bits);
        if shared / bits > skip / bits {
            let depth = (shared / bits) as usize;
            self.tallies.largest[depth] = self.tallies.largest[depth].max(m as u32);
            self.tallies.add_pairs(
                depth,
                (skip / bits) as usize,
                (m as u64) * (m as u64 - 1) / 2,
            );
        }
        let skip = skip.max(shared);
        if m <= SMALL_RUN || skip >= key_bits {
            return self.run(items, skip);
        }
        let sub_bits = (log2_floor(m) + SUB_EXTRA)
            .clamp(1, 16)
            .min(key_bits - skip);
        let (shift, mask) = (64 - skip - sub_bits, (1u64 << sub_bits) - 1);
        if self.sizes.len() <= level {
            self.sizes.resize_with(level + 1, Vec::new);
        }
        let mut sizes = std::mem::take(&mut self.sizes[level]);
        sizes.clear();
        sizes.resize(1 << sub_bits, 0);
        counting_sort(items, scratch, &mut sizes, |item| {
            ((item.key() >> shift) & mask) as usize
        });
        let base = ((skip + sub_bits) / bits) as usize;
        let mut start = 0usize;
        for &size in &sizes {
            let end = start + size as usize;
            match size {
                0 | 1 => {}
                2 if scratch[start].key() != scratch[start + 1].key() => {
                    // The common case: one pair, one interval.
                    let lcp = self
                        .windows
                        .common(scratch[start].key(), scratch[start + 1].key())
                        as usize;
                    self.tallies.largest[lcp] = self.tallies.largest[lcp].max(2);
                    self.tallies.add_pairs(lcp, base, 1);
                }
                _ => {
                    let (sub, spare) = (&mut scratch[start..end], &mut items[start..end]);
                    self.sort_and_tally(sub, spare, skip + sub_bits, level + 1)?;
                }
            }
            start = end;
        }
        tally_levels(
            &mut self.tallies,
            &mut sizes,
            skip,
            skip + sub_bits,
            self.windows.bits,
        );
        self.sizes[level] = sizes;
        Ok(())
    }

    /// Sorts a small run (sharing `skip` key bits) and traverses its LCP
    /// intervals.
    fn run<T: Item>(&mut self, items: &mut [T], skip: u32) -> Result<(), Tie> {
        items.sort_unstable();
        let mut lcps = std::mem::take(&mut self.lcps);
        lcps.clear();
        lcps.push(0);
        lcps.extend(
            items
                .windows(2)
                .map(|pair| self.windows.common(pair[0].key(), pair[1].key())),
        );
        if items.windows(2).any(|pair| pair[0].key() == pair[1].key()) {
            T::resolve(&mut self.ties, self.windows, items, &mut lcps)?;
            let deepest = lcps.iter().copied().max().unwrap_or(0);
            self.tallies.deepen(deepest as usize);
        }
        self.tallies.start_run(skip / self.windows.bits as u32);
        for &lcp in &lcps[1..] {
            self.tallies.push(lcp);
        }
        self.tallies.end_run();
        self.lcps = lcps;
        Ok(())
    }
}

/// Work allowed for resolving equal windows, in keys read per symbol of
/// the track (a block of a few KiB repeated once costs far less). Beyond
/// it the suffix array is cheaper.
const TIE_BUDGET_PER_SYMBOL: usize = 4;

/// Symbols of the track per remembered common prefix, at most: a track
/// with more equal pairs (a long block repeated) is cheaper as a suffix
/// array than as a map this large.
const MEMO_PER_ENTRY: usize = 32;

/// Resolves equal full windows by comparing the suffixes further, within a
/// budget of keys read.
struct Ties {
    /// Keys still allowed to be read; beyond them the suffix array is
    /// cheaper.
    budget: usize,
    /// Common prefixes found so far of pairs of suffixes, by (distance,
    /// earlier position): along one diagonal (a repeated block) each
    /// follows from a neighbour's.
    diagonals: BTreeMap<(u32, u32), u32>,
}

impl Ties {
    /// Sorts a run of (key, position) items, sorted by key, into exact
    /// suffix order and completes their LCPs (`lcps[i]` for items `i - 1`
    /// and `i`, already right where keys differ). Pairs of equal keys are
    /// measured directly ([`Ties::pair`]); larger groups by a
    /// most-significant-digit radix sort of the suffixes with
    /// `width`-symbol digits, each group of equal digits refined by the
    /// next ones. `None` once the budget runs out.
    fn resolve(
        &mut self,
        windows: &Windows,
        run: &mut [(u64, u32)],
        lcps: &mut [u32],
    ) -> Option<()> {
        let width = windows.width as u32;
        // Groups sharing `depth` symbols, still in key order only.
        let mut pending: Vec<(usize, usize, u32)> = Vec::new();
        push_groups(lcps, 0, run.len(), width, &mut pending);
        while let Some((start, end, depth)) = pending.pop() {
            let size = end - start;
            if size == 2 {
                let (lcp, in_order) = self.pair(windows, run[start].1, run[start + 1].1)?;
                if !in_order {
                    run.swap(start, start + 1);
                }
                lcps[start + 1] = lcp;
                continue;
            }
            self.budget = self
                .budget
                .checked_sub(size + size * log2_floor(size) as usize / 2)?;
            // Past the end a key is zero-padded; the remaining length (at
            // most `width`) then sorts a suffix before those it is a prefix
            // of.
            let remaining =
                |p: u32| (windows.len - p as usize - depth as usize).min(width as usize) as u32;
            let group = &mut run[start..end];
            for item in group.iter_mut() {
                item.0 = windows.key(item.1 as usize + depth as usize);
            }
            group.sort_unstable_by_key(|&(k, p)| (k, remaining(p)));
            for i in start + 1..end {
                let (a, b) = (run[i - 1], run[i]);
                let common = windows
                    .common(a.0, b.0)
                    .min(remaining(a.1))
                    .min(remaining(b.1));
                lcps[i] = depth + common;
            }
            push_groups(lcps, start, end, depth + width, &mut pending);
        }
        Some(())
    }

    /// The common prefix of the suffixes at `a` and `b`, and whether `a`
    /// sorts first. Known prefixes on the same diagonal save the
    /// comparison: a neighbour to the left whose match reaches past `a`
    /// gives it outright, one to the right once the gap is checked.
    fn pair(&mut self, windows: &Windows, a: u32, b: u32) -> Option<(u32, bool)> {
        let (p, q) = (a.min(b), a.max(b));
        let d = q - p;
        if self.diagonals.len() >= windows.len / MEMO_PER_ENTRY {
            return None;
        }
        self.budget = self.budget.checked_sub(1)?;
        // The suffix at q is the shorter: the prefix ends with it.
        let limit = (windows.len - q as usize) as u32;
        let left = self
            .diagonals
            .range((d, 0)..(d, p))
            .next_back()
            .map(|(&(_, p0), &l0)| (p0, l0));
        let lcp = match left {
            Some((p0, l0)) if l0 > p - p0 => l0 - (p - p0),
            _ => {
                let right = self
                    .diagonals
                    .range((d, p + 1)..(d, u32::MAX))
                    .next()
                    .map(|(&(_, p1), &l1)| (p1, l1));
                let span = right.map_or(limit, |(p1, _)| p1 - p);
                match self.matching(windows, p, q, span)? {
                    Some(lcp) => lcp,
                    None => right.map_or(limit, |(p1, l1)| p1 - p + l1),
                }
            }
        };
        self.diagonals.insert((d, p), lcp);
        let p_first = if lcp == limit {
            false
        } else {
            let symbol = |i: u32| windows.key(i as usize) >> (64 - windows.bits);
            symbol(p + lcp) < symbol(q + lcp)
        };
        Some((lcp, p_first == (a == p)))
    }

    /// Where the suffixes at `p < q` first differ within `span` symbols
    /// (`Some(None)` if they do not), reading keys from the budget.
    fn matching(&mut self, windows: &Windows, p: u32, q: u32, span: u32) -> Option<Option<u32>> {
        let mut done = 0u32;
        while done < span {
            self.budget = self.budget.checked_sub(1)?;
            let (x, y) = (
                windows.key((p + done) as usize),
                windows.key((q + done) as usize),
            );
            let common = done + windows.common(x, y);
            if common < done + windows.width as u32 {
                return Some((common < span).then_some(common));
            }
            done += windows.width as u32;
        }
        Some(None)
    }
}

/// Queues each maximal group of two or more items in `start..end` whose
/// neighbours share `depth` symbols (all equal keys so far).
fn push_groups(
    lcps: &[u32],
    start: usize,
    end: usize,
    depth: u32,
    pending: &mut Vec<(usize, usize, u32)>,
) {
    let mut first = start;
    let breaks = lcps[start + 1..end]
        .iter()
        .enumerate()
        .filter(|&(_, &lcp)| lcp < depth)
        .map(|(i, _)| start + 1 + i);
    for i in breaks.chain(std::iter::once(end)) {
        if i - first > 1 {
            pending.push((first, i, depth));
        }
        first = i;
    }
}

/// Counting sort of `items` into `out` (as long) by `sub(item)`, a
/// sub-bucket below `sizes.len()`; leaves the sub-bucket sizes in `sizes`.
fn counting_sort<T: Copy>(
    items: &[T],
    out: &mut [T],
    sizes: &mut [u32],
    sub: impl Fn(&T) -> usize,
) {
    for item in items {
        sizes[sub(item)] += 1;
    }
    let mut next = 0u32;
    for slot in sizes.iter_mut() {
        next += *slot;
        *slot = next - *slot;
    }
    for item in items {
        let slot = &mut sizes[sub(item)];
        out[*slot as usize] = *item;
        *slot += 1;
    }
    // Each slot now ends its sub-bucket; turn them back into sizes.
    let mut start = 0u32;
    for slot in sizes.iter_mut() {
        let end = *slot;
        *slot = end - start;
        start = end;
    }
}

/// How finely each further radix pass splits `m` keys:
/// `2^(log2(m) + SUB_EXTRA)` sub-buckets, about one key each.
const SUB_EXTRA: u32 = 0;

/// The suffixes shorter than `width` (the last `width - 1` positions), left
/// out of the buckets: each is a member of the groups of its prefixes up
/// to its length. Tallied by counting, for each of them and each depth,
/// the full windows that share that prefix.
struct Shorts {
    /// (zero-padded key, length), sorted.
    items: Vec<(u64, u32)>,
    bits: usize,
    top_bits: u32,
    /// `sharing[s * width + t]`: full windows sharing `t` symbols with
    /// item `s`.
    sharing: Vec<u32>,
    width: usize,
}

impl Shorts {
    /// The short suffixes, with their counts at depths within the top
    /// buckets (from the bucket counts).
    fn new(windows: &Windows, full: usize, n: usize, top_bits: u32, counts: &[u32]) -> Shorts {
        let mut items: Vec<(u64, u32)> = (full..n)
            .map(|i| (windows.key(i), (n - i) as u32))
            .collect();
        items.sort_unstable();
        let width = windows.width;
        let mut sharing = vec![0u32; items.len() * width];
        let mut ends = Vec::with_capacity(counts.len());
        let mut sum = 0u32;
        for &c in counts {
            sum += c;
            ends.push(sum);
        }
        for (s, &(key, len)) in items.iter().enumerate() {
            for t in 1..=len as usize {
                let prefix_bits = (t * windows.bits) as u32;
                if prefix_bits > top_bits {
                    break;
                }
                let first =
                    (key >> (64 - top_bits)) as usize & !((1usize << (top_bits - prefix_bits)) - 1);
                let last = first + (1usize << (top_bits - prefix_bits)) - 1;
                let before = if first == 0 { 0 } else { ends[first - 1] };
                sharing[s * width + t] = ends[last] - before;
            }
        }
        Shorts {
            items,
            bits: windows.bits,
            top_bits,
            sharing,
            width,
        }
    }

    /// Counts, in one bucket of full keys, the windows sharing each deeper
    /// prefix of the short suffixes that fall in it.
    fn count_in_bucket(&mut self, bucket: usize, keys: &[u64]) {
        for (s, &(key, len)) in self.items.iter().enumerate() {
            if (key >> (64 - self.top_bits)) as usize != bucket {
                continue;
            }
            // How many keys share exactly so many symbols with this one.
            let mut deeper = vec![0u32; self.width + 1];
            for &k in keys {
                let zeros = (key ^ k).leading_zeros() as usize;
                deeper[(zeros / self.bits).min(len as usize)] += 1;
            }
            let mut sharing = 0u32;
            for t in (1..=len as usize).rev() {
                sharing += deeper[t];
                if (t * self.bits) as u32 > self.top_bits {
                    self.sharing[s * self.width + t] = sharing;
                }
            }
        }
    }

    /// Adds the short suffixes to the groups: pairs with full windows and
    /// with each other, and the enlarged groups.
    fn tally(&self, tallies: &mut Tallies) {
        let items = &self.items;
        for (s, &(key, len)) in items.iter().enumerate() {
            for t in 1..=len as usize {
                let full_sharing = self.sharing[s * self.width + t];
                let short_sharing = items
                    .iter()
                    .filter(|&&(other, other_len)| {
                        let zeros = (key ^ other).leading_zeros() as usize;
                        (zeros / self.bits).min(other_len as usize) >= t
                    })
                    .count() as u32;
                let size = full_sharing + short_sharing;
                if size > 1 {
                    tallies.largest[t] = tallies.largest[t].max(size);
                }
                // Pairs with full windows; pairs of shorts are counted
                // once, from their earlier member.
                let later = items[s + 1..]
                    .iter()
                    .filter(|&&(other, other_len)| {
                        let zeros = (key ^ other).leading_zeros() as usize;
                        (zeros / self.bits).min(other_len as usize) >= t
                    })
                    .count() as u64;
                tallies.add_pairs(t, t - 1, u64::from(full_sharing) + later);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_inputs::lcg64;
    use super::*;
    use std::collections::HashMap;

    fn estimates(symbols: &[u8]) -> TupleEstimates {
        let alphabet = symbols
            .iter()
            .map(|&s| usize::from(s) + 1)
            .max()
            .unwrap_or(1);
        tuple_and_lrs(Track { symbols, alphabet })
    }

    /// 8-bit samples: the top byte of each LCG step from seed 1.
    fn uniform(n: usize) -> Vec<u8> {
        let mut next = lcg64(1);
        (0..n).map(|_| (next() >> 56) as u8).collect()
    }

    /// `uniform(n)` with bytes 100..612 copied to 2048.
    fn repeated(n: usize) -> Vec<u8> {
        let mut bytes = uniform(n);
        bytes.copy_within(100..612, 2048);
        bytes
    }

    /// 0x5a unless the top byte of the LCG step (seed 2) is 200 or more,
    /// then the step's second byte.
    fn skewed(n: usize) -> Vec<u8> {
        let mut next = lcg64(2);
        (0..n)
            .map(|_| {
                let x = next();
                if (x >> 56) < 200 {
                    0x5a
                } else {
                    (x >> 48) as u8
                }
            })
            .collect()
    }

    /// NIST's track forms: symbols ranked 0..k by value, and 8 bits per
    /// sample, most significant first.
    fn tracks(bytes: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut seen = [false; 256];
        bytes.iter().for_each(|&b| seen[usize::from(b)] = true);
        let mut rank = [0u8; 256];
        let mut k = 0u8;
        for v in 0..256 {
            if seen[v] {
                rank[v] = k;
                k = k.wrapping_add(1);
            }
        }
        let literal = bytes.iter().map(|&b| rank[usize::from(b)]).collect();
        let bits = bytes
            .iter()
            .flat_map(|&b| (0..8).rev().map(move |j| (b >> j) & 1))
            .collect();
        (literal, bits)
    }

    /// `Q[t]` and `S[t]` by hashing every `t`-tuple.
    fn brute_force(symbols: &[u8], t: usize) -> (u32, u64) {
        let mut counts: HashMap<&[u8], u64> = HashMap::new();
        for tuple in symbols.windows(t) {
            *counts.entry(tuple).or_default() += 1;
        }
        let most = counts.values().copied().max().unwrap_or(1);
        (most as u32, counts.values().map(|&c| c * (c - 1) / 2).sum())
    }

    fn profile(tallies: Tallies) -> (Vec<u32>, Vec<u64>) {
        let p = tallies.finish();
        (p.tuple_max, p.pairs)
    }

    fn assert_close(ours: Option<f64>, nist: f64) {
        let ours = ours.expect("an estimate");
        assert!(
            (ours - nist).abs() < 1e-12,
            "ours {ours:.17} NIST {nist:.17}"
        );
    }

    #[test]
    fn counts_match_brute_force_on_the_standards_example_sequence() {
        // The sequence of the SP 800-90B §6.3.5 and §6.3.6 examples.
        let s = [
            2u8, 2, 0, 1, 0, 2, 0, 1, 2, 1, 2, 0, 1, 2, 1, 0, 0, 1, 0, 0, 0,
        ];
        let (q, pairs) = profile(tally_by_windows(&s).expect("no long repeats"));
        assert_eq!(q.len() - 1, 5, "the longest repeated substring");
        for t in 1..q.len() {
            assert_eq!((q[t], pairs[t]), brute_force(&s, t), "t = {t}");
        }
        // By hand: 0 occurs 9 times, 01 and 10 4 times, 010 3 times.
        assert_eq!(&q[1..], &[9, 4, 3, 2, 2]);
        assert_eq!(&pairs[1..], &[66, 19, 7, 2, 1]);
        // Fewer than 35 of anything: no t-tuple estimate; u = 1, and the
        // LRS estimate takes W = 1..=5.
        let e = estimates(&s);
        assert_eq!(e.t_tuple, None);
        let p = (1..=5)
            .map(|w: usize| {
                let c = ((21 - w + 1) * (21 - w) / 2) as f64;
                (pairs[w] as f64 / c).powf(1.0 / w as f64)
            })
            .fold(0.0, f64::max);
        assert_eq!(e.lrs, Some(entropy_of_bound(p, 21)));
    }

    #[test]
    fn degenerate_tracks() {
        let none = TupleEstimates {
            t_tuple: None,
            lrs: None,
        };
        assert_eq!(estimates(&[]), none);
        assert_eq!(estimates(&[7]), none);
        // All distinct: no repeat at all (NIST asserts v > 0).
        assert_eq!(estimates(&[0, 1, 2, 3, 4]), none);
        // One symbol: every tuple length has probability 1.
        let constant = estimates(&[0; 100]);
        assert_eq!(
            constant,
            TupleEstimates {
                t_tuple: Some(0.0),
                lrs: Some(0.0)
            }
        );
        assert!(constant.t_tuple.unwrap().is_sign_positive());
    }

    #[test]
    fn lrs_fails_when_every_repeat_is_common() {
        // 0 occurs 35 times, nothing longer repeats: u = 2 > v = 1.
        let s: Vec<u8> = (1..=35).flat_map(|k| [0, k]).collect();
        let e = estimates(&s);
        assert_eq!(e.lrs, None);
        assert_eq!(e.t_tuple, Some(entropy_of_bound(0.5, 70)));
    }

    #[test]
    fn alternating_bits() {
        // Every t-tuple occurs (L - t + 1) / 2 times, rounded either way.
        let s: Vec<u8> = (0..1000).map(|i| (i % 2) as u8).collect();
        let (q, _) =
            profile(tally_by_windows(&s).unwrap_or_else(|| tally_by_suffix_array(&s).unwrap()));
        for t in [1, 2, 63, 64, 65, 500, 998] {
            assert_eq!(q[t] as usize, (1000 - t + 2) / 2, "t = {t}");
        }
        assert_eq!(q.len() - 1, 998);
    }

    #[test]
    fn every_path_gives_the_suffix_arrays_counts() {
        let mut inputs: Vec<Vec<u8>> = vec![
            vec![1, 0],
            vec![0, 0, 0, 1],
            repeated(4096),
            skewed(3000),
            tracks(&uniform(600)).1,
            tracks(&repeated(3000)).1,
        ];
        let mut next = lcg64(3);
        for bits in 1..=8 {
            for len in [5, 63, 64, 65, 300, 2000] {
                inputs.push((0..len).map(|_| (next() >> (64 - bits)) as u8).collect());
            }
        }
        for (i, s) in inputs.iter().enumerate() {
            let exact = profile(tally_by_suffix_array(s).unwrap());
            if let Some(windows) = tally_by_windows(s) {
                assert_eq!(profile(windows), exact, "input {i}");
            }
        }
    }

    // The values are NIST's, as printed (%.17g).
    #[allow(clippy::excessive_precision)]
    #[test]
    fn pinned_against_nist() {
        // ea_non_iid -vv FILE 8 (commit 68ed165) on these inputs written
        // as bytes: the "Bitstring" and "Literal" t-Tuple and LRS lines.
        let uniform = tracks(&uniform(4096));
        let e = estimates(&uniform.1);
        assert_close(e.t_tuple, 0.91051585202528484);
        assert_close(e.lrs, 0.97793946045098235);
        let e = estimates(&uniform.0);
        assert_eq!(e.t_tuple, None);
        assert_close(e.lrs, 7.2439994366704301);

        let repeated = tracks(&repeated(4096));
        let e = estimates(&repeated.1);
        assert_close(e.t_tuple, 0.87471355659712047);
        assert_close(e.lrs, 0.0041187413871002958);
        let e = estimates(&repeated.0);
        assert_eq!(e.t_tuple, None);
        assert_close(e.lrs, 0.027343028662730768);

        let skewed = tracks(&skewed(3000));
        let e = estimates(&skewed.1);
        assert_close(e.t_tuple, 0.070144148044635604);
        assert_close(e.lrs, 0.11798440777565333);
        let e = estimates(&skewed.0);
        assert_close(e.t_tuple, 0.31123248540829013);
        assert_close(e.lrs, 0.7606704579734973);
    }
}
