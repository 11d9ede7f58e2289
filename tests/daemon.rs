//! The built binary end to end: file and FIFO sources with good and bad
//! data, the file and stdout sinks byte for byte, failover, signals, and the
//! errors a user sees.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use common::*;

const BOUND: Duration = Duration::from_secs(20);

/// Start-up block, then good a, b, bad (zeros), good c, d, bad (a repeated
/// word), good e, f. A failure drops the block held before it (b, d), so
/// the delivered bytes are a, c, e.
fn mixed_stream() -> (Vec<u8>, Vec<u8>) {
    let [a, b, c, d, e, f] = [1, 2, 3, 4, 5, 6].map(good_block);
    let mut bad_word = good_block(7);
    let w: [u8; 4] = bad_word[100..104].try_into().unwrap();
    bad_word[104..108].copy_from_slice(&w);
    let stream = [
        good_block(8),
        a.clone(),
        b,
        vec![0u8; BLOCK],
        c.clone(),
        d,
        bad_word,
        e.clone(),
        f,
    ]
    .concat();
    (stream, [a, c, e].concat())
}

#[test]
fn once_delivers_exactly_the_passing_blocks_in_order_to_a_seed_file() {
    let dir = temp_dir();
    let (stream, expected) = mixed_stream();
    let src = write(dir.path(), "source", &stream);
    let seed = dir.path().join("seed");
    let out = run(&[
        "once",
        "--source",
        src.to_str().unwrap(),
        "--sink",
        &format!("file:{}", seed.display()),
        "--batch-size",
        "7500",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&seed).unwrap(), expected);
    let mode = std::fs::metadata(&seed).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // No temporary file is left beside it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn stdout_sink_writes_the_passing_blocks_and_nothing_else() {
    let dir = temp_dir();
    let (stream, expected) = mixed_stream();
    let src = write(dir.path(), "source", &stream);
    let out = run(&[
        "once",
        "--source",
        src.to_str().unwrap(),
        "--sink",
        "stdout",
        "--batch-size",
        "7500",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, expected);
}

#[test]
fn a_fifo_source_is_read_through_the_gate() {
    let dir = temp_dir();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let (stream, expected) = mixed_stream();
    let child = bin()
        .args([
            "once",
            "--source",
            fifo.to_str().unwrap(),
            "--sink",
            "stdout",
            "--batch-size",
            "7500",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Open for writing only after the reader is there, and write slowly in
    // pieces, as a device feeding a FIFO would.
    let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    for piece in stream.chunks(1000) {
        w.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(w);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, expected);
}

#[test]
fn a_source_that_ends_fails_the_cycle_and_delivers_nothing() {
    let dir = temp_dir();
    let src = write(dir.path(), "short", &good_block(9)[..2000]);
    let seed = dir.path().join("seed");
    let out = run(&[
        "once",
        "--source",
        src.to_str().unwrap(),
        "--sink",
        &format!("file:{}", seed.display()),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("end of data"), "{err}");
    assert!(err.contains("no tested batch"), "{err}");
    assert!(!seed.exists());
}

#[test]
fn every_block_failing_means_exit_1_and_no_bytes() {
    let dir = temp_dir();
    let src = write(dir.path(), "zeros", &vec![0u8; 30 * BLOCK]);
    let out = run(&[
        "once",
        "--source",
        src.to_str().unwrap(),
        "--sink",
        "stdout",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("failed the health tests too often"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn giving_a_source_up_names_the_failed_tests_and_the_retry_delay() {
    let dir = temp_dir();
    // Every block repeats a 32-bit word inside it: only the continuous run
    // test fails.
    let blocks: Vec<Vec<u8>> = (0..40)
        .map(|i| {
            let mut b = good_block(100 + i);
            let w: [u8; 4] = b[100..104].try_into().unwrap();
            b[104..108].copy_from_slice(&w);
            b
        })
        .collect();
    let src = write(dir.path(), "repeats", &framed(&blocks));
    let out = run(&[
        "once",
        "--source",
        src.to_str().unwrap(),
        "--sink",
        "stdout",
        "--retry-initial",
        "3s",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.contains("failed the health tests too often"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("tests=\"continuous_run:25\""), "{line}");
    assert!(line.contains("retry_in=3s"), "{line}");
}

#[test]
fn fails_over_to_the_next_source_when_the_first_goes_bad() {
    let dir = temp_dir();
    let bad = write(dir.path(), "bad", &vec![0u8; 30 * BLOCK]);
    let good = good_block(5);
    let good_path = write(dir.path(), "good", &framed(std::slice::from_ref(&good)));
    let out = run(&[
        "once",
        "--source",
        bad.to_str().unwrap(),
        "--source",
        good_path.to_str().unwrap(),
        "--sink",
        "stdout",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, good);
}

#[test]
fn environment_variables_configure_like_flags() {
    let dir = temp_dir();
    let good = [good_block(6), good_block(7)].concat();
    let src = write(dir.path(), "good", &framed(&[good_block(6), good_block(7)]));
    let out = bin()
        .arg("once")
        .env("RANDOM_REFRESHER_SOURCE", &src)
        .env("RANDOM_REFRESHER_SINK", "stdout")
        .env("RANDOM_REFRESHER_BATCH_SIZE", "5000")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, good);
}

#[test]
fn invalid_values_name_the_option_and_exit_2() {
    let cases: [(&[&str], &str); 5] = [
        (&["once", "--batch-size", "2501"], "--batch-size"),
        (&["run", "--interval", "0s"], "--interval"),
        (&["once", "--sink", "pool"], "--sink"),
        (&["once", "--entropy-per-byte", "9"], "--entropy-per-byte"),
        (
            &["once", "--source", "/nonexistent/hwrng", "--sink", "stdout"],
            "--source",
        ),
    ];
    for (args, option) in cases {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(option), "{args:?}: {err}");
    }
}

#[test]
fn run_exits_non_zero_with_one_line_when_no_source_opens() {
    let out = run(&["run", "--source", "/nonexistent/hwrng", "--sink", "stdout"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let errors: Vec<_> = err.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains("/nonexistent/hwrng"), "{err}");
}

#[test]
fn run_gives_up_after_max_failed_cycles() {
    let dir = temp_dir();
    let src = write(dir.path(), "one-block", &good_block(8));
    let mut child = bin()
        .args([
            "run",
            "--listen-address",
            "none",
            "--source",
            src.to_str().unwrap(),
            "--sink",
            "stdout",
            "--interval",
            "10ms",
            "--max-failed-cycles",
            "3",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_bounded(&mut child, BOUND).expect("run should give up");
    assert_eq!(status.code(), Some(1));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("3 refresh cycles failed in a row"), "{err}");
    // The end of data is logged once, not once per cycle.
    assert_eq!(err.matches("end of data").count(), 1, "{err}");
}

#[test]
fn sigterm_ends_the_daemon_with_0_while_it_sleeps_and_while_it_reads() {
    let dir = temp_dir();
    // Asleep between cycles.
    let src = write(
        dir.path(),
        "good",
        &[good_block(10), good_block(11)].concat(),
    );
    let mut child = bin()
        .args([
            "run",
            "--listen-address",
            "none",
            "--source",
            src.to_str().unwrap(),
            "--sink",
            "stdout",
            "--interval",
            "1h",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains("refreshing") {
        let n = std::io::Read::read(&mut err, &mut buf).unwrap();
        assert!(n > 0, "daemon ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    std::thread::sleep(Duration::from_millis(200));
    signal(&child, libc_sig::TERM);
    assert_eq!(
        wait_bounded(&mut child, BOUND).map(|s| s.code()),
        Some(Some(0))
    );

    // Blocked on a source that gives nothing.
    let (fifo, writer, release) = silent_fifo(dir.path());
    let mut child = bin()
        .args([
            "run",
            "--listen-address",
            "none",
            "--source",
            fifo.to_str().unwrap(),
            "--sink",
            "stdout",
            "--read-timeout",
            "1h",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, libc_sig::INT);
    assert_eq!(
        wait_bounded(&mut child, BOUND).map(|s| s.code()),
        Some(Some(0))
    );
    release.send(()).unwrap();
    writer.join().unwrap();
}

#[test]
fn a_signal_ends_check_with_a_report_that_names_the_signal() {
    let dir = temp_dir();
    for (sig, name) in [(libc_sig::INT, "SIGINT"), (libc_sig::TERM, "SIGTERM")] {
        let (fifo, writer, release) = silent_fifo(dir.path());
        let mut child = bin()
            .args([
                "check",
                "--source",
                fifo.to_str().unwrap(),
                "--read-timeout",
                "1h",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        signal(&child, sig);
        assert!(
            wait_bounded(&mut child, BOUND).is_some(),
            "{name}: check did not end"
        );
        let out = child.wait_with_output().unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            report.contains(&format!("stopped by a signal ({name})")),
            "{name}: {report}{}",
            stderr(&out)
        );
        assert!(!report.contains("shutdown"), "{report}");
        release.send(()).unwrap();
        writer.join().unwrap();
        std::fs::remove_file(&fifo).unwrap();
    }
}

#[test]
fn a_stalled_source_times_out_instead_of_hanging_once() {
    let dir = temp_dir();
    let (fifo, writer, release) = silent_fifo(dir.path());
    let mut child = bin()
        .args([
            "once",
            "--source",
            fifo.to_str().unwrap(),
            "--sink",
            "stdout",
            "--read-timeout",
            "300ms",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_bounded(&mut child, BOUND).expect("once should time out");
    assert_eq!(status.code(), Some(1));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("no data within 300ms"), "{err}");
    release.send(()).unwrap();
    writer.join().unwrap();
}

#[test]
fn sighup_reopens_sources_and_sigusr1_logs_statistics() {
    let dir = temp_dir();
    let src = write(
        dir.path(),
        "good",
        &[good_block(12), good_block(13), good_block(14)].concat(),
    );
    let mut child = bin()
        .args([
            "run",
            "--listen-address",
            "none",
            "--source",
            src.to_str().unwrap(),
            "--sink",
            "stdout",
            "--interval",
            "1h",
            "--log-format",
            "json",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(err).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let wait_for = |needle: &str| {
        eventually(BOUND, || {
            rx.try_recv().ok().filter(|l: &String| l.contains(needle))
        })
        .unwrap_or_else(|| panic!("no log line with {needle}"))
    };
    wait_for("refreshing");
    signal(&child, libc_sig::HUP);
    wait_for("sources reopened");
    signal(&child, libc_sig::USR1);
    let stats: serde_json::Value =
        serde_json::from_str(&wait_for("statistics")).expect("JSON log line");
    assert_eq!(stats["cycles_ok"], 1);
    // The start-up block, the delivered one and the one that released it.
    assert_eq!(stats["blocks_passed"], 3);
    signal(&child, libc_sig::TERM);
    assert_eq!(
        wait_bounded(&mut child, BOUND).map(|s| s.code()),
        Some(Some(0))
    );
}

#[test]
fn random_bytes_never_reach_the_log() {
    let dir = temp_dir();
    let good = good_block(15);
    let src = write(dir.path(), "good", &framed(std::slice::from_ref(&good)));
    let out = run(&[
        "once",
        "--source",
        src.to_str().unwrap(),
        "--sink",
        "stdout",
        "--log-level",
        "trace",
    ]);
    assert!(out.status.success());
    let err = stderr(&out);
    let hex: String = good[..6].iter().map(|b| format!("{b:02x}")).collect();
    let decimal = format!("{}, {}, {}", good[0], good[1], good[2]);
    assert!(
        !err.to_lowercase().contains(&hex) && !err.contains(&decimal),
        "{err}"
    );
}

#[test]
fn check_reports_text_and_exit_codes() {
    let dir = temp_dir();
    let mut data = vec![1, 2, 3, 4];
    data.extend(good_block(16));
    let file = write(dir.path(), "good", &data);
    let out = run(&["check", "--source", file.to_str().unwrap(), "--blocks", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("FIPS 140-2 successes: 1") && text.contains("FIPS 140-2 failures: 0"),
        "{text}"
    );
    // Asking for more blocks than the file holds reports what was read, and fails.
    let out = run(&[
        "check",
        "--source",
        file.to_str().unwrap(),
        "--blocks",
        "2",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["blocks"], 1);
    assert!(v["ended"].as_str().unwrap().contains("end of data"));
    // Zeros fail.
    let zeros = write(dir.path(), "zeros", &vec![0u8; 4 + BLOCK]);
    assert_eq!(
        run(&[
            "check",
            "--source",
            zeros.to_str().unwrap(),
            "--blocks",
            "1"
        ])
        .status
        .code(),
        Some(1)
    );
}

#[test]
fn sources_lists_the_hwrng_and_cpu_instructions() {
    let out = run(&["sources"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "/dev/hwrng:",
        "rng_current:",
        "rng_available:",
        "rng_quality:",
        "rdseed:",
        "rdrand:",
        "sink kernel:",
        "--quarantine-hwrng:",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    let out = run(&["sources", "--hwrng", "/nonexistent/hwrng"]);
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("/nonexistent/hwrng: not usable: no such device")
    );
}

mod libc_sig {
    pub const HUP: i32 = 1;
    pub const INT: i32 = 2;
    pub const USR1: i32 = 10;
    pub const TERM: i32 = 15;
}

#[test]
fn the_default_listen_address_answers_on_ipv4_and_on_ipv6() {
    let dir = temp_dir();
    let source = good_file(dir.path(), 77, 400);
    let sink = format!("file:{}", dir.path().join("seed").display());
    // `[::]` as the default has it, on a free port.
    let d = Daemon::start_with(
        bin()
            .arg("run")
            .args(["--listen-address", "[::]:0", "--source", &source])
            .args(["--sink", &sink])
            .stdout(Stdio::null()),
    );
    let addr = d
        .addr
        .unwrap_or_else(|| panic!("no address logged:\n{}", d.log()));
    assert!(addr.is_ipv6(), "{addr}");
    for ip in ["127.0.0.1", "::1"] {
        let at = std::net::SocketAddr::new(ip.parse().unwrap(), addr.port());
        assert_eq!(http_get(at, "/healthz").0, 200, "{at}:\n{}", d.log());
    }
}

/// `run --source -` with standard input redirected from `file`, stdout in
/// `out`, one SIGHUP after the first deliveries.
fn run_stdin_with_a_hangup(file: &std::path::Path, out: &std::path::Path) {
    let mut child = bin()
        .args([
            "run",
            "--listen-address",
            "none",
            "--source",
            "-",
            "--sink",
            "stdout",
        ])
        .args(["--interval", "100ms", "--batch-size", "25000"])
        .stdin(std::fs::File::open(file).unwrap())
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let delivered = |n: u64| {
        eventually(Duration::from_secs(20), || {
            (std::fs::metadata(out).ok()?.len() >= n).then_some(())
        })
    };
    assert!(
        delivered(50_000).is_some(),
        "no deliveries before the hangup"
    );
    signal(&child, libc_sig::HUP);
    assert!(
        delivered(150_000).is_some(),
        "no deliveries after the hangup"
    );
    signal(&child, libc_sig::TERM);
    assert!(wait_bounded(&mut child, Duration::from_secs(20)).is_some());
}

#[test]
fn standard_input_is_reopened_where_it_stopped_not_from_its_start() {
    let dir = temp_dir();
    let blocks: Vec<Vec<u8>> = (0..400).map(|i| good_block(40_000 + i)).collect();
    let file = write(dir.path(), "capture", &framed(&blocks));
    let out = dir.path().join("out");
    run_stdin_with_a_hangup(&file, &out);
    let got = std::fs::read(&out).unwrap();
    let mut seen = std::collections::HashSet::new();
    for b in got.chunks(BLOCK) {
        assert!(
            seen.insert(b.to_vec()),
            "a block delivered twice, after {} blocks",
            seen.len()
        );
        assert!(
            blocks.iter().any(|x| x == b),
            "a block that is not in the file"
        );
    }
    // Handed over part-read, standard input goes on from where it was.
    let once = bin()
        .args([
            "once",
            "--source",
            "-",
            "--sink",
            "stdout",
            "--batch-size",
            "2500",
        ])
        .stdin(std::fs::File::open(&file).unwrap())
        .output();
    let shell = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "dd bs={BLOCK} count=10 of=/dev/null 2>/dev/null; exec \"$0\" once --source - --sink stdout --batch-size {BLOCK}"
        ))
        .arg(env!("CARGO_BIN_EXE_random-refresher"))
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert!(
        shell.status.success(),
        "{}",
        String::from_utf8_lossy(&shell.stderr)
    );
    // Blocks 0..9 of the file went to dd; the start-up test takes the
    // 11th, so the first delivered is the file's 12th: blocks[10].
    assert_eq!(shell.stdout, blocks[10], "not read from where dd stopped");
    assert_eq!(once.unwrap().stdout, blocks[0]);
}
