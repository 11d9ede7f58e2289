//! Multi Markov Model with Counting prediction estimate (SP 800-90B §6.3.9),
//! with D = 16 orders.
//!
//! Order `d` (0..=15) predicts the symbol most often seen after the last
//! `d + 1` symbols; a scoreboard counts each order's correct predictions,
//! and at every step the prediction that counts is that of the order leading
//! when the step began. Its `C`, `N` and longest run go to
//! [`prediction_estimate`].
//!
//! What NIST's tool (`cpp/non_iid/multi_mmc_test.h`, commit 68ed165) fixes
//! and this module reproduces:
//! * Each order holds at most `MAX_ENTRIES` = 100 000 (context, follower)
//!   pairs; once full, its existing pairs keep counting and nothing new
//!   (pair or context) is added.
//! * Orders are tried from 0 up. The first order lacking its context ends
//!   the step's predictions, and from there on NIST does not look contexts
//!   up: every higher order below its cap gets `M[d][x].incrementPostfix`
//!   (which finds `x` if it is there after all) and `entries[d]++`, whether
//!   or not the pair was new.
//! * Order d starts out holding only (`s[0..=d]`, `s[d + 1]`); step `i`
//!   (from 2) involves orders `d <= i - 2`, and `N = L - 2`.
//! * A context predicts its most frequent follower, ties going to the
//!   larger symbol; an order that scores becomes the leader if its score is
//!   `>=` the leader's, so ties go to the order that scored last.
//! * A step on which the leader has no context leaves the run of correct
//!   predictions as it is (only the leader's hits and misses count).
//! * Binary tracks (`k = 2`) go through NIST's separate binary routine: the
//!   same rules, ties predicting 1, and it asserts `L > 3`.
//!
//! `None` for fewer than 3 symbols (NIST warns and skips), fewer than 4 for
//! a binary track (NIST aborts), and beyond 2^30 symbols (counts here are
//! 32-bit).
//!
//! Speed. The binary orders are arrays indexed by the context bits; in the
//! binary case an order finds its context exactly when the shorter ones do
//! (none below order 15 can fill up), so the 16 orders run independently,
//! step by step over blocks, and the scoreboard is replayed afterwards,
//! step by step only for the orders that could take the lead. The literal
//! contexts live in a trie (`Trie`) that LZ78Y (§6.3.10) shares: a step's
//! contexts of all lengths lie on one path, so a missing context and
//! everything longer is added without a search.

use super::prediction::prediction_estimate;
use super::support::Track;

/// Number of Markov orders (context lengths 1..=16), the standard's `D`.
const D: usize = 16;

/// NIST's cap on the (context, next symbol) pairs each order may hold
/// (`MAX_ENTRIES`); the standard leaves the memory bound open.
const MAX_ENTRIES: u32 = 100_000;

/// A predictor's score, what `predictionEstimate` consumes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// `C`: correct predictions.
    pub correct: u64,
    /// `N`: predictions attempted.
    pub predictions: u64,
    /// Longest run of consecutive correct predictions (`r - 1`).
    pub longest_run: u64,
}

/// MultiMMC min-entropy per symbol of `track` (SP 800-90B §6.3.9), or
/// `None` where NIST's tool gives none (see the module notes).
pub fn multi_mmc(track: Track) -> Option<f64> {
    let t = multi_mmc_tally(track)?;
    Some(prediction_estimate(
        t.correct,
        t.predictions,
        t.longest_run,
        track.alphabet,
    ))
}

/// The MultiMMC score of `track`: `C`, `N` and the longest run, the integers
/// NIST prints at `-vvv` (it prints `r`, one more than the run).
pub fn multi_mmc_tally(track: Track) -> Option<Tally> {
    if track.alphabet == 2 {
        binary_tally(track.symbols)
    } else {
        general_tally(track.symbols)
    }
}

