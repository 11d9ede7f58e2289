//! Nothing panics on bad input, and no byte of a failed block is delivered:
//! the public library API and the binary, driven with arbitrary arguments
//! and arbitrary source bytes.

mod common;

use common::*;
use proptest::prelude::*;
use random_refresher::health::{BLOCK_BYTES, Block, Cutoffs, Gate, sp800_90b::APT_WINDOW};

/// Blocks of several kinds, so that every test fails now and then: random,
/// zeros, a copy of an earlier block, random with a stuck stretch.
fn blocks() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec((0u8..4, any::<u64>(), 0usize..BLOCK_BYTES), 1..12).prop_map(|kinds| {
        let mut out: Vec<Vec<u8>> = Vec::new();
        for (kind, seed, at) in kinds {
            let b = match kind {
                0 => good_block(seed),
                1 => vec![0; BLOCK_BYTES],
                2 if !out.is_empty() => out[seed as usize % out.len()].clone(),
                _ => {
                    let mut b = SplitMix(seed).bytes(BLOCK_BYTES);
                    let end = (at + 8).min(BLOCK_BYTES);
                    b[at..end].fill(0x77);
                    b
                }
            };
            out.push(b);
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn cutoffs_never_panic_and_are_meaningful_when_given(h in any::<f64>(), a in any::<f64>()) {
        if let Ok(c) = Cutoffs::new(h, a) {
            prop_assert!(c.rct >= 2);
            prop_assert!(c.apt >= 2 && c.apt <= APT_WINDOW);
        }
    }

    #[test]
    fn the_gate_releases_only_blocks_whose_every_window_passed(stream in blocks()) {
        let mut gate = Gate::new(Cutoffs::new(8.0, -40.0).unwrap());
        let mut out = [0u8; BLOCK_BYTES];
        let mut steps = Vec::new();
        for (i, b) in stream.iter().enumerate() {
            let block: &Block = b.as_slice().try_into().unwrap();
            let step = gate.push(block, &mut out);
            if step.released {
                // Released now: the block before this one, which passed, was
                // not the start-up block, and whose successor (this) passed.
                prop_assert!(i >= 1);
                let (prev, prev_step): (&Vec<u8>, &random_refresher::health::Step) = (&stream[i - 1], &steps[i - 1]);
                prop_assert!(prev_step.verdict.passed() && !prev_step.start_up);
                prop_assert!(step.verdict.passed());
                prop_assert_eq!(&out[..], &prev[..]);
            }
            steps.push(step);
        }
    }
}

/// Values that have broken option parsers before: huge, negative, empty,
/// fractional, non-numeric, unit-suffixed.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        Just("-1".to_string()),
        Just(String::new()),
        Just("18446744073709551615s".to_string()),
        Just("300000000000y".to_string()),
        Just("1e-9".to_string()),
        Just("NaN".to_string()),
        Just("inf".to_string()),
        Just("2G".to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
        "[a-z0-9:=,./-]{0,12}",
    ]
}

const OPTIONS: [&str; 14] = [
    "--batch-size",
    "--interval",
    "--read-timeout",
    "--min-entropy",
    "--alpha-exponent",
    "--entropy-per-byte",
    "--max-failed-cycles",
    "--retry-initial",
    "--retry-max",
    "--sink",
    "--metrics-label",
    "--push-interval",
    "--state-dir",
    "--user",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn the_binary_never_panics_on_arbitrary_options_and_bytes(
        picks in prop::collection::vec((0..OPTIONS.len(), value()), 0..4),
        data in prop::collection::vec(any::<u8>(), 0..3 * BLOCK_BYTES),
        check_blocks in value(),
        probe_timeout in value(),
    ) {
        let dir = temp_dir();
        let src = write(dir.path(), "source", &data);
        let mut args = vec!["once".to_string(), "--source".into(), src.display().to_string(),
                            "--sink".into(), "stdout".into(), "--listen-address".into(), "none".into()];
        for (i, v) in &picks {
            args.push(format!("{}={v}", OPTIONS[*i]));
        }
        let runs = [
            args,
            vec!["check".into(), "--source".into(), src.display().to_string(), format!("--blocks={check_blocks}")],
            vec!["probe".into(), "--url".into(), "http://127.0.0.1:1/healthz".into(), format!("--timeout={probe_timeout}")],
        ];
        for args in runs {
            // In the temporary folder: a generated `file:` sink lands there.
            let out = bin()
                .args(&args)
                .current_dir(dir.path())
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            let err = stderr(&out);
            prop_assert!(matches!(out.status.code(), Some(0..=2)), "{args:?}: {:?} {err}", out.status);
            prop_assert!(!err.contains("panicked"), "{args:?}: {err}");
        }
    }
}
