//! `check` against rngtest, the outside reference, on random and skewed data.
//!
//! Two rngtest builds are used. rng-tools-debian 2.3 carries the runs-test
//! fix that upstream rng-tools took in 6.11: `check` must equal it on every
//! input. Debian's rng-tools5 predates the fix and disagrees on skewed data;
//! its counts must equal a model of its known bug (`legacy_rngtest5`), which
//! shows that every disagreement is that bug and nothing else.

mod common;

use common::*;

const BLOCKS: usize = 1000;

/// The inputs: each 4 priming bytes and then `BLOCKS` blocks.
fn inputs() -> Vec<(&'static str, Vec<u8>)> {
    let n = 4 + BLOCKS * BLOCK;
    let mut s = SplitMix(0x5eed);
    let mut nibble_skewed = s.bytes(n);
    for (i, b) in nibble_skewed.iter_mut().enumerate() {
        if s.next_u64() % 100 < 3 + (i / BLOCK) as u64 % 4 {
            *b |= 0xF0;
        }
    }
    let mut edge_runs = s.bytes(n);
    for k in 1..BLOCKS {
        // 26 or more equal bits straddling, starting or ending a block edge.
        let edge = 4 + k * BLOCK;
        let (from, to) = match k % 3 {
            0 => (edge - 2, edge + 2),
            1 => (edge, edge + 4),
            _ => (edge - 4, edge),
        };
        edge_runs[from..to].fill(if k % 2 == 0 { 0xFF } else { 0 });
    }
    let mut repeated_words = s.bytes(n);
    for k in (1..BLOCKS).step_by(7) {
        let edge = 4 + k * BLOCK;
        let last: [u8; 4] = repeated_words[edge - 4..edge].try_into().unwrap();
        repeated_words[edge..edge + 4].copy_from_slice(&last);
    }
    // Patterns that fail SP 800-90B but not FIPS 140-2: six equal bytes
    // (the RCT cutoff at H = 8) in every third block, and a byte value
    // crowding a 512-byte APT window in every fifth. rngtest counts these
    // blocks as FIPS successes, and so must `check`.
    let mut patterns = s.bytes(n);
    for k in 0..BLOCKS {
        let start = 4 + k * BLOCK;
        if k % 3 == 0 {
            let at = start + 100 + (s.next_u64() % 2000) as usize;
            patterns[at..at + 6].fill(0x5A);
        }
        if k % 5 == 0 {
            // APT windows start every 512 bytes from the first tested byte.
            let window = 4 + (k * BLOCK).div_ceil(512) * 512;
            if window + 512 <= start + BLOCK {
                let v = patterns[window];
                for j in 0..24 {
                    patterns[window + 1 + j * 20] = v;
                }
            }
        }
    }
    vec![
        ("random", s.bytes(n)),
        ("sp800-90b-patterns", patterns),
        ("biased-0.51", s.biased(n, 0.51)),
        ("biased-0.49", s.biased(n, 0.49)),
        ("runs-long", s.sticky(n, 0.515)),
        ("runs-short", s.sticky(n, 0.485)),
        ("nibble-skewed", nibble_skewed),
        ("edge-runs", edge_runs),
        ("repeated-words", repeated_words),
    ]
}

#[test]
fn check_equals_fixed_rngtest_on_random_and_skewed_data() {
    let Some(fixed) = tool("RR_RNGTEST_FIXED", "rngtest-fixed") else {
        return;
    };
    let dir = temp_dir();
    let mut failing_blocks = 0;
    for (name, data) in inputs() {
        let file = write(dir.path(), name, &data);
        let (ours, json) = check_counts(&file, BLOCKS);
        let theirs = rngtest(&fixed, &file, BLOCKS);
        assert_eq!(ours, theirs, "{name}: check vs fixed rngtest");
        assert_eq!(
            check_text_counts(&file, BLOCKS),
            theirs,
            "{name}: text report"
        );
        assert_eq!(json["blocks"], BLOCKS as u64, "{name}");
        assert_eq!(json["bytes_read"], data.len() as u64, "{name}");
        if name == "sp800-90b-patterns" {
            // Blocks that only SP 800-90B failed are FIPS successes, and
            // the overall verdict counts them as failures.
            let sp = json["sp800_90b_failures"].as_u64().unwrap();
            assert!(sp > 300, "{name}: only {sp} SP 800-90B failures: {json}");
            assert!(
                json["rct"].as_u64().unwrap() > 0 && json["apt"].as_u64().unwrap() > 0,
                "{json}"
            );
            assert!(
                json["successes"].as_u64().unwrap() + sp <= ours.successes + 5,
                "{json}"
            );
        }
        failing_blocks += ours.failures;
    }
    // The skewed inputs must exercise every test, or the comparison proves little.
    assert!(
        failing_blocks > 500,
        "skewed inputs failed only {failing_blocks} blocks"
    );
}