/// 64x64 -> 128-bit multiply folded back to 64 bits: a fast, well-mixing
/// step for the hash table below.
#[inline(always)]
fn fold(x: u64) -> u64 {
    let p = u128::from(x) * u128::from(0x9E37_79B9_7F4A_7C15u64);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Open-addressing map from a `u32` key to a nonzero `u32` value
/// (slot = key << 32 | value, 0 = empty).
#[derive(Default)]
struct U32Map {
    slots: Vec<u64>,
    used: usize,
}

impl U32Map {
    /// The value of `key`, and where it is (or would go).
    #[inline(always)]
    fn seek(&self, key: u32) -> (u32, usize) {
        if self.slots.is_empty() {
            return (0, 0);
        }
        let mask = self.slots.len() - 1;
        let mut i = fold(u64::from(key)) as usize & mask;
        loop {
            let s = self.slots[i];
            if s == 0 || (s >> 32) as u32 == key {
                return (s as u32, i);
            }
            i = (i + 1) & mask;
        }
    }

    #[inline(always)]
    fn get(&self, key: u32) -> u32 {
        self.seek(key).0
    }

    /// Sets `key` to `value` (nonzero).
    #[inline(always)]
    fn set(&mut self, key: u32, value: u32) {
        let (old, at) = self.seek(key);
        if old != 0 {
            self.slots[at] = (u64::from(key) << 32) | u64::from(value);
            return;
        }
        if 2 * (self.used + 1) > self.slots.len() {
            let size = (2 * self.slots.len()).max(1024);
            let old = std::mem::replace(&mut self.slots, vec![0; size]);
            for s in old.into_iter().filter(|&s| s != 0) {
                let (_, at) = self.seek((s >> 32) as u32);
                self.slots[at] = s;
            }
        }
        let (_, at) = self.seek(key);
        self.slots[at] = (u64::from(key) << 32) | u64::from(value);
        self.used += 1;
    }
}

/// No node.
pub(super) const NIL: u32 = u32::MAX;

/// One context of the literal trie. A context's parent is the context one
/// symbol shorter (its oldest symbol dropped), so the contexts of every
/// length ending at one position lie on one path from the root. `best == 0`
/// marks a node that is not in the dictionary: it only carries the path to
/// longer contexts that are (NIST keeps each length in its own map, so a
/// context can be there while a suffix of it is not). Besides NIST's
/// running prediction the node keeps its first follower, its first child
/// (others are in a map, with a 32-bit filter of their symbols here), and a
/// link to the context it extends into on its last follower (a cache that
/// lets consecutive steps find their contexts without a walk).
#[derive(Clone, Copy)]
pub(super) struct TNode {
    pub(super) best: u32,
    first: u32,
    child: u32,
    link: u32,
    kids: u32,
    pub(super) best_sym: u8,
    first_sym: u8,
    child_sym: u8,
    link_sym: u8,
}

impl TNode {
    const EMPTY: TNode = TNode {
        best: 0,
        first: 0,
        child: NIL,
        link: NIL,
        kids: 0,
        best_sym: 0,
        first_sym: 0,
        child_sym: 0,
        link_sym: 0,
    };

    /// NIST's prediction update: a larger count, or an equal count of a
    /// larger symbol, takes over.
    #[inline(always)]
    pub(super) fn offer(&mut self, c: u32, y: u8) {
        if c > self.best || (c == self.best && y > self.best_sym) {
            self.best = c;
            self.best_sym = y;
        }
    }
}

/// Node ids of the one-symbol contexts (by symbol) and two-symbol contexts
/// (256 + both symbols): those nodes always exist, in place, so reaching
/// them costs no lookup.
const DENSE: usize = 256 + (1 << 16);

/// All literal contexts of up to 16 symbols. One- and two-symbol contexts
/// sit at fixed ids; longer ones hang from their parent. Followers after a
/// node's first are counted in a map; followers of one-symbol contexts are
/// dense.
pub(super) struct Trie {
    pub(super) nodes: Vec<TNode>,
    one_counts: Vec<u32>,
    kids: U32Map,
    more: U32Map,
}

impl Trie {
    pub(super) fn new() -> Self {
        Trie {
            nodes: vec![TNode::EMPTY; DENSE],
            one_counts: vec![0; 256 * 256],
            kids: U32Map::default(),
            more: U32Map::default(),
        }
    }

    /// The node of the length-`len` context ending before `i` in `s`,
    /// given the node one symbol shorter (`up`, for `len >= 3`), or NIL.
    #[inline(always)]
    pub(super) fn find(&self, s: &[u8], i: usize, len: usize, up: u32) -> u32 {
        match len {
            1 => u32::from(s[i - 1]),
            2 => 256 + (u32::from(s[i - 2]) << 8 | u32::from(s[i - 1])),
            _ => {
                let sym = s[i - len];
                let Some(p) = self.nodes.get(up as usize) else {
                    return NIL;
                };
                if p.child_sym == sym && p.child != NIL {
                    p.child
                } else if p.kids & (1 << (sym & 31)) == 0 {
                    NIL
                } else {
                    self.kids.get((up << 8) | u32::from(sym)).wrapping_sub(1)
                }
            }
        }
    }

    /// [`Self::find`], making the node (outside the dictionary) if missing;
    /// for `len >= 3` that needs `up` (callers always have it; NIL if not).
    pub(super) fn make(&mut self, s: &[u8], i: usize, len: usize, up: u32) -> u32 {
        let found = self.find(s, i, len, up);
        if found != NIL || len < 3 || up as usize >= self.nodes.len() {
            return found;
        }
        let id = self.nodes.len() as u32;
        self.nodes.push(TNode::EMPTY);
        let sym = s[i - len];
        let p = &mut self.nodes[up as usize];
        if p.child == NIL {
            p.child = id;
            p.child_sym = sym;
        } else {
            p.kids |= 1 << (sym & 31);
            self.kids.set((up << 8) | u32::from(sym), id + 1);
        }
        id
    }

    /// The node that `from` (a context) extends into when followed by `y`,
    /// if cached.
    #[inline(always)]
    pub(super) fn linked(&self, from: u32, y: u8) -> u32 {
        match self.nodes.get(from as usize) {
            Some(n) if n.link_sym == y => n.link,
            _ => NIL,
        }
    }

    #[inline(always)]
    pub(super) fn link(&mut self, from: u32, y: u8, to: u32) {
        if let Some(n) = self.nodes.get_mut(from as usize) {
            n.link = to;
            n.link_sym = y;
        }
    }

    /// Enters node `id` into the dictionary with its first follower `y`,
    /// or counts `y` if it is there already; in both cases a missing pair is
    /// made. `x` is the last symbol of a one-symbol context (its followers
    /// are dense). Returns whether a pair was made.
    #[inline(always)]
    pub(super) fn enter(&mut self, id: u32, len: usize, x: u8, y: u8) -> bool {
        let Some(n) = self.nodes.get_mut(id as usize) else {
            return false;
        };
        if n.best != 0 {
            return self.count(id, len, x, y, true);
        }
        *n = TNode {
            best: 1,
            first: 1,
            best_sym: y,
            first_sym: y,
            ..*n
        };
        if len == 1 {
            self.one_counts[usize::from(x) << 8 | usize::from(y)] = 1;
        }
        true
    }

    /// Counts follower `y` of the dictionary context `id` (NIST's
    /// `incrementPostfix`): an existing pair always counts, a missing one is
    /// made only if `make_new`. Returns whether a pair was made.
    #[inline(always)]
    pub(super) fn count(&mut self, id: u32, len: usize, x: u8, y: u8, make_new: bool) -> bool {
        let Some(n) = self.nodes.get_mut(id as usize) else {
            return false;
        };
        let (c, new) = if len == 1 {
            let cell = &mut self.one_counts[usize::from(x) << 8 | usize::from(y)];
            if *cell == 0 && !make_new {
                return false;
            }
            *cell += 1;
            (*cell, *cell == 1)
        } else if y == n.first_sym {
            n.first += 1;
            (n.first, false)
        } else {
            let key = (id << 8) | u32::from(y);
            let c = self.more.get(key);
            if c == 0 && !make_new {
                return false;
            }
            self.more.set(key, c + 1);
            (c + 1, c == 0)
        };
        n.offer(c, y);
        new
    }
}

#[derive(Default)]
struct Scoreboard {
    scores: [u64; D],
    winner: usize,
    current: usize,
    tally: Tally,
    run: u64,
}

impl Scoreboard {
    #[inline(always)]
    fn start(&mut self) {
        self.current = self.winner;
    }

    /// NIST's bookkeeping for a prediction order `d` made at this step:
    /// its score, the winner (ties go to the order scoring last), and the
    /// run if `d` was the winner when the step began.
    #[inline(always)]
    fn score(&mut self, d: usize, hit: bool) {
        let d = d % D;
        let h = u64::from(hit);
        self.scores[d] += h;
        if hit && self.scores[d] >= self.scores[self.winner % D] {
            self.winner = d;
        }
        if d == self.current {
            self.tally.correct += h;
            self.run = (self.run + 1) * h;
            self.tally.longest_run = self.tally.longest_run.max(self.run);
        }
    }

    /// The step's outcome for the current winner (before any credit).
    #[inline(always)]
    fn follow(&mut self, out: u8) {
        let hit = u64::from(out == HIT);
        self.tally.correct += hit;
        self.run = if out == NONE {
            self.run
        } else {
            (self.run + 1) * hit
        };
        self.tally.longest_run = self.tally.longest_run.max(self.run);
    }

    /// [`Self::follow`] over up to 64 rows in which the winner stays put.
    fn follow_chunk(&mut self, rows: &[[u8; D]]) {
        let w = self.winner % D;
        let (mut hits, mut nones) = (0u64, 0u64);
        for (k, row) in rows.iter().enumerate() {
            hits |= u64::from(row[w] & 1) << k;
            nones |= u64::from(row[w] >> 1) << k;
        }
        if nones != 0 || rows.len() != 64 {
            for row in rows {
                self.follow(row[w]);
            }
            return;
        }
        self.tally.correct += u64::from(hits.count_ones());
        if hits == u64::MAX {
            self.run += 64;
        } else {
            let first = u64::from(hits.trailing_ones());
            let mut longest = self.run + first;
            let mut x = hits;
            let mut inner = 0;
            while x != 0 {
                x &= x << 1;
                inner += 1;
            }
            longest = longest.max(inner);
            self.tally.longest_run = self.tally.longest_run.max(longest);
            self.run = u64::from(hits.leading_ones());
        }
        self.tally.longest_run = self.tally.longest_run.max(self.run);
    }

    /// Order `d`'s outcome at this step credited to its score.
    #[inline(always)]
    fn credit(&mut self, d: usize, out: u8) {
        let hit = u64::from(out & 1);
        self.scores[d] += hit;
        if hit == 1 && self.scores[d] >= self.scores[self.winner % D] {
            self.winner = d;
        }
    }
}

/// Steps handled per block by the binary predictor.
const BLOCK: usize = 1024;
/// Outcome codes of one order at one step: miss 0, hit 1, no prediction 2.
const HIT: u8 = 1;
const NONE: u8 = 2;
/// Entries of orders 0..=14 together (order d holds 2^(d+1) contexts).
const LOW_LEN: usize = low_offset(D - 1);

/// Where order `d` starts in the shared table. The orders are staggered by
/// 40 entries so that the same context does not land on addresses 4 KiB
/// apart in every order, which makes the CPU stall loads on unrelated
/// stores.
#[inline(always)]
const fn low_offset(d: usize) -> usize {
    (2 << d) - 2 + 40 * d
}

/// The 16 binary dictionaries. Orders 0..=14 never reach `MAX_ENTRIES`
/// (order d has at most 2^(d+2) pairs), so each context keeps only
/// `v = 2 (c1 - c0) + 1` once seen and 0 before; order 15 keeps both
/// counts because the cap decides which of them may start.
struct BinaryOrders {
    low: Box<[i32; LOW_LEN]>,
    top: Vec<[u32; 2]>,
    top_pairs: u32,
}

impl BinaryOrders {
    fn new() -> Self {
        // Built on the heap (a 256 KiB array literal may land on the stack
        // first); the conversion cannot fail.
        let low = vec![0; LOW_LEN]
            .into_boxed_slice()
            .try_into()
            .unwrap_or_else(|_| Box::new([0; LOW_LEN]));
        BinaryOrders {
            low,
            top: vec![[0; 2]; 1 << D],
            top_pairs: 0,
        }
    }

    /// The outcome of order `d` predicting `y` after context `ctx` (its
    /// last `d + 1` bits), then `y` counted.
    fn observe(&mut self, d: usize, ctx: usize, y: usize) -> u8 {
        if d < D - 1 {
            let slot = &mut self.low[low_offset(d) + (ctx & ((2 << d) - 1))];
            let v = *slot;
            *slot = low_next(v, y);
            if v == 0 { NONE } else { low_hit(v, y) }
        } else {
            top_step(&mut self.top[ctx & 0xFFFF], &mut self.top_pairs, y)
        }
    }
}

/// Whether a seen low-order context predicts `y`: it predicts 1 when
/// `c1 >= c0` (NIST breaks the tie towards 1), i.e. when `v > 0`.
#[inline(always)]
fn low_hit(v: i32, y: usize) -> u8 {
    let y = y as i32;
    u8::from(((v ^ (y - 1)) - y) >= 0)
}

#[inline(always)]
fn low_next(v: i32, y: usize) -> i32 {
    (v + 4 * y as i32 - 2) | 1
}

/// Order 15, where a missing pair may only start while fewer than
/// `MAX_ENTRIES` pairs exist (an existing one always counts).
#[inline(always)]
fn top_step(e: &mut [u32; 2], pairs: &mut u32, y: usize) -> u8 {
    let phase = if *pairs < MAX_ENTRIES {
        Cap::Open
    } else {
        Cap::Full
    };
    top_step_in(e, pairs, y, phase)
}

/// Whether order 15 may still start pairs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cap {
    Open,
    Full,
}

