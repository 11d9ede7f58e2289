//! LZ78Y prediction estimate (SP 800-90B §6.3.10), B = 16.
//!
//! A dictionary of contexts (the last 1..=16 symbols) with counts of the
//! symbols that followed them. At each step every context of the step that
//! is in the dictionary counts the new symbol, and the missing ones are
//! added; the prediction is the most frequent follower of the context whose
//! best count is largest. `C`, `N` and the longest run of correct
//! predictions go to [`prediction_estimate`].
//!
//! What NIST's tool (`cpp/non_iid/lz78y_test.h`, commit 68ed165) fixes and
//! this module reproduces:
//! * The dictionary holds at most `MAX_DICTIONARY_SIZE` = 65 536 contexts,
//!   all lengths together, and never loses one. A context in it counts
//!   every follower (new followers are always added); missing contexts are
//!   added longest first while there is room, so the step that fills it may
//!   add a context but not its shorter suffixes.
//! * It starts with every suffix of `s[0..16]`, followed by `s[16]`;
//!   predictions run from index 17, `N = L - 17`.
//! * NIST scans from the longest context down and keeps a strictly larger
//!   count, so ties go to the longest context; within a context ties go to
//!   the larger symbol (1 in NIST's binary routine, used when `k = 2`).
//!
//! `None` for fewer than 18 symbols (NIST warns and skips), fewer than 19
//! for a binary track (NIST's binary routine asserts `L - 16 > 2`), and
//! beyond 2^30 symbols (counts here are 32-bit).
//!
//! Speed. A shorter context has been counted at every step its extension
//! was (it was in the dictionary no later), so counts never grow with the
//! context length: the largest is at the shortest context present, and the
//! scan can stop at the first count below it. Before the dictionary fills,
//! the contexts present at a step are exactly the shortest ones (each
//! suffix of a present context is present). Binary tracks use one array per
//! length; once the dictionary is full they stop updating it and count only
//! occurrences, for a few lengths. Literal tracks use the trie shared with
//! MultiMMC (§6.3.9).

use super::multi_mmc::{NIL, Tally, Trie};
use super::prediction::prediction_estimate;
use super::support::Track;

/// Longest context, the standard's `B`.
const B: usize = 16;

/// NIST's cap on the number of contexts in the dictionary.
const MAX_DICTIONARY_SIZE: u32 = 65_536;

/// LZ78Y min-entropy per symbol of `track` (SP 800-90B §6.3.10), or `None`
/// where NIST's tool gives none (see the module notes).
pub fn lz78y(track: Track) -> Option<f64> {
    let t = lz78y_tally(track)?;
    Some(prediction_estimate(
        t.correct,
        t.predictions,
        t.longest_run,
        track.alphabet,
    ))
}

/// The LZ78Y score of `track`: `C`, `N` and the longest run, the integers
/// NIST prints at `-vvv` (it prints `r`, one more than the run).
pub fn lz78y_tally(track: Track) -> Option<Tally> {
    if track.alphabet == 2 {
        binary_tally(track.symbols)
    } else {
        general_tally(track.symbols)
    }
}

/// The score of a single predictor: a miss ends the run.
#[derive(Default)]
struct Runs {
    tally: Tally,
    run: u64,
}

impl Runs {
    /// Branch-free: whether a prediction hits is as good as random.
    #[inline(always)]
    fn record(&mut self, hit: bool) {
        let hit = u64::from(hit);
        self.tally.correct += hit;
        self.run = (self.run + 1) * hit;
        self.tally.longest_run = self.tally.longest_run.max(self.run);
    }
}

/// Where length `j`'s table starts (staggered against 4 KiB aliasing).
const fn bin_offset(j: usize) -> usize {
    (1 << j) - 2 + 40 * (j - 1)
}

#[inline(always)]
fn bin_index(j: usize, ctx: usize) -> usize {
    bin_offset(j) + (ctx & ((1 << j) - 1))
}

/// Largest count of a binary entry (`c0` low half, `c1` high half).
#[inline(always)]
fn bin_max(e: u64) -> u64 {
    (e & 0xFFFF_FFFF).max(e >> 32)
}

