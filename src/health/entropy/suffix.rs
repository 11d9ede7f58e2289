//! Suffix array and LCP array of a symbol track, for the §6.3.5 t-tuple and
//! §6.3.6 LRS estimates when their fast path (sorting fixed-width windows,
//! in `tuple.rs`) cannot decide the order of two suffixes.
//!
//! NIST's tool builds the same two arrays with libdivsufsort and Kasai's
//! algorithm. Any correct construction gives the same arrays, so this one is
//! chosen for a guaranteed linear time and a small footprint: SA-IS (Nong,
//! Zhang and Chan, "Two Efficient Algorithms for Linear Time Suffix Array
//! Construction", 2011) with an implicit sentinel, then the permuted LCP
//! array by the Φ method (Kärkkäinen, Manzini and Puglisi, CPM 2009), which
//! needs one array of `n` words besides the suffix array where Kasai's needs
//! two.

/// Marks an empty slot of the suffix array while suffixes are induced.
const EMPTY: u32 = u32::MAX;

/// A symbol of a string being sorted: the track's bytes at the top level,
/// the names of LMS substrings in the recursion.
trait Symbol: Copy + Ord {
    fn index(self) -> usize;
}

impl Symbol for u8 {
    fn index(self) -> usize {
        usize::from(self)
    }
}

impl Symbol for u32 {
    fn index(self) -> usize {
        self as usize
    }
}

/// The suffix array of `text`: the start of every suffix, in increasing
/// lexicographic order (a suffix that is a prefix of another sorts first).
///
/// `None` when `text` has `u32::MAX` symbols or more, which 32-bit indices
/// cannot hold.
pub(super) fn suffix_array(text: &[u8]) -> Option<Vec<u32>> {
    if text.len() >= EMPTY as usize {
        return None;
    }
    let alphabet = text.iter().max().map_or(1, |&m| usize::from(m) + 1);
    let mut sa = vec![0u32; text.len()];
    sais(text, alphabet, &mut sa);
    Some(sa)
}

/// The permuted LCP array: entry `p` is the length of the longest common
/// prefix of the suffix at `p` and the suffix just before it in `sa`, and 0
/// for the smallest suffix. The LCP array in suffix order is
/// `plcp[sa[i]]`.
pub(super) fn permuted_lcp(text: &[u8], sa: &[u32]) -> Vec<u32> {
    let n = text.len();
    // Φ: each suffix's predecessor in suffix order.
    let mut plcp = vec![EMPTY; n];
    for pair in sa.windows(2) {
        plcp[pair[1] as usize] = pair[0];
    }
    // Going through suffixes in text order, the common prefix with the
    // predecessor shrinks by at most one per step, so extending it costs
    // O(n) in all.
    let mut h = 0usize;
    for i in 0..n {
        let prev = plcp[i];
        if prev == EMPTY {
            plcp[i] = 0;
            h = 0;
            continue;
        }
        let j = prev as usize;
        while i + h < n && j + h < n && text[i + h] == text[j + h] {
            h += 1;
        }
        plcp[i] = h as u32;
        h = h.saturating_sub(1);
    }
    plcp
}

/// The LCP array in suffix order, in the suffix array's own storage: entry
/// `i` is the common prefix of suffixes `sa[i - 1]` and `sa[i]` (0 for
/// `i = 0`). Going through the permuted array keeps the text accesses
/// local; the final gather has no dependency chain, so its cache misses
/// overlap.
pub(super) fn lcp_array(text: &[u8], mut sa: Vec<u32>) -> Vec<u32> {
    let plcp = permuted_lcp(text, &sa);
    for slot in sa.iter_mut() {
        *slot = plcp[*slot as usize];
    }
    sa
}

/// Where each symbol's bucket starts in the suffix array (`alphabet + 1`
/// entries, the last one `s.len()`).
fn bucket_starts<S: Symbol>(s: &[S], alphabet: usize) -> Vec<u32> {
    let mut starts = vec![0u32; alphabet + 1];
    for &c in s {
        starts[c.index() + 1] += 1;
    }
    for c in 0..alphabet {
        starts[c + 1] += starts[c];
    }
    starts
}