/// [`top_step`] knowing the cap's state, so that it needs no branch
/// (whether a pair exists is data-dependent and would mispredict).
#[inline(always)]
fn top_step_in(e: &mut [u32; 2], pairs: &mut u32, y: usize, cap: Cap) -> u8 {
    let none = (e[0] | e[1]) == 0;
    let hit = u8::from(e[0] <= e[1]) == y as u8;
    let c = e[y];
    if cap == Cap::Open {
        e[y] = c + 1;
        *pairs += u32::from(c == 0);
    } else {
        e[y] = c + u32::from(c != 0);
    }
    (u8::from(hit) & u8::from(!none)) | (u8::from(none) << 1)
}

fn binary_tally(bits: &[u8]) -> Option<Tally> {
    let n = bits.len();
    // NIST asserts L > 3; beyond 2^30 bits `v` could overflow.
    if !(4..=1 << 30).contains(&n) {
        return None;
    }
    let bit = |i: usize| usize::from(bits[i] & 1);
    let mut orders = BinaryOrders::new();
    let mut ctx = 0usize;
    for d in 0..D.min(n - 2) {
        ctx = (ctx << 1) | bit(d);
        orders.observe(d, ctx, bit(d + 1));
    }
    let mut board = Scoreboard::default();
    // Until step 17 only orders d <= i - 2 take part.
    let warm = n.min(D + 1);
    let mut ctx = bit(0);
    for i in 2..warm {
        ctx = (ctx << 1) | bit(i - 1);
        board.start();
        for d in 0..=i - 2 {
            match orders.observe(d, ctx, bit(i)) {
                NONE => {}
                out => board.score(d, out == HIT),
            }
        }
    }
    let mut block = BinaryBlock::new();
    let mut win = (warm.saturating_sub(D)..warm).fold(0usize, |w, j| (w << 1) | bit(j));
    let mut i = warm;
    while i < n {
        let len = BLOCK.min(n - i);
        for (k, slot) in block.win[..len].iter_mut().enumerate() {
            win = ((win << 1) | bit(i + k)) & 0x1_FFFF;
            *slot = win as u32;
        }
        block.predict(&mut orders, len);
        block.score(&mut board, len);
        i += len;
    }
    board.tally.predictions = (n - 2) as u64;
    Some(board.tally)
}