/// NIST's choice among the present contexts `e[1..=B]` (0 = absent): the
/// longest one with the largest count. A shorter context has been counted
/// at every step its extension was, so counts never grow with the length;
/// the maximum is at the shortest present context and the choice ends where
/// the counts first drop.
#[inline(always)]
fn bin_prediction(e: &[u64; B + 1]) -> Option<usize> {
    let first = (1..=B).find(|&j| e[j] != 0)?;
    let top = bin_max(e[first]);
    let mut best = first;
    for (j, &x) in e.iter().enumerate().skip(first + 1) {
        if x == 0 {
            continue;
        }
        if bin_max(x) != top {
            break;
        }
        best = j;
    }
    // c0 > c1 predicts 0; a tie predicts 1.
    Some(usize::from((e[best] & 0xFFFF_FFFF) <= e[best] >> 32))
}

fn binary_tally(bits: &[u8]) -> Option<Tally> {
    let n = bits.len();
    // NIST asserts L > B and L - B > 2; beyond 2^30 the u32 counts could
    // overflow.
    if !(B + 3..=1 << 30).contains(&n) {
        return None;
    }
    let bit = |i: usize| usize::from(bits[i] & 1);
    let mut table: Box<[u64; BIN_LEN]> = vec![0; BIN_LEN]
        .into_boxed_slice()
        .try_into()
        .unwrap_or_else(|_| Box::new([0; BIN_LEN]));
    let ctx = (0..B).fold(0usize, |c, i| (c << 1) | bit(i));
    for j in 1..=B {
        table[bin_index(j, ctx)] = bin_inc(bit(B));
    }
    let mut runs = Runs::default();
    let (i, ctx) = bin_filling(bits, &mut table, ctx, &mut runs);
    bin_full(bits, &table[..], (i, ctx), &mut runs);
    runs.tally.predictions = (n - B - 1) as u64;
    Some(runs.tally)
}

/// One count of `y`, in a packed entry (`c0` low half, `c1` high half).
#[inline(always)]
fn bin_inc(y: usize) -> u64 {
    if y == 1 { 1 << 32 } else { 1 }
}

/// Entries of all lengths together.
const BIN_LEN: usize = bin_offset(B + 1);

/// Steps while the dictionary has room, every count kept in `table`.
/// Returns the first step after it filled and the context before it.
fn bin_filling(
    bits: &[u8],
    table: &mut [u64; BIN_LEN],
    mut ctx: usize,
    runs: &mut Runs,
) -> (usize, usize) {
    let mut size = B as u32;
    let mut e = [0u64; B + 1];
    for i in B + 1..bits.len() {
        if size >= MAX_DICTIONARY_SIZE {
            return (i, ctx);
        }
        ctx = ((ctx << 1) | usize::from(bits[i - 1] & 1)) & 0xFFFF;
        let y = usize::from(bits[i] & 1);
        macro_rules! load {
            ($($j:literal)*) => {$( e[$j] = table[bin_index($j, ctx)]; )*};
        }
        load!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);
        runs.record(bin_prediction(&e) == Some(y));
        if e.iter().skip(1).fold(u64::MAX, |m, &x| m.min(x)) != 0 {
            // Nothing to add: the common case once the data has been seen.
            let add = bin_inc(y);
            macro_rules! store {
                ($($j:literal)*) => {$( table[bin_index($j, ctx)] = e[$j] + add; )*};
            }
            store!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);
            continue;
        }
        // Longest first, as NIST adds missing contexts while room lasts.
        for j in (1..=B).rev() {
            if e[j] != 0 {
                table[bin_index(j, ctx)] = e[j] + bin_inc(y);
            } else if size < MAX_DICTIONARY_SIZE {
                table[bin_index(j, ctx)] = bin_inc(y);
                size += 1;
            }
        }
    }
    (bits.len(), ctx)
}

/// Lengths whose occurrence counts are kept step by step once the
/// dictionary is full; another length's are summed from the next of these
/// (at most 8 entries).
const EAGER: [usize; 7] = [1, 2, 3, 4, 8, 12, 16];

/// Steps once the dictionary is full. Its contexts no longer change, and a
/// context's count is its count at that point plus its occurrences since,
/// so `table` is frozen and only occurrences are counted, for the lengths
/// in [`EAGER`]: the prediction rarely needs more than the two shortest
/// contexts.
fn bin_full(bits: &[u8], table: &[u64], (from, mut ctx): (usize, usize), runs: &mut Runs) {
    let mut since = vec![0u64; bin_offset(B + 1)];
    for i in from..bits.len() {
        ctx = ((ctx << 1) | usize::from(bits[i - 1] & 1)) & 0xFFFF;
        let y = usize::from(bits[i] & 1);
        let (s1, s2) = (table[bin_index(1, ctx)], table[bin_index(2, ctx)]);
        let (e1, e2) = (s1 + since[bin_index(1, ctx)], s2 + since[bin_index(2, ctx)]);
        // Usually both shortest contexts are present and the second's count
        // is already below the first's: the first decides.
        let (top, chosen) = if s1 != 0 && s2 != 0 && bin_max(e2) < bin_max(e1) {
            (Some(()), e1)
        } else {
            bin_scan(table, &since, ctx)
        };
        let pred = top.map(|()| usize::from((chosen & 0xFFFF_FFFF) <= chosen >> 32));
        runs.record(pred == Some(y));
        for &j in &EAGER {
            since[bin_index(j, ctx)] += bin_inc(y);
        }
    }
}

