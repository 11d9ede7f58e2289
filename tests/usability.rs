//! What a new user meets first: paths as they type them, standard input,
//! log lines that are real JSON, one line per failure, a quiet end when the
//! reader of a report goes away.

mod common;
#[path = "../examples/gen-assets.rs"]
mod gen_assets;

use std::process::Stdio;

use common::*;

#[test]
fn check_takes_a_bare_relative_path_and_standard_input() {
    let dir = temp_dir();
    let mut data = vec![1, 2, 3, 4];
    data.extend(good_block(40));
    write(dir.path(), "big.bin", &data);
    let out = bin()
        .args([
            "check", "--source", "big.bin", "--blocks", "1", "--format", "json",
        ])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["fips_successes"], 1);

    // `-` reads standard input, as `rngtest < file` does.
    let out = bin()
        .args(["check", "--source", "-", "--blocks", "1"])
        .stdin(std::fs::File::open(dir.path().join("big.bin")).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FIPS 140-2 successes: 1"));

    // Piped data without `--source -` is not read, and the user is told.
    let out = bin()
        .args(["check", "--source", "/nonexistent/x", "--blocks", "1"])
        .stdin(std::fs::File::open(dir.path().join("big.bin")).unwrap())
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("use --source - to test what is piped in"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_tests_every_source_in_turn_and_reports_each() {
    let dir = temp_dir();
    let mut good = vec![1, 2, 3, 4];
    good.extend(good_block(45));
    let a = write(dir.path(), "a", &good);
    let b = write(dir.path(), "b", &vec![0u8; 4 + BLOCK]);
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let out = run(&[
        "check", "--source", a, "--source", b, "--blocks", "1", "--format", "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the second source fails: {}",
        stderr(&out)
    );
    let reports: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 2);
    assert_eq!(
        (
            reports[0]["source"].as_str(),
            reports[0]["fips_successes"].as_u64()
        ),
        (Some(a), Some(1))
    );
    assert_eq!(
        (
            reports[1]["source"].as_str(),
            reports[1]["fips_failures"].as_u64()
        ),
        (Some(b), Some(1))
    );
    let text =
        String::from_utf8(run(&["check", "--source", a, "--source", b, "--blocks", "1"]).stdout)
            .unwrap();
    assert_eq!(text.matches("source: ").count(), 2, "{text}");
}

#[test]
fn json_log_fields_are_typed_values_not_debug_strings() {
    let dir = temp_dir();
    let src = write(dir.path(), "good", &framed(&[good_block(41)]));
    let out = run(&[
        "once",
        "--source",
        src.to_str().unwrap(),
        "--sink",
        "stdout",
        "--log-format",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stderr(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let starting = lines
        .iter()
        .find(|v| v["message"] == "starting")
        .expect("a starting line");
    for (field, is_number) in [
        ("entropy_avail", true),
        ("poolsize", true),
        ("rng_quality", true),
        ("rct_cutoff", true),
        ("rng_current", false),
        ("sources", false),
        ("sinks", false),
    ] {
        let v = &starting[field];
        let ok = if is_number {
            v.is_number()
        } else {
            v.is_string()
        };
        assert!(ok || v.is_null(), "{field} is {v} in {starting}");
        if let Some(s) = v.as_str() {
            assert!(!s.contains("Some(") && !s.starts_with('['), "{field}: {s}");
        }
    }
    assert_eq!(starting["sources"], src.to_str().unwrap());
    let dropped = lines
        .iter()
        .find(|v| v["message"] == "privileges dropped")
        .unwrap();
    // What is kept is named as kept, not as what was dropped.
    assert!(dropped["capabilities_kept"].is_string(), "{dropped}");
    assert!(dropped.get("capabilities").is_none(), "{dropped}");
    assert!(
        dropped.get("uid").is_none() || dropped["uid"].is_number(),
        "{dropped}"
    );
    // Every field of every line is a number, string, boolean or null.
    for v in &lines {
        for (k, f) in v.as_object().unwrap() {
            assert!(!f.is_object() && !f.is_array(), "{k} in {v}");
            if let Some(s) = f.as_str() {
                assert!(!s.starts_with("Some(") && s != "None", "{k} in {v}");
            }
        }
    }
}

#[test]
fn no_source_at_all_is_one_error_line_and_no_warning() {
    let out = run(&[
        "once",
        "--source",
        "/nonexistent/a",
        "--source",
        "/nonexistent/b",
        "--sink",
        "stdout",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let loud: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert_eq!(loud.len(), 1, "{err}");
    assert!(
        loud[0].contains("/nonexistent/a") && loud[0].contains("/nonexistent/b"),
        "{err}"
    );
    // This is not a container: no advice about `docker run --device`.
    if !std::path::Path::new("/.dockerenv").exists() {
        assert!(!loud[0].contains("--device"), "{err}");
    }
}

#[test]
fn a_reader_that_goes_away_ends_a_report_quietly() {
    let dir = temp_dir();
    let mut data = vec![1, 2, 3, 4];
    data.extend((0..3).flat_map(|i| good_block(42 + i)));
    let file = write(dir.path(), "good", &data);
    let f = file.to_str().unwrap();
    for args in [&["sources"][..], &["check", "--source", f, "--blocks", "3"]] {
        // The read end is closed before the command writes: EPIPE for sure.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = bin()
            .args(args)
            .stdout(writer)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(
            !stderr(&out).contains("Broken pipe"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn once_refuses_run_only_options_with_one_line_and_exit_2() {
    let dir = temp_dir();
    let src = write(dir.path(), "good", &framed(&[good_block(43)]));
    let src = src.to_str().unwrap();
    for (option, value) in [
        ("--interval", "5m"),
        ("--max-failed-cycles", "3"),
        ("--listen-address", "127.0.0.1:9"),
        ("--push-interval", "1m"),
    ] {
        let out = run(&["once", "--source", src, "--sink", "stdout", option, value]);
        assert_eq!(out.status.code(), Some(2), "{option}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{option}: delivered");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(option) && err.contains("for `run`"), "{err}");
    }
    // From the environment they are let be: a CronJob's `once` may share
    // the DaemonSet's environment.
    let out = bin()
        .args(["once", "--source", src, "--sink", "stdout"])
        .env("RANDOM_REFRESHER_INTERVAL", "5m")
        .env("RANDOM_REFRESHER_LISTEN_ADDRESS", "none")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn the_man_page_has_exit_status_and_signals_and_names_no_page_it_lacks() {
    let page = String::from_utf8(gen_assets::man_page().unwrap()).unwrap();
    let text = page.replace("\\-", "-");
    for section in [".SH \"EXIT STATUS\"", ".SH \"SIGNALS\"", ".SH COMMANDS"] {
        assert!(text.contains(section), "{section} missing:\n{text}");
    }
    let exit = &text[text.find(".SH \"EXIT STATUS\"").unwrap()..];
    for code in [0, 1, 2] {
        assert!(
            exit.contains(&format!(".TP\n\\fB{code}\\fR\n")),
            "exit {code}:\n{exit}"
        );
    }
    let signals = &text[text.find(".SH \"SIGNALS\"").unwrap()..];
    for signal in ["SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1"] {
        assert!(signals.contains(signal), "{signal}:\n{signals}");
    }
    // Every page it refers to exists outside this package: none of the
    // random-refresher-run(1) kind, which the package does not ship.
    let mut refs = Vec::new();
    for (at, _) in text.match_indices('(') {
        let rest = &text[at + 1..];
        if rest.len() > 1 && rest.as_bytes()[0].is_ascii_digit() && rest.as_bytes()[1] == b')' {
            let name = text[..at]
                .rsplit(|c: char| c.is_whitespace() || c == ';')
                .next()
                .unwrap();
            refs.push(format!("{name}({})", &rest[..1]));
        }
    }
    assert_eq!(refs, ["random(4)"], "{text}");
    // Each command still has its options.
    for command in ["RUN", "ONCE", "CHECK", "SOURCES", "PROBE", "QUARANTINE"] {
        assert!(
            text.contains(&format!(".SH \"RANDOM-REFRESHER {command}\"")),
            "{command}"
        );
    }
    assert!(text.contains("--quarantine-hwrng") && text.contains("--estimate-window"));
}

/// `good` random blocks with `damaged` of them short of 1-bits (each fails
/// monobit, and only FIPS 140-2): a file, after the 4 priming bytes.
fn with_damaged_blocks(dir: &std::path::Path, good: usize, damaged: usize) -> std::path::PathBuf {
    let mut blocks: Vec<Vec<u8>> = (0..good + damaged)
        .map(|i| good_block(7000 + i as u64))
        .collect();
    for b in blocks
        .iter_mut()
        .step_by((good + damaged) / damaged.max(1))
        .take(damaged)
    {
        // Clear the lowest set bit of 400 bytes spread over the block:
        // about 9600 ones, below monobit's 9725, and no long repeats.
        for byte in b.iter_mut().step_by(6).take(400) {
            *byte &= byte.wrapping_sub(1);
        }
    }
    let mut data = vec![0x5a, 0xa5, 0x3c, 0xc3];
    data.extend(blocks.concat());
    write(dir, "stream", &data)
}

#[test]
fn the_verdict_passes_a_good_run_with_chance_failures_and_fails_a_bad_one() {
    let dir = temp_dir();
    let good = with_damaged_blocks(dir.path(), 2000, 1);
    let check = |file: &std::path::Path, extra: &[&str]| {
        let out = check_file(
            file,
            0,
            &[&["--estimate-every", "off", "--format", "json"], extra].concat(),
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), v)
    };
    // rngtest's rule: one failing block fails the run.
    let (code, v) = check(&good, &[]);
    assert!(v["fips_failures"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["verdict"]["passed"], true, "{v}");
    // The verdict: a failure or two in 2001 blocks is what good data does.
    assert_eq!(check(&good, &["--verdict"]).0, Some(0));
    // One block in fifty failing is not.
    let bad = with_damaged_blocks(dir.path(), 980, 20);
    let (code, v) = check(&bad, &["--verdict"]);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["verdict"]["passed"], false, "{v}");
    assert!(
        v["verdict"]["fips_140_2"]["p_value"].as_f64().unwrap() < 1e-10,
        "{v}"
    );
    let out = check_file(&bad, 0, &["--verdict", "--false-alarm-bound", "2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`2` is not a probability from 1e-12 to 0.5"),
        "{}",
        stderr(&out)
    );
}