#[test]
fn skewed_inputs_exercise_every_fips_test() {
    let dir = temp_dir();
    let mut total = RngtestCounts::default();
    for (name, data) in inputs() {
        let (c, _) = check_counts(&write(dir.path(), name, &data), BLOCKS);
        total.monobit += c.monobit;
        total.poker += c.poker;
        total.runs += c.runs;
        total.long_run += c.long_run;
        total.continuous_run += c.continuous_run;
    }
    for (test, n) in [
        ("monobit", total.monobit),
        ("poker", total.poker),
        ("runs", total.runs),
        ("long_run", total.long_run),
        ("continuous_run", total.continuous_run),
    ] {
        assert!(n > 0, "no input fails {test}: {total:?}");
    }
}

#[test]
fn check_equals_debian_rngtest5_on_random_data() {
    let Some(legacy) = tool("RR_RNGTEST5", "rngtest") else {
        return;
    };
    let dir = temp_dir();
    let mut s = SplitMix(42);
    for seed in 0..3 {
        let data = s.bytes(4 + BLOCKS * BLOCK);
        let file = write(dir.path(), &format!("random-{seed}"), &data);
        assert_eq!(
            check_counts(&file, BLOCKS).0,
            rngtest(&legacy, &file, BLOCKS)
        );
    }
}

#[test]
fn debian_rngtest5_disagrees_only_through_its_known_runs_bug() {
    let Some(legacy) = tool("RR_RNGTEST5", "rngtest") else {
        return;
    };
    let dir = temp_dir();
    let mut disagreements = 0;
    for (name, data) in inputs() {
        let file = write(dir.path(), name, &data);
        let theirs = rngtest(&legacy, &file, BLOCKS);
        assert_eq!(
            theirs,
            legacy_rngtest5(&data, BLOCKS),
            "{name}: rngtest5 vs model of its bug"
        );
        let ours = check_counts(&file, BLOCKS).0;
        if ours != theirs {
            disagreements += 1;
            eprintln!(
                "{name}: check {ours:?}\n{:>w$}rngtest5 {theirs:?}",
                "",
                w = name.len() + 2
            );
        }
    }
    assert!(
        disagreements > 0,
        "the skewed inputs should show the rngtest5 bug at least once"
    );
}

/// rng-tools 5's FIPS bookkeeping, bug for bug. Before the fix, a run that
/// ended was counted in the bucket of the bit that ended it, the run state
/// carried over from the previous block, and the first run of a block could
/// be filed at index -1 of `runs`, which is `poker[15]` in its struct.
fn legacy_rngtest5(data: &[u8], blocks: usize) -> RngtestCounts {
    // fips_ctx_t: int poker[16]; int runs[12]; laid out back to back.
    let mut cells = [0i64; 28];
    const RUNS: i64 = 16;
    let mut ones = 0;
    let mut rlength: i64 = -1;
    let mut current_bit: i64 = 0;
    let mut last_bit: i64 = 0;
    let mut longrun = false;
    let mut last32 = u32::from_le_bytes(data[..4].try_into().unwrap());
    let mut c = RngtestCounts::default();
    for block in data[4..].chunks_exact(BLOCK).take(blocks) {
        let mut failed = [false; 5];
        for word in block.chunks_exact(4) {
            let w = u32::from_le_bytes(word.try_into().unwrap());
            failed[4] |= w == last32;
            last32 = w;
            for &byte in word {
                cells[usize::from(byte >> 4)] += 1;
                cells[usize::from(byte & 15)] += 1;
                for j in (0..8).rev() {
                    current_bit = i64::from((byte >> j) & 1);
                    ones += current_bit;
                    if current_bit != last_bit {
                        let idx = RUNS + rlength.min(5) + 6 * current_bit;
                        cells[idx as usize] += 1;
                        longrun |= rlength >= 25;
                        rlength = 0;
                        last_bit = current_bit;
                    } else {
                        rlength += 1;
                    }
                }
            }
        }
        cells[(RUNS + rlength.min(5) + 6 * current_bit) as usize] += 1;
        failed[3] = longrun || rlength >= 25;
        longrun = false;
        failed[0] = ones >= 10275 || ones <= 9725;
        let poker: i64 = cells[..16].iter().map(|n| n * n).sum();
        failed[1] = !(1_563_176..=1_576_928).contains(&poker);
        const BOUNDS: [(i64, i64); 6] = [
            (2315, 2685),
            (1114, 1386),
            (527, 723),
            (240, 384),
            (103, 209),
            (103, 209),
        ];
        failed[2] = (0..12).any(|i| {
            let (lo, hi) = BOUNDS[i % 6];
            !(lo..=hi).contains(&cells[16 + i])
        });
        for (count, f) in [
            &mut c.monobit,
            &mut c.poker,
            &mut c.runs,
            &mut c.long_run,
            &mut c.continuous_run,
        ]
        .into_iter()
        .zip(failed)
        {
            *count += u64::from(f);
        }
        if failed.iter().any(|&f| f) {
            c.failures += 1;
        } else {
            c.successes += 1;
        }
        cells = [0; 28];
        ones = 0;
        rlength = -1;
        current_bit = 0;
    }
    c
}