/// The full scan of [`bin_prediction`] over frozen counts plus occurrences.
fn bin_scan(table: &[u64], since: &[u64], ctx: usize) -> (Option<()>, u64) {
    let mut top = None;
    let mut chosen = 0;
    for j in 1..=B {
        let frozen = table[bin_index(j, ctx)];
        if frozen == 0 {
            continue;
        }
        let e = frozen + occurrences(since, j, ctx);
        match top {
            None => top = Some(bin_max(e)),
            Some(t) if bin_max(e) != t => break,
            Some(_) => {}
        }
        chosen = e;
    }
    (top.map(|_| ()), chosen)
}

/// Occurrences (packed per follower) of the length-`j` context `ctx` since
/// the dictionary filled.
#[inline(always)]
fn occurrences(since: &[u64], j: usize, ctx: usize) -> u64 {
    let e = EAGER.iter().copied().find(|&e| e >= j).unwrap_or(B);
    let base = ctx & ((1 << j) - 1);
    (0..1usize << (e - j))
        .map(|b| since[bin_index(e, base | (b << j))])
        .sum()
}

/// Present contexts of one step, shortest first: (length, node).
struct Found {
    list: [(usize, u32); B],
    len: usize,
}

impl Found {
    /// NIST's prediction (see [`bin_prediction`] for why the scan stops).
    fn prediction(&self, trie: &Trie) -> Option<u8> {
        let list = &self.list[..self.len];
        let &(_, first) = list.first()?;
        let top = trie.nodes[first as usize].best;
        let mut best = first;
        for &(_, id) in &list[1..] {
            if trie.nodes[id as usize].best != top {
                break;
            }
            best = id;
        }
        Some(trie.nodes[best as usize].best_sym)
    }
}

