//! x86-64 builds of the word loop, chosen at run time by what the CPU has.

use super::words::{self, Words};
use super::{Block, BlockStats};

/// Which build of the word loop this CPU can run, best first. The loop is
/// written once; each level compiles it with more of the CPU's instructions
/// so that the compiler can test several words per instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Level {
    /// A vector popcount (VPOPCNTQ) makes the nibble counts popcounts too.
    Avx512,
    Avx2,
    Popcnt,
    Portable,
}

const ALL: [Level; 4] = [Level::Avx512, Level::Avx2, Level::Popcnt, Level::Portable];

impl Level {
    pub(super) fn detect() -> Self {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f")
            && has!("avx512vpopcntdq")
            && has!("avx512bw")
            && has!("avx512vl")
            && has!("avx512dq")
            && has!("bmi2")
            && has!("popcnt")
        {
            Self::Avx512
        } else if has!("avx2") && has!("popcnt") {
            Self::Avx2
        } else if has!("popcnt") {
            Self::Popcnt
        } else {
            Self::Portable
        }
    }

    pub(super) fn all_usable() -> Vec<Self> {
        let best = Self::detect();
        ALL.into_iter().skip_while(|l| *l != best).collect()
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Avx512 => "avx512",
            Self::Avx2 => "avx2",
            Self::Popcnt => "popcnt",
            Self::Portable => "portable",
        }
    }

    pub(super) fn stats(self, block: &Block) -> BlockStats {
        // `detect` saw the CPU support every feature the called function is
        // compiled for; a `Level` is made by nothing else.
        match self {
            // SAFETY: this level means the CPU has AVX-512 (F, BW, VL, DQ,
            // VPOPCNTDQ), BMI2 and POPCNT.
            Self::Avx512 => unsafe { stats_avx512(block) },
            // SAFETY: this level means the CPU has AVX2 and POPCNT.
            Self::Avx2 => unsafe { stats_avx2(block) },
            // SAFETY: this level means the CPU has POPCNT.
            Self::Popcnt => unsafe { stats_popcnt(block) },
            Self::Portable => words::stats_words(block, words::nibble_counts_table),
        }
    }
}

impl Level {
    /// Runs `f` compiled with this level's features, so that what it
    /// inlines (byte screens, hashes, counts) is vectorised as widely as the
    /// word loop is.
    #[inline(always)]
    pub(super) fn with_features<R>(self, f: impl FnOnce() -> R) -> R {
        // `detect` saw the CPU support every feature the called function is
        // compiled for; a `Level` is made by nothing else.
        match self {
            // SAFETY: this level means the CPU has AVX-512 (F, BW, VL, DQ,
            // VPOPCNTDQ), BMI2 and POPCNT.
            Self::Avx512 => unsafe { with_avx512(f) },
            // SAFETY: this level means the CPU has AVX2 and POPCNT.
            Self::Avx2 => unsafe { with_avx2(f) },
            // SAFETY: this level means the CPU has POPCNT.
            Self::Popcnt => unsafe { with_popcnt(f) },
            Self::Portable => f(),
        }
    }
}

#[target_feature(enable = "avx512f,avx512vpopcntdq,avx512bw,avx512vl,avx512dq,avx2,bmi2,popcnt")]
fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[target_feature(enable = "avx2,popcnt")]
fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[target_feature(enable = "popcnt")]
fn with_popcnt<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[target_feature(enable = "avx512f,avx512vpopcntdq,avx512bw,avx512vl,avx2,popcnt")]
fn stats_avx512(block: &Block) -> BlockStats {
    words::stats_words(block, words::nibble_counts_parity)
}

#[target_feature(enable = "avx2,popcnt")]
fn stats_avx2(block: &Block) -> BlockStats {
    // The closure inherits this function's features, so the call is safe.
    words::stats_words(block, |b, w| nibble_counts_avx2(b, w))
}

/// Without POPCNT every `count_ones` becomes a dozen shifts and masks.
#[target_feature(enable = "popcnt")]
fn stats_popcnt(block: &Block) -> BlockStats {
    words::stats_words(block, words::nibble_counts_table)
}

/// Counts of each 4-bit value, 32 bytes at a time: per value, a byte-wide
/// counter per lane is stepped by each match (a lane sees at most 2 x 78
/// matches per block, below 256), then the lanes are summed. Without a
/// vector popcount this beats the parity transform.
#[target_feature(enable = "avx2")]
fn nibble_counts_avx2(block: &Block, _: &Words) -> [u32; 16] {
    use std::arch::x86_64::*;
    let (chunks, tail) = block.as_chunks::<32>();
    let low = _mm256_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_si256(); 16];
    for chunk in chunks {
        // SAFETY: `chunk` is 32 readable bytes; the load has no alignment need.
        let x = unsafe { _mm256_loadu_si256(chunk.as_ptr().cast()) };
        let lo = _mm256_and_si256(x, low);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(x), low);
        for (v, a) in acc.iter_mut().enumerate() {
            let value = _mm256_set1_epi8(v as i8);
            // A match is -1 (0xFF): subtracting it adds one.
            *a = _mm256_sub_epi8(*a, _mm256_cmpeq_epi8(lo, value));
            *a = _mm256_sub_epi8(*a, _mm256_cmpeq_epi8(hi, value));
        }
    }
    let mut counts = [0u32; 16];
    for (count, a) in counts.iter_mut().zip(acc) {
        let sums = _mm256_sad_epu8(a, _mm256_setzero_si256());
        let mut lanes = [0u64; 4];
        // SAFETY: `lanes` is 32 writable bytes.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), sums) };
        *count = lanes.iter().sum::<u64>() as u32;
    }
    for &b in tail {
        counts[usize::from(b >> 4)] += 1;
        counts[usize::from(b & 15)] += 1;
    }
    counts
}
