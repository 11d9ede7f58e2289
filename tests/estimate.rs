//! The min-entropy assessment on streams whose content is known, through
//! `check` (NIST's own figures are held in `tests/nist_reference.rs`), and
//! `--entropy-per-byte auto` crediting no more than the assessed value.

mod common;

use common::*;

const WINDOW: usize = 65536;

/// `check` over `data` (a file), every window of `WINDOW` samples
/// assessed; the newest window's assessment.
fn ours(name: &str, data: &[u8]) -> serde_json::Value {
    let dir = temp_dir();
    let file = write(dir.path(), name, data);
    let window = WINDOW.to_string();
    let extra = [
        "--estimate-window",
        &window,
        "--estimate-every",
        "1",
        "--format",
        "json",
    ];
    let out = check_file(&file, 0, &extra);
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    let assessed = v["min_entropy"]["assessed"].as_array().unwrap();
    assert_eq!(
        v["min_entropy"]["windows"],
        (data.len() / WINDOW) as u64,
        "{v}"
    );
    assessed.last().unwrap().clone()
}

fn num(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn stream(n: usize, mut byte: impl FnMut(usize, u64) -> u8) -> Vec<u8> {
    let mut s = SplitMix(0xe57);
    (0..n).map(|i| byte(i, s.next_u64())).collect()
}

const LEN: usize = 3 * WINDOW;

#[test]
fn random_bytes_are_assessed_near_8_bits_and_below_by_the_bitstring() {
    let e = ours("random", &stream(LEN, |_, r| r as u8));
    let assessed = num(&e["assessed"]);
    // At 65,536 samples the 99 % bounds leave full entropy near 6.4 to 7
    // bits per byte, and the bitstring's compression estimate binds.
    assert!(assessed > 6.0 && assessed < 7.5, "{e}");
    assert!(num(&e["literal"]["mcv"]) > 7.4, "{e}");
    assert_eq!(num(&e["alphabet"]), 256.0, "{e}");
    assert!(e["bitstring"].is_object(), "{e}");
}

#[test]
fn one_value_at_1_in_16_is_assessed_at_most_its_4_bits() {
    let e = ours(
        "biased",
        &stream(LEN, |_, r| {
            if r % 16 == 0 {
                0xAA
            } else {
                ((r >> 8) % 255) as u8 + u8::from((r >> 8) % 255 >= 0xAA)
            }
        }),
    );
    let mcv = num(&e["literal"]["mcv"]);
    // 4 bits, less the 99 % bound (about 0.055 bit at 64 KiB) and the sample's spread.
    assert!(mcv < 4.0 && mcv > 3.88, "{e}");
    assert!(num(&e["assessed"]) <= mcv, "{e}");
}

#[test]
fn a_counter_is_caught_by_the_predictors_though_its_counts_are_flat() {
    let mut b = 0u8;
    let e = ours(
        "counter",
        &stream(LEN, |i, r| {
            b = if i % 16 == 0 {
                r as u8
            } else {
                b.wrapping_add(1)
            };
            b
        }),
    );
    assert!(
        num(&e["literal"]["mcv"]) > 7.4,
        "MCV alone sees nothing: {e}"
    );
    // Its true min-entropy is 0.5 bit per byte (8 bits every 16 bytes).
    assert!(num(&e["assessed"]) < 1.0, "{e}");
}

#[test]
fn four_bit_samples_are_assessed_per_sample() {
    let e = ours("nibbles", &stream(LEN, |_, r| (r & 0x0f) as u8));
    // Without --bits-per-sample the bitstring holds four zero bits a byte.
    assert!(num(&e["assessed"]) < 4.5, "{e}");
    let dir = temp_dir();
    let file = write(dir.path(), "nibbles", &stream(LEN, |_, r| (r & 0x0f) as u8));
    let out = check_file(
        &file,
        0,
        &[
            "--bits-per-sample",
            "4",
            "--estimate-every",
            "1",
            "--format",
            "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = &v["min_entropy"]["assessed"][0];
    assert_eq!(a["bits_per_sample"], 4, "{v}");
    assert!(
        num(&a["assessed"]) > 3.0 && num(&a["assessed"]) <= 4.0,
        "{v}"
    );
    let out = check_file(&file, 0, &["--bits-per-sample", "3"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--bits-per-sample 3: a sample holds 4 significant bits"),
        "{}",
        stderr(&out)
    );
}

fn credited_bits(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("sink=kernel") && l.contains("credited_bits="))
        .map(|l| log_number(l, "credited_bits"))
        .collect()
}

#[test]
fn auto_credit_is_nothing_before_the_first_estimate_and_never_above_it() {
    if !require_root() || !random_refresher::source::CpuInstruction::RdRand.supported() {
        return;
    }
    // No window complete within one 2500-byte batch: nothing credited.
    let out = run(&[
        "once",
        "--source",
        "rdrand",
        "--sink",
        "kernel",
        "--entropy-per-byte",
        "auto",
        "--log-level",
        "debug",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(credited_bits(&stderr(&out)), [0], "{}", stderr(&out));
    // Small windows, all assessed: blocks after the first assessment are
    // credited min(1/32, assessed) bits per byte, the ones before nothing.
    let out = run(&[
        "once",
        "--source",
        "rdrand",
        "--sink",
        "kernel",
        "--entropy-per-byte",
        "auto",
        "--estimate-window",
        "4096",
        "--estimate-every",
        "1",
        // Large enough that the first window's assessment, on its own
        // thread, lands well before the batch is complete.
        "--batch-size",
        "25000000",
        "--log-level",
        "debug",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bits = credited_bits(&stderr(&out));
    assert_eq!(bits.len(), 1, "{}", stderr(&out));
    assert!(bits[0] > 0 && bits[0] <= 25_000_000 / 32, "{bits:?}");
}

/// Every value after `key=` in the lines holding `marker`.
fn logged_values(log: &str, marker: &str, key: &str) -> Vec<f64> {
    let at = format!("{key}=");
    log.lines()
        .filter(|l| l.contains(marker))
        .filter_map(|l| l.split(&at).nth(1)?.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn auto_credit_follows_the_assessed_value_where_it_is_below_the_claim() {
    use random_refresher::source::CpuInstruction;
    if !require_root() || !CpuInstruction::RdSeed.supported() {
        return;
    }
    // RDSEED is claimed at 8 bits a byte; at 4096-sample windows the 99 %
    // bounds put its assessed value well below 8, so the assessment is
    // what limits the credit.
    let out = run(&[
        "once",
        "--source",
        "rdseed",
        "--sink",
        "kernel",
        "--entropy-per-byte",
        "auto",
        "--estimate-window",
        "4096",
        "--estimate-every",
        "1",
        "--batch-size",
        "2500000",
        "--log-level",
        "debug",
    ]);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    let assessed = logged_values(&log, "min-entropy assessed", "assessed");
    let highest = assessed.iter().copied().fold(f64::NAN, f64::max);
    assert!(highest > 0.0 && highest < 7.5, "{assessed:?}\n{log}");
    let bits = credited_bits(&log);
    assert_eq!(bits.len(), 1, "{log}");
    assert!(bits[0] > 0, "{log}");
    assert!(
        bits[0] as f64 <= 2_500_000.0 * highest,
        "credited {} bits, above 2,500,000 bytes at the highest assessed {highest}",
        bits[0]
    );
}
