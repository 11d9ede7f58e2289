//! This machine's real parts: /dev/hwrng (a virtio-rng, root only, about
//! 10 KB/s, so reads stay small), the kernel's ioctls, RDRAND and RDSEED.

mod common;

use std::process::{Command, Stdio};

use common::*;

#[test]
fn hwrng_batch_passes_rngtest() {
    if !require_root() {
        return;
    }
    let Some(rngtest) = tool("RR_RNGTEST5", "rngtest") else {
        return;
    };
    let mut once = bin()
        .args([
            "once",
            "--source",
            "/dev/hwrng",
            "--sink",
            "stdout",
            "--batch-size",
            "27500",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let check = Command::new(rngtest)
        .args(["-c", "10"])
        .stdin(once.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(once.wait().unwrap().success());
    let counts = parse_rngtest(&String::from_utf8_lossy(&check.stderr));
    assert!(check.status.success(), "{counts:?}");
    assert_eq!(counts.successes, 10);
}

#[test]
fn kernel_sink_credits_and_reseeds_as_root() {
    if !require_root() {
        return;
    }
    let out = run(&[
        "once",
        "--source",
        "/dev/hwrng",
        "--sink",
        "kernel",
        "--log-level",
        "debug",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("delivered one tested batch to each sink bytes=2500"));
}

/// Runs the binary as root without CAP_SYS_ADMIN in any set.
fn without_sys_admin(args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args([
            "--bounding-set",
            "-sys_admin",
            "--inh-caps",
            "-sys_admin",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_random-refresher"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

#[test]
fn kernel_sink_without_cap_sys_admin_fails_with_one_clear_line_and_mix_works() {
    if !require_root() {
        return;
    }
    let dir = temp_dir();
    let src = write(dir.path(), "good", &framed(&[good_block(20)]));
    let src = src.to_str().unwrap();
    let out = without_sys_admin(&["once", "--source", src, "--sink", "kernel"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    let errors: Vec<_> = err.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].contains("CAP_SYS_ADMIN") && errors[0].contains("--sink mix"),
        "{err}"
    );

    let out = without_sys_admin(&["once", "--source", src, "--sink", "mix"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn rdrand_and_rdseed_sources_deliver_tested_bytes() {
    for (instr, flag) in [("rdrand", "rdrand"), ("rdseed", "rdseed")] {
        let supported = std::fs::read_to_string("/proc/cpuinfo")
            .unwrap()
            .split_whitespace()
            .any(|w| w == flag);
        let out = run(&[
            "once",
            "--source",
            instr,
            "--sink",
            "stdout",
            "--batch-size",
            "25000",
        ]);
        if supported {
            assert!(out.status.success(), "{instr}: {}", stderr(&out));
            assert_eq!(out.stdout.len(), 25000);
        } else {
            assert_eq!(out.status.code(), Some(2), "{instr}");
            assert!(stderr(&out).contains("does not have the instruction"));
        }
    }
}
