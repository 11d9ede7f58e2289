//! The delivery guarantee, byte for byte through the built binary: a byte
//! reaches a sink only after every test window containing it has closed and
//! passed, each sink gets its own bytes, and no byte is delivered twice.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use random_refresher::health::{Block, ContinuousRun, Cutoffs, StreamTests};

/// Whether a block passes every test on its own, from a fresh state.
fn passes_alone(block: &[u8]) -> bool {
    let b: &Block = block.try_into().unwrap();
    StreamTests::new(Cutoffs::new(8.0, -40.0).unwrap(), ContinuousRun::default())
        .test_block(b)
        .passed()
}

/// A good block changed by `edit`, from the first seed for which it still
/// passes every test on its own.
fn edited(seed: u64, edit: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    (seed..)
        .map(|s| {
            let mut b = good_block(s);
            edit(&mut b);
            b
        })
        .find(|b| passes_alone(b))
        .unwrap()
}

/// The stream [start-up, g1, n, next, g4, g5, g6]: `n` and `next` each pass
/// on their own, but a window that starts in `n` fails in `next`. The
/// delivered bytes must be g1, g4, g5: `n` goes with the window that failed.
fn straddling(n: Vec<u8>, next: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
    assert!(passes_alone(&n) && passes_alone(&next));
    let [s, g1, g4, g5, g6] = [300, 301, 304, 305, 306].map(good_block);
    let stream = [s, g1.clone(), n, next, g4.clone(), g5.clone(), g6].concat();
    (stream, [g1, g4, g5].concat())
}

/// Runs `once` with a batch of three blocks to stdout and to a seed file,
/// and checks both hold exactly `expected`; the log must name `test`.
fn delivers_exactly(stream: &[u8], expected: &[u8], test: &str) {
    let dir = temp_dir();
    let src = write(dir.path(), "source", stream);
    let seed = dir.path().join("seed");
    for sink in ["stdout".to_string(), format!("file:{}", seed.display())] {
        let out = run(&[
            "once",
            "--source",
            src.to_str().unwrap(),
            "--sink",
            &sink,
            "--batch-size",
            "7500",
            "--log-level",
            "debug",
        ]);
        assert!(out.status.success(), "{sink}: {}", stderr(&out));
        let got = if sink == "stdout" {
            out.stdout.clone()
        } else {
            std::fs::read(&seed).unwrap()
        };
        assert!(
            got == expected,
            "{test}, {sink}: bytes of a failed window were delivered"
        );
        assert!(
            stderr(&out).contains(test),
            "{test} not named: {}",
            stderr(&out)
        );
    }
}

#[test]
fn an_rct_run_straddling_a_block_edge_drops_both_blocks() {
    // Three equal bytes end `n` and three more start `next`: a run of six,
    // the RCT cutoff at H = 8, that only fails once `next` is read.
    let n = edited(310, |b| {
        b[BLOCK - 4] = 0x00;
        b[BLOCK - 3..].fill(0xA5);
    });
    let next = edited(311, |b| {
        b[..3].fill(0xA5);
        b[3] = 0x00;
    });
    let (stream, expected) = straddling(n, next);
    delivers_exactly(&stream, &expected, "rct");
}

#[test]
fn an_apt_window_straddling_a_block_edge_drops_both_blocks() {
    // APT windows start every 512 bytes from the start-up block's first
    // byte. `n` is stream bytes 5000..7500, so the window at 7168 has 332
    // bytes in `n` and 180 in `next`: 1 + 10 copies of its first byte in
    // `n` and 10 more in `next` reach the cutoff of 19 only in `next`.
    let v = 0x3C;
    let n = edited(320, |b| {
        b[2168] = v;
        for j in 0..10 {
            b[2170 + j * 30] = v;
        }
    });
    let next = edited(321, |b| {
        for j in 0..10 {
            b[j * 15 + 7] = v;
        }
    });
    let (stream, expected) = straddling(n, next);
    delivers_exactly(&stream, &expected, "apt");
}