/// One block of steps: the 17-bit window ending at each step (16 context
/// bits, then the bit to predict) and every order's outcome there.
struct BinaryBlock {
    win: Vec<u32>,
    out: Vec<[u8; D]>,
}

/// Rows of the block the scoreboard replay looks at together.
const CHUNK: usize = 64;

impl BinaryBlock {
    fn new() -> Self {
        BinaryBlock {
            win: vec![0; BLOCK],
            out: vec![[0; D]; BLOCK],
        }
    }

    /// Runs every order over the block. Within the block the orders do not
    /// interact (in the binary case an order finds its context exactly when
    /// the shorter orders find theirs), so this is done step by step with
    /// all 16 updates independent of each other.
    fn predict(&mut self, orders: &mut BinaryOrders, len: usize) {
        // Order 15 gains at most one pair per step.
        if orders.top_pairs as usize + len <= MAX_ENTRIES as usize {
            self.predict_in(orders, len, Cap::Open);
        } else if orders.top_pairs >= MAX_ENTRIES {
            self.predict_in(orders, len, Cap::Full);
        } else {
            for (o, &w) in self.out[..len].iter_mut().zip(&self.win[..len]) {
                for (d, r) in o.iter_mut().enumerate() {
                    *r = orders.observe(d, w as usize >> 1, w as usize & 1);
                }
            }
        }
    }

