//! The min-entropy assessment against NIST's reference implementation:
//! every estimator on both tracks, H_original, H_bitstring and the
//! assessed value equal what `ea_non_iid` printed for the same input, to
//! within 1e-6 bits per sample.
//!
//! NIST's figures are pinned in `tests/reference/ea_non_iid.json`, with the
//! tool's commit and how they were made (`tests/reference/pin_ea_non_iid.py`);
//! the inputs are regenerated here by `tests/reference/inputs.rs`, and their
//! SHA-256 is checked against the hash NIST's tool saw, so the figures and
//! the inputs cannot drift apart. The one input that cannot be regenerated,
//! a capture of a real virtio-rng, is a file beside them.
//!
//! In a debug build only the 65,536-sample inputs are assessed (the
//! 1,000,000-sample ones take minutes unoptimised); `cargo test --release`,
//! as the test command runs it, assesses them all.

mod common;

#[path = "reference/inputs.rs"]
mod inputs;

use std::path::Path;

use random_refresher::health::entropy::{self, Assessment, Estimates, Estimator};
use serde_json::Value;

const TOLERANCE: f64 = 1e-6;
const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference");

fn fixture() -> Value {
    let text = std::fs::read_to_string(Path::new(REFERENCE).join("ea_non_iid.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The bytes NIST's tool assessed under `name`, given `bits` per sample.
fn input(name: &str, bits: u64, generated: &[inputs::Input]) -> Vec<u8> {
    if let Some(i) = generated.iter().find(|i| i.name == name) {
        assert_eq!(u64::from(i.bits_per_sample), bits, "{name}");
        return i.bytes.clone();
    }
    let capture = std::fs::read(Path::new(REFERENCE).join("hwrng-1m.bin")).unwrap();
    match name {
        "hwrng-1m" => capture,
        "hwrng-64k" => capture[..65536].to_vec(),
        _ => panic!("no input named {name}"),
    }
}

fn sha256(bytes: &[u8]) -> String {
    let dir = common::temp_dir();
    let file = common::write(dir.path(), "input", bytes);
    let out = std::process::Command::new("sha256sum")
        .arg(&file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn close(name: &str, what: &str, ours: Option<f64>, nist: &Value) {
    match (ours, nist.as_f64()) {
        (None, None) => {}
        (Some(a), Some(b)) => assert!(
            (a - b).abs() <= TOLERANCE,
            "{name} {what}: ours {a:.17}, NIST {b:.17}, off by {:e}",
            (a - b).abs()
        ),
        (a, _) => panic!("{name} {what}: ours {a:?}, NIST {nist}"),
    }
}

fn compare_track(name: &str, track: &str, ours: Option<&Estimates>, nist: &Value) {
    if nist.is_null() {
        assert!(
            ours.is_none(),
            "{name}: NIST has no {track} track, we have one"
        );
        return;
    }
    let ours = ours.unwrap_or_else(|| panic!("{name}: no {track} track"));
    for &e in Estimator::ALL {
        close(name, &format!("{track} {e}"), ours.get(e), &nist[e.name()]);
    }
}

fn compare(name: &str, a: &Assessment, nist: &Value) {
    compare_track(name, "literal", Some(&a.literal), &nist["literal"]);
    compare_track(name, "bitstring", a.bitstring.as_ref(), &nist["bitstring"]);
    close(name, "H_original", Some(a.h_original), &nist["h_original"]);
    close(name, "H_bitstring", a.h_bitstring, &nist["h_bitstring"]);
    close(name, "assessed", Some(a.assessed), &nist["assessed"]);
}

/// The pinned inputs this build assesses.
fn cases() -> Vec<(Value, Vec<u8>)> {
    let f = fixture();
    let generated = inputs::all();
    let cases: Vec<(Value, Vec<u8>)> = f["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !cfg!(debug_assertions) || c["samples"].as_u64() < Some(1_000_000))
        .map(|c| {
            let name = c["name"].as_str().unwrap();
            let bytes = input(name, c["bits_per_sample"].as_u64().unwrap(), &generated);
            assert_eq!(bytes.len() as u64, c["samples"].as_u64().unwrap(), "{name}");
            assert_eq!(
                sha256(&bytes),
                c["sha256"].as_str().unwrap(),
                "{name}: not the input NIST saw"
            );
            (c.clone(), bytes)
        })
        .collect();
    assert!(cases.len() >= 12, "only {} pinned inputs", cases.len());
    cases
}

#[test]
fn every_estimator_equals_nist_on_every_pinned_input() {
    for (case, bytes) in cases() {
        let name = case["name"].as_str().unwrap();
        let bits = case["bits_per_sample"].as_u64().unwrap() as u8;
        let a = entropy::assess_with(&bytes, bits, 2).unwrap();
        assert_eq!(
            a.alphabet as u64,
            case["alphabet"].as_u64().unwrap(),
            "{name}"
        );
        compare(name, &a, &case);
    }
}

#[test]
fn check_reports_the_assessed_value_nist_reports() {
    let dir = common::temp_dir();
    for (case, bytes) in cases() {
        let name = case["name"].as_str().unwrap();
        let bits = case["bits_per_sample"].to_string();
        let file = common::write(dir.path(), name, &bytes);
        let out = common::run(&[
            "check",
            "--source",
            file.to_str().unwrap(),
            "--estimate-every",
            "1",
            "--bits-per-sample",
            &bits,
            "--format",
            "json",
        ]);
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{name}: {e}: {}", common::stderr(&out)));
        let assessed = &report["min_entropy"]["assessed"];
        assert_eq!(
            assessed.as_array().map(Vec::len),
            Some(1),
            "{name}: {report}"
        );
        let window = &assessed[0];
        assert_eq!(
            window["samples"], case["samples"],
            "{name}: the whole file, one window"
        );
        close(
            name,
            "check's assessed",
            window["assessed"].as_f64(),
            &case["assessed"],
        );
        for &e in Estimator::ALL {
            close(
                name,
                &format!("check's literal {e}"),
                window["literal"][e.name()].as_f64(),
                &case["literal"][e.name()],
            );
        }
    }
}
