//! The min-entropy estimates against an independent computation (a Python
//! script, `tests/reference/min_entropy.py`) and against what crafted
//! streams are known to hold; and `--entropy-per-byte auto` crediting no
//! more than the estimate.

mod common;

use std::process::Command;

use common::*;

const WINDOW: usize = 65536;
const WINDOWS: usize = 3;

/// `check` over `WINDOWS` whole windows of `data`'s blocks (after the four
/// priming bytes), every window estimated; the newest window's estimate.
fn ours(file: &std::path::Path) -> serde_json::Value {
    let blocks = (WINDOWS * WINDOW).div_ceil(BLOCK);
    let window = WINDOW.to_string();
    let extra = [
        "--estimate-window",
        &window,
        "--estimate-every",
        "1",
        "--format",
        "json",
    ];
    let out = check_file(file, blocks, &extra);
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    assert_eq!(v["min_entropy"]["windows"], WINDOWS as u64, "{v}");
    v["min_entropy"]["last"].clone()
}

/// The Python script's estimate of the same window (the newest of the
/// first `WINDOWS` after the priming bytes).
fn reference(file: &std::path::Path) -> serde_json::Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reference/min_entropy.py"
    );
    let out = Command::new("python3")
        .args([script, file.to_str().unwrap(), "4", &WINDOW.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines[WINDOWS - 1].clone()
}

fn compare(name: &str, data: &[u8]) -> serde_json::Value {
    let dir = temp_dir();
    let file = write(dir.path(), name, data);
    let (a, b) = (ours(&file), reference(&file));
    for k in ["mcv", "mmc", "min"] {
        let (x, y) = (a[k].as_f64().unwrap(), b[k].as_f64().unwrap());
        assert!((x - y).abs() < 1e-9, "{name} {k}: ours {x}, reference {y}");
    }
    a
}

fn stream(n: usize, mut byte: impl FnMut(usize, u64) -> u8) -> Vec<u8> {
    let mut s = SplitMix(0xe57);
    (0..n).map(|i| byte(i, s.next_u64())).collect()
}

const LEN: usize = 4 + WINDOWS * WINDOW + BLOCK;

#[test]
fn random_bytes_are_estimated_near_8_bits() {
    let e = compare("random", &stream(LEN, |_, r| r as u8));
    assert!(e["min"].as_f64().unwrap() > 7.4, "{e}");
}

#[test]
fn one_value_at_1_in_16_is_estimated_near_its_4_bits() {
    let e = compare(
        "biased",
        &stream(LEN, |_, r| {
            if r % 16 == 0 {
                0xAA
            } else {
                ((r >> 8) % 255) as u8 + u8::from((r >> 8) % 255 >= 0xAA)
            }
        }),
    );
    let mcv = e["mcv"].as_f64().unwrap();
    // 4 bits, less the 99 % bound (about 0.055 bit at 64 KiB) and the sample's spread.
    assert!(mcv < 4.0 && mcv > 3.88, "{e}");
}

#[test]
fn a_counter_is_caught_by_the_predictor_though_its_counts_are_flat() {
    let mut b = 0u8;
    let e = compare(
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
        e["mcv"].as_f64().unwrap() > 7.4,
        "MCV alone sees nothing: {e}"
    );
    assert!(e["min"].as_f64().unwrap() < 1.0, "{e}");
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
    // Small windows, all estimated: blocks after the first estimate are
    // credited min(1/32, estimate) bits per byte, the ones before nothing.
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
        "--batch-size",
        "250000",
        "--log-level",
        "debug",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bits = credited_bits(&stderr(&out));
    assert_eq!(bits.len(), 1, "{}", stderr(&out));
    assert!(bits[0] > 0 && bits[0] <= 250_000 / 32, "{bits:?}");
}