fn general_tally(s: &[u8]) -> Option<Tally> {
    let n = s.len();
    if !(B + 2..=1 << 30).contains(&n) {
        return None;
    }
    let mut trie = Trie::new();
    // NIST starts with every suffix of s[0..B], followed by s[B].
    let mut up = NIL;
    for j in 1..=B {
        up = trie.make(s, B, j, up);
        trie.enter(up, j, s[B - 1], s[B]);
    }
    let mut size = B as u32;
    let mut runs = Runs::default();
    let mut found = Found {
        list: [(0, 0); B],
        len: 0,
    };
    let mut prev = [NIL; B + 1];
    let mut cur = [NIL; B + 1];
    for i in B + 1..n {
        let (x, y) = (s[i - 1], s[i]);
        // The step's contexts, shortest first, up to the first one the trie
        // lacks: none longer can be in the dictionary.
        found.len = 0;
        cur.fill(NIL);
        let mut depth = 0;
        for j in 1..=B {
            let mut node = if j > 1 {
                trie.linked(prev[j - 1], x)
            } else {
                NIL
            };
            if node == NIL {
                node = trie.find(s, i, j, cur[j - 1]);
            }
            if node == NIL {
                break;
            }
            cur[j] = node;
            depth = j;
            if trie.nodes[node as usize].best != 0 {
                found.list[found.len] = (j, node);
                found.len += 1;
            }
        }
        runs.record(found.prediction(&trie) == Some(y));
        if size < MAX_DICTIONARY_SIZE {
            // Missing contexts go in longest first while room lasts; any left
            // out stay in the trie only as the path to the longer ones.
            for j in depth + 1..=B {
                cur[j] = trie.make(s, i, j, cur[j - 1]);
            }
            for j in (1..=B).rev() {
                if size < MAX_DICTIONARY_SIZE
                    && trie.nodes.get(cur[j] as usize).is_some_and(|n| n.best == 0)
                {
                    trie.enter(cur[j], j, x, y);
                    size += 1;
                }
            }
        }
        for &(j, id) in &found.list[..found.len] {
            trie.count(id, j, x, y, true);
        }
        for j in 2..=B {
            if cur[j] != NIL {
                trie.link(prev[j - 1], x, cur[j]);
            }
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    runs.tally.predictions = (n - B - 1) as u64;
    Some(runs.tally)
}

#[cfg(test)]
// Values are pinned as NIST prints them (%.17g).
#[allow(clippy::excessive_precision)]
mod tests {
    use super::super::multi_mmc::tests::{PINNED, bitstring, literal, markov};
    use super::*;

    /// ea_non_iid's (C, N, r - 1, min-entropy) for PINNED (see
    /// `multi_mmc::tests`): literal, bitstring.
    const NIST: [[(u64, u64, u64, f64); 2]; 3] = [
        [
            (563, 3983, 3, 2.6843501208185079),
            (20500, 31983, 6, 0.62621246894263249),
        ],
        [
            (192, 2983, 5, 2.9973017545599987),
            (5976, 11983, 22, 0.82539859078021816),
        ],
        [
            (69, 7983, 3, 4.8873025468331504),
            (31854, 63983, 13, 0.99153436546947504),
        ],
    ];

    fn check(track: Track, want: (u64, u64, u64, f64)) {
        let t = lz78y_tally(track).unwrap();
        assert_eq!(
            (t.correct, t.predictions, t.longest_run),
            (want.0, want.1, want.2)
        );
        let h = lz78y(track).unwrap();
        assert!((h - want.3).abs() < 1e-12, "{h} vs {}", want.3);
    }

    #[test]
    fn matches_ea_non_iid() {
        // The third input fills the dictionary on both tracks.
        for (&(seed, n, k, base, w), want) in PINNED.iter().zip(NIST) {
            let raw = markov(seed, n, k, base);
            let (lit, alphabet) = literal(&raw, w);
            check(
                Track {
                    symbols: &lit,
                    alphabet,
                },
                want[0],
            );
            check(
                Track {
                    symbols: &bitstring(&raw, w),
                    alphabet: 2,
                },
                want[1],
            );
        }
    }

    #[test]
    fn too_short() {
        let s: Vec<u8> = (0..20).map(|i| i % 3).collect();
        assert_eq!(
            lz78y(Track {
                symbols: &s[..17],
                alphabet: 3
            }),
            None
        );
        let t = lz78y_tally(Track {
            symbols: &s[..18],
            alphabet: 3,
        })
        .unwrap();
        assert_eq!(t.predictions, 1);
        let b: Vec<u8> = (0..20).map(|i| i % 2).collect();
        assert_eq!(
            lz78y(Track {
                symbols: &b[..18],
                alphabet: 2
            }),
            None
        );
        assert!(
            lz78y(Track {
                symbols: &b[..19],
                alphabet: 2
            })
            .is_some()
        );
        assert_eq!(
            lz78y(Track {
                symbols: &[],
                alphabet: 2
            }),
            None
        );
    }

    #[test]
    fn by_hand() {
        // Period 3 (0 1 2 ...): the dictionary starts with contexts ending
        // in s[15] = 0, so the contexts ending in 1 and 2 at steps 17 and 18
        // are new (no prediction, a miss); from then on every context has
        // only ever been followed by one symbol and every prediction hits
        // (ea_non_iid agrees: C = 41, r = 42, N = 43).
        let s: Vec<u8> = (0..60).map(|i| i % 3).collect();
        let t = lz78y_tally(Track {
            symbols: &s,
            alphabet: 3,
        })
        .unwrap();
        assert_eq!(
            t,
            Tally {
                correct: 41,
                predictions: 43,
                longest_run: 41
            }
        );
        // A constant track, which NIST refuses (one symbol), likewise.
        let c = [9u8; 40];
        assert_eq!(
            lz78y(Track {
                symbols: &c,
                alphabet: 1
            }),
            Some(0.0)
        );
    }

    #[test]
    fn literal_and_binary_routines_agree() {
        // On 0/1 symbols the general routine and the binary one (which the
        // tool picks for k = 2) are the same predictor; 30 000 steps fill the
        // dictionary, so the binary routine's frozen phase is compared too.
        for (seed, n) in [(1, 3000), (2, 30000)] {
            let raw = markov(seed, n, 2, 0);
            let a = lz78y_tally(Track {
                symbols: &raw,
                alphabet: 2,
            });
            let b = lz78y_tally(Track {
                symbols: &raw,
                alphabet: 3,
            });
            assert_eq!(a, b);
        }
    }
}