/// Whether the suffix at `i` is leftmost-S: S-type with an L-type
/// predecessor.
fn is_lms(is_s: &[bool], i: usize) -> bool {
    i > 0 && is_s[i] && !is_s[i - 1]
}

/// SA-IS on `s` (symbols below `alphabet`), writing the suffix array into
/// `sa` (`s.len()` entries). The sentinel that SA-IS assumes after the last
/// symbol is implicit.
fn sais<S: Symbol>(s: &[S], alphabet: usize, sa: &mut [u32]) {
    let n = s.len();
    match n {
        0 => return,
        1 => {
            sa[0] = 0;
            return;
        }
        _ => {}
    }
    // Suffix types: S if smaller than the suffix after it. The last one is
    // L, being larger than the empty sentinel suffix.
    let mut is_s = vec![false; n];
    for i in (0..n - 1).rev() {
        is_s[i] = s[i] < s[i + 1] || (s[i] == s[i + 1] && is_s[i + 1]);
    }
    let starts = bucket_starts(s, alphabet);
    let mut tails = starts[1..].to_vec();

    // Sort the LMS substrings: seed the LMS suffixes in any order, induce.
    sa.fill(EMPTY);
    for i in (1..n).rev() {
        if is_lms(&is_s, i) {
            let c = s[i].index();
            tails[c] -= 1;
            sa[tails[c] as usize] = i as u32;
        }
    }
    induce(s, &is_s, &starts, sa);

    let lms_count = compact_lms(&is_s, sa);
    let names = name_lms_substrings(s, &is_s, sa, lms_count);
    sort_lms_suffixes(&is_s, sa, lms_count, names);

    // Seed the sorted LMS suffixes at their bucket tails, largest first, and
    // induce the whole array from them.
    tails.copy_from_slice(&starts[1..]);
    sa[lms_count..].fill(EMPTY);
    for i in (0..lms_count).rev() {
        let p = sa[i];
        sa[i] = EMPTY;
        let c = s[p as usize].index();
        tails[c] -= 1;
        sa[tails[c] as usize] = p;
    }
    induce(s, &is_s, &starts, sa);
}

/// Induces L-type suffixes left to right from the seeded array, then S-type
/// suffixes right to left.
fn induce<S: Symbol>(s: &[S], is_s: &[bool], starts: &[u32], sa: &mut [u32]) {
    let n = s.len();
    let mut heads = starts[..starts.len() - 1].to_vec();
    // The sentinel, smallest of all, induces the last suffix (L-type).
    let c = s[n - 1].index();
    sa[heads[c] as usize] = (n - 1) as u32;
    heads[c] += 1;
    for i in 0..n {
        let p = sa[i];
        if p != EMPTY && p > 0 && !is_s[p as usize - 1] {
            let c = s[p as usize - 1].index();
            sa[heads[c] as usize] = p - 1;
            heads[c] += 1;
        }
    }
    let mut tails = starts[1..].to_vec();
    for i in (0..n).rev() {
        let p = sa[i];
        if p != EMPTY && p > 0 && is_s[p as usize - 1] {
            let c = s[p as usize - 1].index();
            tails[c] -= 1;
            sa[tails[c] as usize] = p - 1;
        }
    }
}

/// Moves the LMS suffixes, in their induced order, to the front of `sa`;
/// returns how many there are (at most `n / 2`).
fn compact_lms(is_s: &[bool], sa: &mut [u32]) -> usize {
    let mut count = 0;
    for i in 0..sa.len() {
        let p = sa[i];
        if p != EMPTY && is_lms(is_s, p as usize) {
            sa[count] = p;
            count += 1;
        }
    }
    count
}

/// Whether the LMS substrings at `a` and `b` (each up to and including the
/// next LMS position) are equal in symbols and types. The last one runs
/// into the sentinel and equals no other.
fn same_lms_substring<S: Symbol>(s: &[S], is_s: &[bool], a: usize, b: usize) -> bool {
    let n = s.len();
    let mut d = 0;
    loop {
        if a + d == n || b + d == n {
            return false;
        }
        if s[a + d] != s[b + d] || is_s[a + d] != is_s[b + d] {
            return false;
        }
        if d > 0 {
            let (end_a, end_b) = (is_lms(is_s, a + d), is_lms(is_s, b + d));
            if end_a || end_b {
                return end_a && end_b;
            }
        }
        d += 1;
    }
}