    #[inline(always)]
    fn predict_in(&mut self, orders: &mut BinaryOrders, len: usize, cap: Cap) {
        let mut pairs = orders.top_pairs;
        for (o, &w) in self.out[..len].iter_mut().zip(&self.win[..len]) {
            let y = w as usize & 1;
            let ctx = w as usize >> 1;
            // A context unseen by a low order is unseen by order 14 too:
            // only then (rarely) take the careful path.
            if orders.low[low_offset(D - 2) + (ctx & 0x7FFF)] == 0 {
                orders.top_pairs = pairs;
                for (d, r) in o.iter_mut().enumerate() {
                    *r = orders.observe(d, ctx, y);
                }
                pairs = orders.top_pairs;
                continue;
            }
            let low: &mut [i32; LOW_LEN] = &mut orders.low;
            let ym = y as i32 - 1;
            let add = 4 * y as i32 - 2;
            macro_rules! order {
                ($($d:literal)*) => {$(
                    let slot = &mut low[low_offset($d) + (ctx & ((2 << $d) - 1))];
                    let v = *slot;
                    *slot = v + add;
                    // v is odd here; it predicts 1 iff v > 0.
                    o[$d] = u8::from((v ^ ym) >= 0);
                )*};
            }
            order!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14);
            o[D - 1] = top_step_in(&mut orders.top[ctx & 0xFFFF], &mut pairs, y, cap);
        }
        orders.top_pairs = pairs;
    }

    /// Replays the scoreboard over the block, a chunk of rows at a time. An
    /// order whose score plus its hits in the chunk stays below the leading
    /// score cannot become the winner within the chunk, so only the others
    /// are replayed step by step; the rest just add their hits.
    fn score(&self, board: &mut Scoreboard, len: usize) {
        for rows in self.out[..len].chunks(CHUNK) {
            let sums = hit_sums(rows);
            let lead = board.scores[board.winner];
            let mut live = [0usize; D];
            let mut nlive = 0;
            for (d, (score, &sum)) in board.scores.iter_mut().zip(&sums).enumerate() {
                if *score + sum >= lead {
                    live[nlive] = d;
                    nlive += 1;
                } else {
                    *score += sum;
                }
            }
            if nlive == 1 {
                board.follow_chunk(rows);
                board.scores[board.winner] += sums[board.winner];
            } else {
                for row in rows {
                    board.follow(row[board.winner % D]);
                    for &d in &live[..nlive] {
                        board.credit(d % D, row[d % D]);
                    }
                }
            }
        }
    }
}