#[test]
fn a_repeated_word_exactly_at_the_edge_drops_both_blocks() {
    let n = good_block(330);
    let last: [u8; 4] = n[BLOCK - 4..].try_into().unwrap();
    let next = edited(331, |b| b[..4].copy_from_slice(&last));
    let (stream, expected) = straddling(n, next);
    delivers_exactly(&stream, &expected, "continuous_run");
}

#[test]
fn a_block_repeating_the_one_before_drops_both() {
    let n = good_block(340);
    let (stream, expected) = straddling(n.clone(), n);
    delivers_exactly(&stream, &expected, "repeated_block");
}

#[test]
fn two_sinks_receive_disjoint_tested_bytes() {
    let dir = temp_dir();
    let blocks: Vec<Vec<u8>> = (0..4).map(|i| good_block(350 + i)).collect();
    let src = write(dir.path(), "source", &framed(&blocks));
    let seed = dir.path().join("seed");
    let out = run(&[
        "once",
        "--source",
        src.to_str().unwrap(),
        "--sink",
        "stdout",
        "--sink",
        &format!("file:{}", seed.display()),
        "--batch-size",
        "5000",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let seed = std::fs::read(&seed).unwrap();
    assert_eq!(out.stdout, [&blocks[0][..], &blocks[1][..]].concat());
    assert_eq!(seed, [&blocks[2][..], &blocks[3][..]].concat());
}

#[test]
fn a_regular_file_is_never_credited() {
    if !require_kernel_ioctls() {
        return;
    }
    let dir = temp_dir();
    let src = write(dir.path(), "capture", &framed(&[good_block(360)]));
    let out = run(&[
        "once",
        "--source",
        src.to_str().unwrap(),
        "--sink",
        "kernel",
        "--entropy-per-byte",
        "8",
        "--log-level",
        "debug",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("credited_bits=0"), "{}", stderr(&out));
}

#[test]
fn a_closed_stdout_is_a_sink_failure_not_a_success() {
    let dir = temp_dir();
    let src = write(dir.path(), "source", &framed(&[good_block(370)]));
    let out = Command::new("sh")
        .arg("-c")
        .arg("exec \"$0\" once --source \"$1\" --sink stdout >&-")
        .arg(env!("CARGO_BIN_EXE_random-refresher"))
        .arg(&src)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("standard output is closed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn sighup_continues_a_regular_file_where_it_stopped() {
    let dir = temp_dir();
    // More blocks than the repeated-block test remembers, so a replay from
    // the start would slip past it.
    let blocks: Vec<Vec<u8>> = (0..300).map(|i| good_block(10_000 + i)).collect();
    let src = write(dir.path(), "capture", &blocks.concat());
    let mut child = bin()
        .args([
            "run",
            "--listen-address",
            "none",
            "--source",
            src.to_str().unwrap(),
            "--sink",
            "stdout",
            "--batch-size",
            "25000",
            "--interval",
            "50ms",
            "--max-failed-cycles",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut v).unwrap();
        v
    });
    // Signals are handled once the daemon has started.
    std::thread::sleep(Duration::from_millis(150));
    for _ in 0..10 {
        signal(&child, 1);
        std::thread::sleep(Duration::from_millis(40));
    }
    let status = wait_bounded(&mut child, Duration::from_secs(60)).expect("ends at end of file");
    let stdout = reader.join().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(!err.contains("failed the health tests"), "{err}");
    // Every delivered block is one of the file's, in file order, once.
    let mut last = None;
    for chunk in stdout.chunks(BLOCK) {
        let i = blocks
            .iter()
            .position(|b| b == chunk)
            .expect("a block of the file");
        assert!(
            last < Some(i),
            "block {i} after {last:?}: delivered twice or out of order"
        );
        last = Some(i);
    }
    assert!(stdout.len() >= 200 * BLOCK, "only {} bytes", stdout.len());
}

#[test]
fn a_boot_tools_seed_file_holds_its_own_tested_bytes() {
    // As systemd-random-seed's /var/lib/systemd/random-seed or SeedRNG's
    // seed.credit would be kept, beside another sink (here stdout standing
    // in for the kernel): the seed never holds bytes delivered elsewhere.
    let dir = temp_dir();
    let blocks: Vec<Vec<u8>> = (0..2).map(|i| good_block(380 + i)).collect();
    let src = write(dir.path(), "source", &framed(&blocks));
    std::fs::create_dir_all(dir.path().join("seedrng")).unwrap();
    let seed = dir.path().join("seedrng/seed.credit");
    let out = run(&[
        "once",
        "--source",
        src.to_str().unwrap(),
        "--sink",
        "stdout",
        "--sink",
        &format!("file:{}", seed.display()),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let credited = std::fs::read(&seed).unwrap();
    assert_eq!(credited, blocks[1]);
    assert_ne!(credited, out.stdout);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&seed).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn a_seed_file_path_that_is_a_device_is_refused_and_left_as_it_is() {
    use std::os::unix::fs::FileTypeExt;
    if !require_root() {
        return;
    }
    let dir = temp_dir();
    let src = write(dir.path(), "source", &framed(&[good_block(380)]));
    // A node of our own like /dev/null (1:3), so that a regression cannot
    // replace the machine's.
    let null = dir.path().join("null");
    let c = std::ffi::CString::new(null.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3)) };
    assert_eq!(rc, 0, "mknod: {}", std::io::Error::last_os_error());
    let sink = format!("file:{}", null.display());
    let out = run(&["once", "--source", src.to_str().unwrap(), "--sink", &sink]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("--sink {sink}"))
            && stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
    let m = std::fs::symlink_metadata(&null).unwrap();
    assert!(
        m.file_type().is_char_device(),
        "the device node was replaced"
    );
}

/// `once` from `source` to the kernel sink at 8 bits a byte, with `extra`
/// options; what it credited.
fn credited_from(
    source: &str,
    stdin: Stdio,
    feed: Option<(&std::path::Path, Vec<u8>)>,
    extra: &[&str],
) -> (Option<i32>, String) {
    let writer = feed.map(|(fifo, bytes)| {
        let fifo = fifo.to_path_buf();
        std::thread::spawn(move || {
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .open(fifo)
                .and_then(|mut w| std::io::Write::write_all(&mut w, &bytes));
        })
    });
    let out = bin()
        .args([
            "once",
            "--source",
            source,
            "--sink",
            "kernel",
            "--entropy-per-byte",
            "8",
        ])
        .args(["--log-level", "debug"])
        .args(extra)
        .stdin(stdin)
        .output()
        .unwrap();
    if let Some(w) = writer {
        w.join().unwrap();
    }
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_fifo_or_a_pipe_is_credited_only_when_named_by_credit_stream() {
    if !require_kernel_ioctls() {
        return;
    }
    let dir = temp_dir();
    let fifo = dir.path().join("feed");
    mkfifo(&fifo);
    let f = fifo.to_str().unwrap();
    let bytes = || framed(&[good_block(370)]);
    // A FIFO: delivered, credited nothing unless named.
    let (code, log) = credited_from(f, Stdio::null(), Some((&fifo, bytes())), &[]);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("credited_bits=0"), "{log}");
    let (code, log) = credited_from(
        f,
        Stdio::null(),
        Some((&fifo, bytes())),
        &["--credit-stream", f],
    );
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("credited_bits=20000"), "{log}");
    // Standard input from a pipe: the same rule, named as `-`.
    for (extra, credited) in [
        (&[][..], "credited_bits=0"),
        (&["--credit-stream", "-"][..], "credited_bits=20000"),
    ] {
        let mut cat = std::process::Command::new("cat")
            .arg(write(dir.path(), "capture", &bytes()))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pipe = Stdio::from(cat.stdout.take().unwrap());
        let (code, log) = credited_from("-", pipe, None, extra);
        cat.wait().unwrap();
        assert_eq!(code, Some(0), "{log}");
        assert!(log.contains(credited), "{extra:?}: {log}");
    }
    // Naming a stream that is not a source is a configuration error.
    let (code, log) = credited_from(f, Stdio::null(), None, &["--credit-stream", "/run/other"]);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("--credit-stream /run/other: not one of the --source options"),
        "{log}"
    );
}
