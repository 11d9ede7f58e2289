//! `check --jobs N`: the same report for every N, across the edges where the
//! stream is split between threads, and a resident set that does not grow
//! with the input.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

/// Blocks per piece and per chunk and job in `check` (src/check/scan.rs:
/// 100 and 400): the edges between threads' work fall on multiples of
/// 100 for every N.
const CHUNK: usize = 400;
const BLOCKS: usize = 4 * CHUNK * 3 + 7;

/// A stream with failures of every cross-block test placed on the edges
/// where work is split (multiples of CHUNK blocks), and a repeated block
/// copied from one chunk into a later one.
fn edgy_stream() -> Vec<u8> {
    let mut s = SplitMix(0xed9e);
    let mut data = s.bytes(4 + BLOCKS * BLOCK);
    let at = |k: usize| 4 + k * BLOCK;
    for (i, k) in (CHUNK..BLOCKS).step_by(CHUNK).enumerate() {
        let edge = at(k);
        match i % 4 {
            // An RCT run across the edge (six equal bytes at H = 8).
            0 => data[edge - 3..edge + 3].fill(0x42),
            // The continuous run test: the first word repeats the last.
            1 => data.copy_within(edge - 4..edge, edge),
            // An APT window crowded by its first value, across the edge.
            2 => {
                let window = 4 + ((k * BLOCK - 300) / 512) * 512;
                let v = data[window];
                for j in 0..24 {
                    data[window + 1 + j * 20] = v;
                }
            }
            // A long run straddling the edge.
            _ => data[edge - 2..edge + 2].fill(0),
        }
    }
    // A block of one chunk again in the next (within the 256 remembered).
    data.copy_within(at(CHUNK * 2 - 100)..at(CHUNK * 2 - 99), at(CHUNK * 2 + 5));
    data
}