/// Names the sorted LMS substrings (`sa[..m]`) by rank and leaves the names
/// in text order in `sa[n - m..]`; returns the number of distinct names.
fn name_lms_substrings<S: Symbol>(s: &[S], is_s: &[bool], sa: &mut [u32], m: usize) -> usize {
    let n = s.len();
    // LMS positions are at least two apart, so position / 2 is a free slot
    // in sa[m..].
    sa[m..].fill(EMPTY);
    let mut names = 0usize;
    let mut prev: Option<usize> = None;
    for i in 0..m {
        let p = sa[i] as usize;
        if prev.is_none_or(|q| !same_lms_substring(s, is_s, q, p)) {
            names += 1;
        }
        prev = Some(p);
        sa[m + p / 2] = (names - 1) as u32;
    }
    let mut j = n;
    for i in (m..n).rev() {
        if sa[i] != EMPTY {
            j -= 1;
            sa[j] = sa[i];
        }
    }
    names
}

/// Sorts the LMS suffixes into `sa[..m]` from the names of their
/// substrings (in `sa[n - m..]`), recursing when names repeat.
fn sort_lms_suffixes(is_s: &[bool], sa: &mut [u32], m: usize, names: usize) {
    let n = sa.len();
    let (head, tail) = sa.split_at_mut(n - m);
    let reduced = &mut tail[..];
    let order = &mut head[..m];
    if names < m {
        sais(&*reduced, names, order);
    } else {
        for (i, &name) in reduced.iter().enumerate() {
            order[name as usize] = i as u32;
        }
    }
    // The reduced string's positions are LMS positions in text order.
    let mut k = 0;
    for i in 1..n {
        if is_lms(is_s, i) {
            reduced[k] = i as u32;
            k += 1;
        }
    }
    for slot in order.iter_mut() {
        *slot = reduced[*slot as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_inputs::lcg64;
    use super::*;

    /// `n` symbols below `alphabet`: the LCG's top byte, reduced.
    fn lcg(seed: u64, n: usize, alphabet: u64) -> Vec<u8> {
        let mut next = lcg64(seed);
        (0..n).map(|_| ((next() >> 56) % alphabet) as u8).collect()
    }

    fn naive(text: &[u8]) -> (Vec<u32>, Vec<u32>) {
        let mut sa: Vec<u32> = (0..text.len() as u32).collect();
        sa.sort_by(|&a, &b| text[a as usize..].cmp(&text[b as usize..]));
        let mut plcp = vec![0u32; text.len()];
        for w in sa.windows(2) {
            let (a, b) = (&text[w[0] as usize..], &text[w[1] as usize..]);
            plcp[w[1] as usize] = a.iter().zip(b).take_while(|(x, y)| x == y).count() as u32;
        }
        (sa, plcp)
    }

    fn check(text: &[u8]) {
        let sa = suffix_array(text).unwrap();
        let (want_sa, want_plcp) = naive(text);
        assert_eq!(sa, want_sa, "text {text:?}");
        assert_eq!(permuted_lcp(text, &sa), want_plcp, "text {text:?}");
    }

    #[test]
    fn small_and_degenerate_texts() {
        for text in [
            &b""[..],
            b"a",
            b"aa",
            b"ab",
            b"ba",
            b"banana",
            b"mississippi",
            b"aaaaaaaaaaaa",
            b"abababababab",
            b"abcabcabcabd",
            b"zyxwvutsrqponm",
        ] {
            check(text);
        }
    }

    #[test]
    fn random_texts_match_naive_sort() {
        for seed in 0..300u64 {
            let alphabet = [1, 2, 3, 4, 256][seed as usize % 5];
            let n = (seed as usize * 7) % 200;
            check(&lcg(seed, n, alphabet));
        }
    }

    #[test]
    fn repeated_blocks_match_naive_sort() {
        for seed in 0..40u64 {
            let block = lcg(seed, 20 + seed as usize, 2 + seed % 3);
            let text: Vec<u8> = block
                .iter()
                .chain(&block)
                .chain(&block[..7])
                .copied()
                .collect();
            check(&text);
        }
    }
}