/// Hits of each order over at most 255 rows.
fn hit_sums(rows: &[[u8; D]]) -> [u64; D] {
    let mut acc = [0u8; D];
    for row in rows {
        for (a, &r) in acc.iter_mut().zip(row) {
            *a = a.wrapping_add(r & 1);
        }
    }
    acc.map(u64::from)
}

/// NIST's `entries[d]` (pairs in order d's dictionary) and the orders
/// (bit d) still below `MAX_ENTRIES`.
struct Entries {
    count: [u32; D],
    open: u32,
}

impl Entries {
    #[inline(always)]
    fn room(&self, d: usize) -> bool {
        self.count[d] < MAX_ENTRIES
    }

    #[inline(always)]
    fn note(&mut self, d: usize) {
        self.count[d] += 1;
        if self.count[d] >= MAX_ENTRIES {
            self.open &= !(1 << d);
        }
    }

    /// Whether an order in `from..to` is below the cap.
    #[inline(always)]
    fn any_open(&self, from: usize, to: usize) -> bool {
        from < to && (self.open >> from) & ((1 << (to - from)) - 1) != 0
    }
}

fn general_tally(s: &[u8]) -> Option<Tally> {
    let n = s.len();
    if !(3..=1 << 30).contains(&n) {
        return None;
    }
    let mut trie = Trie::new();
    let mut entries = Entries {
        count: [0; D],
        open: (1 << D) - 1,
    };
    // NIST's initialisation: order d starts with (s[0..=d], s[d + 1]); the
    // shorter contexts on the way are not in the dictionary.
    for d in 0..D.min(n - 2) {
        let mut up = NIL;
        for len in 1..=d + 1 {
            up = trie.make(s, d + 1, len, up);
        }
        trie.enter(up, d + 1, s[d], s[d + 1]);
        entries.note(d);
    }
    let mut board = Scoreboard::default();
    let mut prev = [NIL; D];
    let mut cur = [NIL; D];
    for i in 2..n {
        lit_step(
            &mut trie,
            &mut entries,
            &mut board,
            (s, i),
            (&prev, &mut cur),
        );
        std::mem::swap(&mut prev, &mut cur);
    }
    board.tally.predictions = (n - 2) as u64;
    Some(board.tally)
}

