//! This machine's real parts: /dev/hwrng (a virtio-rng, root only, about
//! 10 KB/s, so reads stay small), the kernel's ioctls, and the CPU's random
//! number instructions (RDSEED/RDRAND, or RNDRRS/RNDR under qemu-aarch64).

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
    if !require_kernel_ioctls() {
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

/// The CPU's random number instructions this machine has, as the kernel
/// reports them: cpuinfo flags on x86-64, HWCAP2_RNG on AArch64 (under
/// qemu-user, from the emulated CPU).
fn cpu_sources() -> (Vec<&'static str>, Vec<&'static str>) {
    #[cfg(target_arch = "x86_64")]
    {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
        let flags: Vec<&str> = cpuinfo.split_whitespace().collect();
        let has: Vec<_> = ["rdseed", "rdrand"]
            .into_iter()
            .filter(|f| flags.contains(f))
            .collect();
        (has, vec!["rndrrs", "rndr"])
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: getauxval only reads this process's auxiliary vector.
        let rng = unsafe { libc::getauxval(libc::AT_HWCAP2) } & (1 << 16) != 0;
        let has = if rng { vec!["rndrrs", "rndr"] } else { vec![] };
        (has, vec!["rdseed", "rdrand"])
    }
}

#[test]
fn cpu_sources_deliver_bytes_that_pass_rngtest() {
    let (has, _) = cpu_sources();
    let rngtest = tool("RR_RNGTEST_FIXED", "rngtest-fixed");
    for instr in has {
        let mut once = bin()
            .args([
                "once",
                "--source",
                instr,
                "--sink",
                "stdout",
                "--batch-size",
                "25000",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut once.stdout.take().unwrap(), &mut bytes).unwrap();
        let status = once.wait().unwrap();
        assert!(status.success(), "{instr}");
        assert_eq!(bytes.len(), 25000, "{instr}");
        let Some(rngtest) = &rngtest else { continue };
        let dir = temp_dir();
        // rngtest primes itself with four bytes: give it those and 9 blocks.
        let file = write(dir.path(), instr, &bytes[..4 + 9 * BLOCK]);
        let counts = common::rngtest(rngtest, &file, 9);
        assert_eq!(
            (counts.successes, counts.failures),
            (9, 0),
            "{instr}: {counts:?}"
        );
    }
}

#[test]
fn a_cpu_source_this_machine_lacks_is_refused_naming_what_it_offers() {
    let (has, foreign) = cpu_sources();
    for instr in foreign {
        let out = run(&["check", "--source", instr, "--blocks", "1"]);
        assert_eq!(out.status.code(), Some(2), "{instr}");
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("not on this architecture"), "{err}");
        for offered in &has {
            assert!(err.contains(offered), "{instr}: {offered} not named: {err}");
        }
    }
    let out = run(&["sources"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for instr in has {
        assert!(text.contains(&format!("{instr}: usable")), "{text}");
    }
}
