//! Inputs the estimators' unit tests share, each small and deterministic so
//! that a figure pinned from NIST's `ea_non_iid` can be regenerated: write
//! the input to a file and run `ea_non_iid -vv FILE BITS` (commit 68ed165).

/// A 64-bit LCG (Knuth's MMIX constants): its whole state, step by step.
pub fn lcg64(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state
    }
}

/// The same LCG, its top 31 bits.
pub fn lcg(seed: u64) -> impl FnMut() -> u64 {
    let mut next = lcg64(seed);
    move || next() >> 33
}

/// 20,000 sticky bits, one a byte: xorshift32 from seed 7; a bit repeats
/// the one before it when the top 4 bits of the state are below 10, else
/// it flips. Pinned as `ea_non_iid -vv FILE 1` (literal track, k = 2).
pub fn sticky_bits() -> Vec<u8> {
    let (mut next, mut bit) = (xorshift32(7), 0u8);
    (0..20_000)
        .map(|_| {
            if next() >> 28 >= 10 {
                bit ^= 1;
            }
            bit
        })
        .collect()
}

/// Marsaglia's xorshift32 (13, 17, 5): its state, step by step.
pub fn xorshift32(seed: u32) -> impl FnMut() -> u32 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    }
}
