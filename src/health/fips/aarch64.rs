//! AArch64 builds of the word loop. Advanced SIMD (NEON) is part of every
//! AArch64 CPU, but whether counting nibbles with it beats the portable
//! byte table depends on the core (how many vector pipes it has) and was
//! not measured on hardware here (under qemu, which expands each vector
//! instruction into several, the table wins). So the tester times both on
//! a few blocks, once per process, and keeps the faster: both give the
//! same counts, only the speed differs.

use super::words::{self, Words};
use super::{Block, BlockStats};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Level {
    /// Nibble counts by byte popcounts (CNT) of the parity planes.
    Neon,
    Portable,
}

impl Level {
    /// The faster build on this CPU, timed once per process: a property of
    /// the core, so every tester (one per source, per `check` stream and
    /// per `TestedRng`) shares the first one's finding, and making one
    /// costs nothing after it.
    pub(super) fn detect() -> Self {
        static FASTER: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
        *FASTER.get_or_init(Self::time_both)
    }

    fn time_both() -> Self {
        let block = timing_block();
        let cost = |level: Self| {
            (0..3)
                .map(|_| {
                    let started = std::time::Instant::now();
                    for _ in 0..8 {
                        std::hint::black_box(level.stats(std::hint::black_box(&block)));
                    }
                    started.elapsed()
                })
                .min()
        };
        if cost(Self::Neon) <= cost(Self::Portable) {
            Self::Neon
        } else {
            Self::Portable
        }
    }

    pub(super) fn all_usable() -> Vec<Self> {
        vec![Self::Neon, Self::Portable]
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Neon => "neon",
            Self::Portable => "portable",
        }
    }

    /// NEON is always there: nothing to enable.
    #[inline(always)]
    pub(super) fn with_features<R>(self, f: impl FnOnce() -> R) -> R {
        f()
    }

    pub(super) fn stats(self, block: &Block) -> BlockStats {
        match self {
            Self::Neon => words::stats_words(block, nibble_counts_neon),
            Self::Portable => words::stats_words(block, words::nibble_counts_table),
        }
    }
}

/// A block of xorshift noise to time the builds on.
fn timing_block() -> Block {
    crate::xorshift::XorShift(0x9E37_79B9_7F4A_7C15).block()
}

/// The parity transform of `words::nibble_counts_parity`, two words per
/// register: CNT counts the bits of each byte, and the byte counts are
/// widened and summed every 8 registers (8 x 8 bits at most 64 per byte).
fn nibble_counts_neon(_: &Block, words: &Words) -> [u32; 16] {
    use std::arch::aarch64::*;
    let (pairs, rest) = words.as_chunks::<2>();
    // SAFETY: NEON is baseline on AArch64; every load reads two whole u64s.
    unsafe {
        let low_bits = vdupq_n_u64(0x1111_1111_1111_1111);
        let mut totals = [vdupq_n_u32(0); 16];
        for group in pairs.chunks(8) {
            let mut bytes = [vdupq_n_u8(0); 16];
            for pair in group {
                let w = vld1q_u64(pair.as_ptr());
                let planes = [
                    vandq_u64(w, low_bits),
                    vandq_u64(vshrq_n_u64::<1>(w), low_bits),
                    vandq_u64(vshrq_n_u64::<2>(w), low_bits),
                    vandq_u64(vshrq_n_u64::<3>(w), low_bits),
                ];
                let mut parity = [vdupq_n_u64(0); 16];
                for m in 1..16 {
                    parity[m] = veorq_u64(parity[m & (m - 1)], planes[m.trailing_zeros() as usize]);
                    bytes[m] = vaddq_u8(bytes[m], vcntq_u8(vreinterpretq_u8_u64(parity[m])));
                }
            }
            for m in 1..16 {
                totals[m] = vpadalq_u16(totals[m], vpaddlq_u8(bytes[m]));
            }
        }
        let rest = words::odd_parity_counts(rest);
        let odd: [u32; 16] = std::array::from_fn(|m| vaddvq_u32(totals[m]) + rest[m] as u32);
        words::from_parity_counts(&odd)
    }
}
