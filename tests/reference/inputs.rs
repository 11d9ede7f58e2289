//! Deterministic test inputs for comparing our SP 800-90B §6.3 estimators with
//! NIST's `ea_non_iid` (usnistgov/SP800-90B_EntropyAssessment, `cpp/`).
//!
//! The figures NIST's tool printed for every input here are pinned in
//! `ea_non_iid.json` beside this file (written by `pin_ea_non_iid.py`, which
//! wrote each input to a file of its own and ran the tool on it). This file
//! must therefore stay byte-for-byte stable: changing a generator, a seed or the
//! PRNG changes the inputs, whose SHA-256 the fixture records, and the figures
//! must then be pinned again.
//!
//! Each kind of input exists to drive a different part of the battery (a
//! different estimator giving the minimum, a different alphabet size, the
//! binary-only estimators on the literal track, the bitstring track of
//! narrow samples). Every kind comes at 65,536 samples (`-64k`, the quick
//! case) and at 1,000,000 samples (`-1m`, the size SP 800-90B asks for, §3.1.1).
//! The same seed is used at both sizes and every generator is sequential, so
//! each `-64k` input is the first 65,536 bytes of its `-1m` input.
//!
//! Pure: no I/O, no dependencies, no global state; its own PRNG (SplitMix64),
//! so the bytes never depend on a crate's version.

/// One test input: the sample file NIST's tool is run on, and the
/// bits-per-sample argument given to it.
pub struct Input {
    /// File stem, e.g. `full-entropy-64k` (the fixture is keyed by it).
    pub name: &'static str,
    /// The `bits_per_symbol` argument of `ea_non_iid` (1..=8); every byte
    /// holds one sample in its low `bits_per_sample` bits.
    pub bits_per_sample: u8,
    /// One sample per byte.
    pub bytes: Vec<u8>,
}

/// The quick size: 64 KiB of samples.
const SMALL: usize = 65_536;
/// The size SP 800-90B §3.1.1 asks a submitter for.
const LARGE: usize = 1_000_000;

/// Every input, all the 64 KiB ones first, then the 1,000,000-sample ones.
pub fn all() -> Vec<Input> {
    let mut small = Vec::new();
    let mut large = Vec::new();
    for kind in KINDS {
        small.push(kind.make(kind.small, SMALL));
        large.push(kind.make(kind.large, LARGE));
    }
    small.extend(large);
    small
}

/// SplitMix64 (Steele, Lea and Flood 2014): tiny, fast, and good enough that
/// the "full entropy" input looks like full entropy to every estimator.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (multiply-high; the bias of at most n / 2^64 is
    /// irrelevant here, and the result is exactly reproducible).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `p`: 53 random bits compared as an exact
    /// IEEE-754 double, so the outcome is the same on every platform.
    fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64) * (1.0 / 9_007_199_254_740_992.0) < p
    }

    fn byte(&mut self) -> u8 {
        (self.next_u64() >> 56) as u8
    }
}

/// One kind of input, generated at both sizes from the same seed.
struct Kind {
    small: &'static str,
    large: &'static str,
    bits_per_sample: u8,
    seed: u64,
    generate: fn(&mut SplitMix64, usize) -> Vec<u8>,
}

impl Kind {
    fn make(&self, name: &'static str, samples: usize) -> Input {
        let mut rng = SplitMix64(self.seed);
        Input {
            name,
            bits_per_sample: self.bits_per_sample,
            bytes: (self.generate)(&mut rng, samples),
        }
    }
}

/// `Kind` in one line per table row.
const fn kind(
    small: &'static str,
    large: &'static str,
    bits_per_sample: u8,
    seed: u64,
    generate: fn(&mut SplitMix64, usize) -> Vec<u8>,
) -> Kind {
    Kind {
        small,
        large,
        bits_per_sample,
        seed,
        generate,
    }
}