/// One step of the literal predictor at index `i`: each order from 0 up
/// predicts while the chain of found contexts lasts (NIST stops looking at
/// the first order that lacks its context), then the remaining orders below
/// their cap add theirs. `prev` holds the previous step's nodes, `cur`
/// receives this step's.
#[inline(always)]
fn lit_step(
    trie: &mut Trie,
    entries: &mut Entries,
    board: &mut Scoreboard,
    (s, i): (&[u8], usize),
    (prev, cur): (&[u32; D], &mut [u32; D]),
) {
    let (x, y) = (s[i - 1], s[i]);
    let top = D.min(i - 1);
    board.start();
    cur.fill(NIL);
    let mut chain = true;
    let mut up = NIL;
    for d in 0..top {
        let len = d + 1;
        let mut node = if d > 0 {
            trie.linked(prev[d - 1], x)
        } else {
            NIL
        };
        if node == NIL {
            node = trie.find(s, i, len, up);
        }
        if chain {
            match trie.nodes.get(node as usize) {
                Some(t) if t.best != 0 => {
                    board.score(d, t.best_sym == y);
                    if trie.count(node, len, x, y, entries.room(d)) {
                        entries.note(d);
                    }
                }
                _ => chain = false,
            }
        }
        if !chain {
            let deeper = entries.any_open(d + 1, top);
            if entries.room(d) {
                if node == NIL {
                    node = trie.make(s, i, len, up);
                }
                trie.enter(node, len, x, y);
                entries.note(d);
            } else if node == NIL && deeper {
                node = trie.make(s, i, len, up);
            }
            if !deeper {
                cur[d] = node;
                if d > 0 && node != NIL {
                    trie.link(prev[d - 1], x, node);
                }
                return;
            }
        }
        if d > 0 && node != NIL {
            trie.link(prev[d - 1], x, node);
        }
        cur[d] = node;
        up = node;
    }
}

#[cfg(test)]
// Values are pinned as NIST prints them (%.17g).
#[allow(clippy::excessive_precision)]
pub(super) mod tests {
    use super::*;