/// The report without its times. One 64 KiB window in 16 is assessed:
/// which windows `auto` assesses depends on how long things took, so only a
/// fixed rule gives the same report twice (and small windows keep the test
/// quick under emulation).
fn report(file: &std::path::Path, jobs: usize) -> serde_json::Value {
    let out = check_file(
        file,
        BLOCKS,
        &[
            "--format",
            "json",
            "--jobs",
            &jobs.to_string(),
            "--estimate-window",
            "64KiB",
            "--estimate-every",
            "16",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", stderr(&out)));
    timeless(v)
}

fn timeless(mut v: serde_json::Value) -> serde_json::Value {
    v.as_object_mut().unwrap().remove("seconds");
    v["min_entropy"].as_object_mut().unwrap().remove("seconds");
    v
}

#[test]
fn every_job_count_gives_the_single_thread_report() {
    let dir = temp_dir();
    let file = write(dir.path(), "edgy", &edgy_stream());
    let one = report(&file, 1);
    for name in ["rct", "apt", "continuous_run", "long_run", "repeated_block"] {
        assert!(
            one[name].as_u64().unwrap() > 0,
            "{name} never failed: {one}"
        );
    }
    assert_eq!(one["blocks"], BLOCKS as u64);
    // 183 whole windows of 65,536 samples: windows 0, 16, ... 176.
    let assessed = one["min_entropy"]["assessed"].as_array().unwrap();
    let windows: Vec<u64> = assessed
        .iter()
        .map(|a| a["window"].as_u64().unwrap())
        .collect();
    assert_eq!(
        windows,
        (0..12).map(|i| i * 16).collect::<Vec<u64>>(),
        "{}",
        one["min_entropy"]
    );
    for jobs in 2..=4 {
        assert_eq!(report(&file, jobs), one, "--jobs {jobs} vs --jobs 1");
    }
}

#[test]
fn a_stream_and_a_file_give_the_same_report_for_every_job_count() {
    // Standard input goes through the reading thread; a file is read by
    // the testing threads themselves.
    let dir = temp_dir();
    let data = edgy_stream();
    let file = write(dir.path(), "edgy", &data);
    let want = report(&file, 1);
    for jobs in [1, 3] {
        let mut child = bin()
            .args(["check", "--source", "-", "--blocks", &BLOCKS.to_string()])
            .args(["--format", "json", "--jobs", &jobs.to_string()])
            .args(["--estimate-window", "64KiB", "--estimate-every", "16"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let bytes = data.clone();
        let feeder = std::thread::spawn(move || input.write_all(&bytes));
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("no JSON ({e}): {}", stderr(&out)));
        let mut v = timeless(v);
        v["source"] = want["source"].clone();
        assert_eq!(v, want, "stdin, --jobs {jobs}");
    }
}

#[test]
fn every_job_count_equals_the_fixed_rngtest() {
    let Some(fixed) = tool("RR_RNGTEST_FIXED", "rngtest-fixed") else {
        return;
    };
    let dir = temp_dir();
    let file = write(dir.path(), "edgy", &edgy_stream());
    let theirs = rngtest(&fixed, &file, BLOCKS);
    for jobs in 1..=4 {
        let ours = fips_counts(&report(&file, jobs));
        assert_eq!(ours, theirs, "--jobs {jobs} vs rngtest");
    }
}

#[test]
fn a_bad_job_count_is_refused_by_name() {
    for bad in ["0", "-1", "257", "many"] {
        let jobs = format!("--jobs={bad}");
        let out = run(&["check", "--source", "rdrand", "--blocks", "1", &jobs]);
        assert_eq!(out.status.code(), Some(2), "--jobs {bad}");
        assert!(stderr(&out).contains("--jobs"), "{}", stderr(&out));
    }
}

/// Runs `cmd` to its end, feeding `stdin_bytes` of generated data if asked;
/// its exit code and the peak resident set in KiB seen while it ran
/// (VmHWM, read until it exits: the kernel's own high-water mark for the
/// process after exec, which the rusage of a child spawned from this large
/// test process would not give).
fn peak_rss(cmd: &mut Command, stdin_bytes: u64) -> (Option<i32>, u64) {
    cmd.stdin(if stdin_bytes > 0 {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn");
    let status_path = format!("/proc/{}/status", child.id());
    let done = std::sync::atomic::AtomicBool::new(false);
    let peak = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let hwm = std::fs::read_to_string(&status_path).ok().and_then(|t| {
                    let line = t.lines().find(|l| l.starts_with("VmHWM:"))?.to_owned();
                    line.split_whitespace().nth(1)?.parse::<u64>().ok()
                });
                peak = peak.max(hwm.unwrap_or(0));
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            peak
        });
        if let Some(mut input) = child.stdin.take() {
            feed(&mut input, stdin_bytes);
        }
        // Wait without reaping, so that /proc stays readable to the end.
        // SAFETY: siginfo_t is plain data, for which all zeros is valid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid siginfo_t to write into; the pid is our child.
        unsafe {
            libc::waitid(
                libc::P_PID,
                child.id(),
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        watcher.join().unwrap()
    });
    let code = child.wait().expect("wait").code();
    (code, peak)
}

/// Writes `n` bytes of noise that passes the tests, varied per megabyte so
/// that the repeated-block test stays quiet.
fn feed(input: &mut impl Write, n: u64) {
    let chunk = SplitMix(0x2_5e9).bytes(1 << 20);
    let mut left = n;
    while left > 0 {
        let len = left.min(chunk.len() as u64) as usize;
        let mut piece = chunk[..len].to_vec();
        piece[..8.min(len)].copy_from_slice(&left.to_le_bytes()[..8.min(len)]);
        if input.write_all(&piece).is_err() {
            break;
        }
        left -= len as u64;
    }
}

// Under qemu-user the resident set is the emulator's as well as ours.
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "measures the emulator, not the binary"
)]
#[test]
fn a_million_blocks_are_checked_in_a_small_resident_set() {
    const BLOCKS: u64 = 1_000_000; // 2.5 GB
    for jobs in [1u64, 2] {
        // As rngtest, without the min-entropy assessment: 16 MiB, plus
        // 1 MB per job in each of the three buffers of a stream's reading
        // thread. With it (the default: the first 1,000,000-sample window
        // and then within its budget), one window's working set more per
        // job assessing, whatever the length of the input.
        for (assessment, extra) in [("off", 0), ("auto", jobs * 64 * 1024)] {
            let mut cmd = bin();
            cmd.args(["check", "--source", "-", "--blocks", &BLOCKS.to_string()])
                .args(["--jobs", &jobs.to_string(), "--format", "json"])
                .args(["--estimate-every", assessment]);
            let (code, kib) = peak_rss(&mut cmd, 4 + BLOCKS * BLOCK as u64);
            assert!(code.is_some(), "check was killed");
            let bound = 16 * 1024 + jobs * 3 * 1000 + extra;
            assert!(
                kib <= bound,
                "--jobs {jobs} --estimate-every {assessment}: peak RSS {kib} KiB > {bound} KiB"
            );
        }
    }
}

#[cfg_attr(
    target_arch = "aarch64",
    ignore = "measures the emulator, not the binary"
)]
#[test]
fn the_kernel_sink_holds_one_copy_of_a_large_batch() {
    if !require_kernel_ioctls() {
        return;
    }
    const BATCH: u64 = 50_000_000;
    let dir = temp_dir();
    // The pool reads a batch's worth at a time: two batches and some.
    let file = write(
        dir.path(),
        "noise",
        &SplitMix(77).bytes(2 * BATCH as usize + 40 * BLOCK),
    );
    let mut cmd = bin();
    cmd.args([
        "once",
        "--sink",
        "kernel",
        "--batch-size",
        "50MB",
        // The batch's copies only: no min-entropy assessment beside them.
        "--estimate-every",
        "off",
        "--source",
    ])
    .arg(&file);
    let (code, kib) = peak_rss(&mut cmd, 0);
    assert_eq!(code, Some(0), "once --sink kernel");
    // One batch and the process itself; a second copy would be 100 MB.
    assert!(
        kib * 1024 < BATCH * 13 / 10,
        "peak RSS {kib} KiB for a {BATCH}-byte batch"
    );
}