/// Every kind: names at both sizes, bits per sample, seed, generator.
const KINDS: &[Kind] = &[
    kind("full-entropy-64k", "full-entropy-1m", 8, 1, full_entropy),
    kind("biased-bits-64k", "biased-bits-1m", 8, 2, biased_bits),
    kind("byte-markov-64k", "byte-markov-1m", 8, 3, byte_markov),
    kind("bit-markov-64k", "bit-markov-1m", 8, 4, bit_markov),
    kind("nibbles-64k", "nibbles-1m", 4, 5, nibbles),
    kind("one-bit-64k", "one-bit-1m", 1, 6, one_bit),
    kind("three-bit-64k", "three-bit-1m", 3, 7, three_bit),
    kind("periodic-64k", "periodic-1m", 8, 8, periodic),
    kind("long-repeat-64k", "long-repeat-1m", 8, 9, long_repeat),
    kind(
        "nearly-constant-64k",
        "nearly-constant-1m",
        8,
        10,
        nearly_constant,
    ),
    kind("two-valued-64k", "two-valued-1m", 8, 11, two_valued),
    kind(
        "noisy-counter-64k",
        "noisy-counter-1m",
        8,
        12,
        noisy_counter,
    ),
    kind("normal-64k", "normal-1m", 8, 13, normal),
];

/// Uniform bytes: every estimator should give close to 8 bits (the bitstring
/// close to 1); the literal track has all 256 symbols, and the prediction
/// estimators mostly fall back to their global bound (few correct guesses).
fn full_entropy(rng: &mut SplitMix64, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.byte()).collect()
}

/// Packs bits MSB first, as NIST's tool unpacks them into the bitstring.
fn pack(bits: impl FnMut() -> bool, n: usize) -> Vec<u8> {
    let mut bits = bits;
    (0..n)
        .map(|_| (0..8).fold(0u8, |byte, _| (byte << 1) | u8::from(bits())))
        .collect()
}

/// Independent bits, each 1 with p = 0.7, packed into bytes: the bitstring's
/// most common value is 0.7 (about 0.51 bits per bit), far below the literal
/// track's figure, so the assessment is 8 × H_bitstring.
fn biased_bits(rng: &mut SplitMix64, n: usize) -> Vec<u8> {
    pack(|| rng.chance(0.7), n)
}

/// A byte random walk of order 1 (next = previous + a step uniform in -2..=2,
/// mod 256): little entropy per byte (about log2 5) that only a model of
/// the previous symbol sees; the frequencies are flat, so MCV stays high while
/// the Markov-style predictors (MultiMMC, LZ78Y) and the t-tuple test find it.
fn byte_markov(rng: &mut SplitMix64, n: usize) -> Vec<u8> {
    let mut prev = rng.byte();
    (0..n)
        .map(|_| {
            prev = prev.wrapping_add(rng.below(5) as u8).wrapping_sub(2);
            prev
        })
        .collect()
}

/// A bit-level Markov chain of order 2 (P(1 | last two bits 00, 01, 10, 11)
/// = 0.2, 0.6, 0.4, 0.85), packed into bytes: the dependence is between
/// bits, so the bitstring track's Markov and MultiMMC estimators see it while
/// the literal bytes look merely skewed.
fn bit_markov(rng: &mut SplitMix64, n: usize) -> Vec<u8> {
    const P_ONE: [f64; 4] = [0.2, 0.6, 0.4, 0.85];
    let mut state = 0usize;
    pack(
        || {
            let bit = rng.chance(P_ONE[state]);
            state = ((state << 1) | usize::from(bit)) & 3;
            bit
        },
        n,
    )
}

/// 4-bit samples (0..=15) with linearly falling weights 16, 15, ..., 1: an
/// alphabet of 16 on the literal track and a 4-bit-per-sample bitstring
/// (NIST unpacks only the low `bits_per_sample` bits), which exercises the
/// `word_size × H_bitstring` scaling with a factor other than 8.
fn nibbles(rng: &mut SplitMix64, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            // Weight 16 - v: v is the first index whose cumulative weight passes r.
            let mut r = rng.below(136);
            let mut v = 0u8;
            while r >= u64::from(16 - v) {
                r -= u64::from(16 - v);
                v += 1;
            }
            v
        })
        .collect()
}

