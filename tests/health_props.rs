//! The fast FIPS tester against the bit-by-bit reference, block by block, on
//! random and deliberately skewed data; and the SP 800-90B tests against
//! their definitions.

use proptest::prelude::*;
use random_refresher::health::fips::{BlockStats, ContinuousRun, FipsTester, reference};
use random_refresher::health::sp800_90b::{AdaptiveProportion, RepetitionCount};
use random_refresher::health::{BLOCK_BYTES, Block};

#[path = "../src/xorshift.rs"]
mod xorshift;

/// Blocks built from a seed with a chosen skew: uniform, biased bits, sticky
/// bits (long runs), flipping bits (short runs), or a few constant stretches.
fn block_strategy() -> impl Strategy<Value = Block> {
    (any::<u64>(), 0u8..5, 1u32..100).prop_map(|(seed, kind, knob)| {
        let mut x = xorshift::XorShift(seed | 1);
        let mut next = move || x.step();
        let p = f64::from(knob) / 100.0;
        let thr = |q: f64| (q * u64::MAX as f64) as u64;
        let mut bit = 0u8;
        let mut block: Block = std::array::from_fn(|_| {
            (0..8).fold(0u8, |b, _| {
                let v = match kind {
                    0 => (next() >> 63) as u8,
                    1 => u8::from(next() < thr(0.4 + p * 0.2)),
                    2 | 3 => {
                        let stay = if kind == 2 {
                            0.5 + p * 0.49
                        } else {
                            0.5 - p * 0.49
                        };
                        if next() >= thr(stay) {
                            bit ^= 1;
                        }
                        bit
                    }
                    _ => (next() >> 63) as u8,
                };
                (b << 1) | v
            })
        });
        if kind == 4 {
            for _ in 0..knob % 5 {
                let at = (next() % BLOCK_BYTES as u64) as usize;
                let len = (next() % 6) as usize;
                let fill = if next() & 1 == 0 { 0 } else { 0xFF };
                block[at..(at + len).min(BLOCK_BYTES)].fill(fill);
            }
        }
        block
    })
}

fn comparable(s: BlockStats) -> (u32, [u32; 16], [[u32; 6]; 2], bool) {
    (s.ones, s.nibbles, s.runs, s.has_long_run)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Every build of the word loop this CPU runs (each SIMD level and the
    /// portable one), not only the one the daemon picks.
    #[test]
    fn fast_counts_equal_reference_counts(block in block_strategy()) {
        let want = comparable(reference::stats(&block));
        for fast in FipsTester::all_levels(ContinuousRun::default()) {
            prop_assert_eq!(comparable(fast.stats(&block)), want, "{:?}", fast);
        }
    }

    #[test]
    fn fast_verdicts_equal_reference_over_a_stream(blocks in prop::collection::vec(block_strategy(), 1..6), prime in any::<u32>()) {
        for mut fast in FipsTester::all_levels(ContinuousRun::primed(prime)) {
            let mut slow = ContinuousRun::primed(prime);
            for b in &blocks {
                prop_assert_eq!(fast.test_block(b), reference::test_block(b, &mut slow), "{:?}", fast);
            }
        }
    }


    #[test]
    fn rct_and_apt_do_not_depend_on_how_the_stream_is_split(
        bytes in stream_with_runs(), cut in any::<prop::sample::Index>(), rct_cutoff in 2u32..8, apt_cutoff in 2u32..40,
    ) {
        let cut = cut.index(bytes.len() + 1);
        let whole = (RepetitionCount::new(rct_cutoff).feed(&bytes), AdaptiveProportion::new(apt_cutoff).feed(&bytes));
        let mut rct = RepetitionCount::new(rct_cutoff);
        let mut apt = AdaptiveProportion::new(apt_cutoff);
        let split = (rct.feed(&bytes[..cut]) | rct.feed(&bytes[cut..]), apt.feed(&bytes[..cut]) | apt.feed(&bytes[cut..]));
        prop_assert_eq!(whole, split);
        prop_assert_eq!(whole.0, longest_repeat(&bytes) >= rct_cutoff);
        prop_assert_eq!(whole.1, apt_model(&bytes, apt_cutoff));
    }

    #[test]
    fn rct_fires_exactly_when_a_value_repeats_cutoff_times(bytes in prop::collection::vec(0u8..4, 1..400), cutoff in 2u32..8) {
        prop_assert_eq!(RepetitionCount::new(cutoff).feed(&bytes), longest_repeat(&bytes) >= cutoff);
    }

    #[test]
    fn apt_fires_exactly_when_a_window_start_recurs_cutoff_times(bytes in prop::collection::vec(0u8..8, 1..3000), cutoff in 20u32..120) {
        prop_assert_eq!(AdaptiveProportion::new(cutoff).feed(&bytes), apt_model(&bytes, cutoff));
    }
}

#[test]
fn the_property_tests_cover_the_portable_loop_and_every_simd_level() {
    let levels = FipsTester::all_levels(ContinuousRun::default());
    let names: Vec<_> = levels.iter().map(|t| t.level_name()).collect();
    assert_eq!(names.last(), Some(&"portable"), "{names:?}");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("popcnt") {
        assert!(names.len() >= 2, "{names:?}");
    }
    // NEON is part of every AArch64 CPU: its build is always tested.
    #[cfg(target_arch = "aarch64")]
    assert_eq!(names, ["neon", "portable"]);
}

/// Full-range bytes with stretches of one repeated value dropped in.
fn stream_with_runs() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(any::<u8>(), 0..3000),
        prop::collection::vec((any::<prop::sample::Index>(), 1usize..9, any::<u8>()), 0..6),
    )
        .prop_map(|(mut bytes, runs)| {
            for (at, len, v) in runs {
                if bytes.is_empty() {
                    break;
                }
                let at = at.index(bytes.len());
                let end = (at + len).min(bytes.len());
                bytes[at..end].fill(v);
            }
            bytes
        })
}

fn longest_repeat(bytes: &[u8]) -> u32 {
    let mut longest = 0;
    let mut run = 0;
    let mut last = None;
    for &b in bytes {
        run = if last == Some(b) { run + 1 } else { 1 };
        last = Some(b);
        longest = longest.max(run);
    }
    longest
}

/// SP 800-90B 4.4.2 as written: windows of 512 from the start; a window that
/// reaches the cutoff fails and the next byte opens a new one.
fn apt_model(bytes: &[u8], cutoff: u32) -> bool {
    let mut expected = false;
    let mut i = 0;
    while i < bytes.len() {
        let first = bytes[i];
        let mut count = 1;
        let mut j = i + 1;
        let end = (i + 512).min(bytes.len());
        let mut failed_at = None;
        while j < end {
            if bytes[j] == first {
                count += 1;
                if count >= cutoff {
                    failed_at = Some(j);
                    break;
                }
            }
            j += 1;
        }
        match failed_at {
            Some(j) => {
                expected = true;
                i = j + 1;
            }
            None => i += 512,
        }
    }
    expected
}