    /// xorshift64* (the generator behind the pinned inputs below).
    fn next(state: &mut u64) -> u64 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32
    }

    /// `n` samples of an order-2 rule with noise over `k` values from
    /// `base`: half the time `(3a + b + 1) % k` after `a, b`, else uniform.
    pub(in super::super) fn markov(seed: u64, n: usize, k: u64, base: u8) -> Vec<u8> {
        let mut st = seed;
        let (mut a, mut b) = (0u64, 0u64);
        (0..n)
            .map(|_| {
                let r = next(&mut st);
                let s = if r % 4 < 2 {
                    (3 * a + b + 1) % k
                } else {
                    (r >> 8) % k
                };
                (a, b) = (b, s);
                base + s as u8
            })
            .collect()
    }

    /// The literal track of `w`-bit samples: values ranked, and k.
    pub(in super::super) fn literal(raw: &[u8], w: u32) -> (Vec<u8>, usize) {
        let mask = ((1u32 << w) - 1) as u8;
        let mut seen = [false; 256];
        raw.iter().for_each(|&b| seen[usize::from(b & mask)] = true);
        let mut rank = [0u8; 256];
        let mut k = 0;
        for v in 0..256 {
            if seen[v] {
                rank[v] = k as u8;
                k += 1;
            }
        }
        (
            raw.iter().map(|&b| rank[usize::from(b & mask)]).collect(),
            k,
        )
    }

    /// The bitstring of `w`-bit samples, most significant bit first.
    pub(in super::super) fn bitstring(raw: &[u8], w: u32) -> Vec<u8> {
        raw.iter()
            .flat_map(|&b| (0..w).rev().map(move |j| (b >> j) & 1))
            .collect()
    }

    /// Inputs pinned against ea_non_iid (commit 68ed165, `-vvv`), made by
    /// `markov(seed, n, k, base)` and read as `w`-bit samples.
    pub(in super::super) const PINNED: [(u64, usize, u64, u8, u32); 3] = [
        (7, 4000, 7, 40, 8),
        (11, 3000, 16, 0, 4),
        (17, 8000, 256, 0, 8),
    ];

    /// NIST's (C, N, r - 1, min-entropy) for PINNED: literal, bitstring.
    const NIST: [[(u64, u64, u64, f64); 2]; 3] = [
        [
            (2256, 3998, 14, 0.77476347144554591),
            (27939, 31998, 94, 0.18780453469016153),
        ],
        [
            (1192, 2998, 12, 1.2493918141997045),
            (7200, 11998, 20, 0.70929148432883371),
        ],
        [
            (94, 7998, 4, 3.9002654391725549),
            (31937, 63998, 13, 0.98815443796944802),
        ],
    ];

    fn check(track: Track, want: (u64, u64, u64, f64)) {
        let t = multi_mmc_tally(track).unwrap();
        assert_eq!(
            (t.correct, t.predictions, t.longest_run),
            (want.0, want.1, want.2)
        );
        let h = multi_mmc(track).unwrap();
        assert!((h - want.3).abs() < 1e-12, "{h} vs {}", want.3);
    }

    #[test]
    fn matches_ea_non_iid() {
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
        let s = [0u8, 1, 2, 0];
        for n in 0..3 {
            assert_eq!(
                multi_mmc(Track {
                    symbols: &s[..n],
                    alphabet: 3
                }),
                None
            );
        }
        assert!(
            multi_mmc(Track {
                symbols: &s[..3],
                alphabet: 3
            })
            .is_some()
        );
        let b = [0u8, 1, 0, 1];
        assert_eq!(
            multi_mmc(Track {
                symbols: &b[..3],
                alphabet: 2
            }),
            None
        );
        assert!(
            multi_mmc(Track {
                symbols: &b,
                alphabet: 2
            })
            .is_some()
        );
    }

    #[test]
    fn by_hand() {
        // 0 1 0 1: order 0 starts with (0 -> 1); at i = 2 its context 1 is
        // new; at i = 3 context 0 predicts 1, right. Order 1's context 10
        // is new then.
        let t = multi_mmc_tally(Track {
            symbols: &[0, 1, 0, 1],
            alphabet: 2,
        })
        .unwrap();
        assert_eq!(
            t,
            Tally {
                correct: 1,
                predictions: 2,
                longest_run: 1
            }
        );
        // A constant track (which NIST refuses as having one symbol) is
        // predicted perfectly: order 0 starts out knowing 5 -> 5.
        let c = [5u8; 50];
        let t = multi_mmc_tally(Track {
            symbols: &c,
            alphabet: 1,
        })
        .unwrap();
        assert_eq!(
            t,
            Tally {
                correct: 48,
                predictions: 48,
                longest_run: 48
            }
        );
        assert_eq!(
            multi_mmc(Track {
                symbols: &c,
                alphabet: 1
            }),
            Some(0.0)
        );
    }

    #[test]
    fn literal_and_binary_routines_agree() {
        // On 0/1 symbols NIST's general routine (ties to the larger symbol)
        // and its binary one (ties to 1) are the same predictor.
        for seed in 1..4 {
            let raw = markov(seed, 3000, 2, 0);
            let a = multi_mmc_tally(Track {
                symbols: &raw,
                alphabet: 2,
            });
            let b = multi_mmc_tally(Track {
                symbols: &raw,
                alphabet: 3,
            });
            assert_eq!(a, b);
        }
    }
}