/// 1-bit samples (0 or 1, 1 with p = 0.65): binary data from the start, so
/// NIST runs collision, Markov and compression on the literal track and no
/// bitstring track at all.
fn one_bit(rng: &mut SplitMix64, n: usize) -> Vec<u8> {
    (0..n).map(|_| u8::from(rng.chance(0.65))).collect()
}

/// 3-bit samples (0..=7): the previous value again with p = 0.3, otherwise
/// uniform. Alphabet 8, a 3-bit bitstring, and a dependence the lag and
/// MultiMCW predictors can exploit.
fn three_bit(rng: &mut SplitMix64, n: usize) -> Vec<u8> {
    let mut prev = rng.below(8) as u8;
    (0..n)
        .map(|_| {
            if !rng.chance(0.3) {
                prev = rng.below(8) as u8;
            }
            prev
        })
        .collect()
}

/// A fixed random pattern of 100 bytes repeated, each sample replaced by a
/// uniform byte with p = 0.05: the lag predictor (lag 100, within its 128
/// lags) and the t-tuple test see the period, while the frequencies only show
/// the pattern's at most 100 distinct values.
fn periodic(rng: &mut SplitMix64, n: usize) -> Vec<u8> {
    let pattern: Vec<u8> = (0..100).map(|_| rng.byte()).collect();
    (0..n)
        .map(|i| {
            if rng.chance(0.05) {
                rng.byte()
            } else {
                pattern[i % 100]
            }
        })
        .collect()
}

/// Uniform bytes except that the 4 KiB at offset 8,192 appear again at offset
/// 40,000 (both inside the first 64 KiB): a single very long repeated
/// substring, which the LRS estimator (§6.3.6) is there to notice (the
/// t-tuple test sees only tuples that occur at least 35 times).
fn long_repeat(rng: &mut SplitMix64, n: usize) -> Vec<u8> {
    let mut bytes = full_entropy(rng, n);
    if n >= 40_000 + 4_096 {
        bytes.copy_within(8_192..8_192 + 4_096, 40_000);
    }
    bytes
}

/// 0x5a with p = 0.99, otherwise a uniform byte: most estimators give well
/// under 0.1 bit, long runs of one symbol stress the predictors' longest-run
/// bound and the t-tuple/LRS tests' very long tuples, while the alphabet
/// still has most of the 256 values.
fn nearly_constant(rng: &mut SplitMix64, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| if rng.chance(0.99) { 0x5a } else { rng.byte() })
        .collect()
}

/// Only 0x00 and 0xff (0xff with p = 0.55), with bits_per_sample 8: the
/// literal track is translated to an alphabet of 2, so NIST runs the
/// binary-only estimators on the literal track and no bitstring track, and
/// the assessment stays in bits per 8-bit sample.
fn two_valued(rng: &mut SplitMix64, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| if rng.chance(0.55) { 0xff } else { 0x00 })
        .collect()
}

/// Sample i is (i + e) mod 256 with e uniform in 0..=3: about 2 bits of
/// noise on a perfectly predictable counter; frequencies are flat, and only
/// the structure across samples (t-tuple, predictors) gives it away.
fn noisy_counter(rng: &mut SplitMix64, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_add(rng.below(4) as u8))
        .collect()
}

/// The sum of four uniform values in 0..=63 (0..=252, bell-shaped around
/// 126): independent samples whose extreme values almost never occur, so
/// the alphabet is a subrange that symbol translation maps down, and whose
/// most common value has p of about 1/64.
fn normal(rng: &mut SplitMix64, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            let r = rng.next_u64();
            ((r & 63) + ((r >> 16) & 63) + ((r >> 32) & 63) + ((r >> 48) & 63)) as u8
        })
        .collect()
}
