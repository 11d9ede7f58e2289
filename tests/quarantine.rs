//! The hwrng quarantine against a sysfs tree in a temporary folder (and
//! once against this machine's real one): it holds while the device fails,
//! outlives the process, lifts only when the device passes again, never
//! writes another device's quality, and its marker cannot be redirected.
//! A FIFO stands in for the device: the kernel offers no way to make the
//! virtio-rng emit zeros. `--hwrng` names the FIFO as the hwrng.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const BOUND: Duration = Duration::from_secs(60);
const HELD: &str = "random_refresher_hwrng_quarantined{rng=\"fake_rng.0\"}";

/// A sysfs tree with a current hwrng of quality 700.
fn fake_sysfs(dir: &Path) -> PathBuf {
    let hw = dir.join("sys/class/misc/hw_random");
    std::fs::create_dir_all(&hw).unwrap();
    std::fs::write(hw.join("rng_current"), "fake_rng.0\n").unwrap();
    std::fs::write(hw.join("rng_available"), "fake_rng.0 other_rng.1\n").unwrap();
    std::fs::write(hw.join("rng_quality"), "700\n").unwrap();
    dir.join("sys")
}

fn quality(sys: &Path) -> String {
    std::fs::read_to_string(sys.join("class/misc/hw_random/rng_quality"))
        .unwrap()
        .trim()
        .to_string()
}

/// A FIFO fed `blocks`, then held open (silent) for a long while.
fn fed_fifo(dir: &Path, name: &str, blocks: Vec<Vec<u8>>) -> PathBuf {
    let fifo = dir.join(name);
    mkfifo(&fifo);
    let path = fifo.clone();
    std::thread::spawn(move || {
        let mut w = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        for b in blocks {
            if w.write_all(&b).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_secs(600));
    });
    fifo
}

fn zeros(n: usize) -> Vec<Vec<u8>> {
    vec![vec![0u8; BLOCK]; n]
}

fn good(seed: u64, n: u64) -> Vec<Vec<u8>> {
    (0..n).map(|i| good_block(seed + i)).collect()
}

/// `run` (or another command) on `fifo` as the hwrng, with quarantine on.
fn args(cmd: &str, fifo: &Path, sys: &Path, state: &Path, extra: &[&str]) -> Vec<String> {
    let f = fifo.to_str().unwrap();
    let mut v = vec![cmd.to_string()];
    let fast = if cmd == "once" { fast_once } else { fast };
    v.extend(fast(&[
        "--source",
        f,
        "--hwrng",
        f,
        "--sink",
        "stdout",
        "--quarantine-hwrng",
        "--sys-root",
        sys.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]));
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn daemon(args: Vec<String>) -> Daemon {
    Daemon::start_with(
        bin()
            .args(&args)
            .args(["--listen-address", "127.0.0.1:0"])
            .stdout(std::process::Stdio::null()),
    )
}

fn until(what: &str, d: &Daemon, f: impl FnMut() -> Option<()>) {
    assert!(eventually(BOUND, f).is_some(), "{what}: {}", d.log());
}

#[test]
fn quarantine_holds_while_the_hwrng_fails_and_lifts_after_the_documented_blocks() {
    let dir = temp_dir();
    let (sys, state) = (fake_sysfs(dir.path()), dir.path().join("state"));
    let mut blocks = zeros(30);
    blocks.extend(good(1300, 300));
    let fifo = fed_fifo(dir.path(), "hwrng", blocks);
    let d = daemon(args("run", &fifo, &sys, &state, &["--batch-size", "25000"]));
    until("held", &d, || (d.metric(HELD)? == 1.0).then_some(()));
    assert_eq!(quality(&sys), "0");
    assert!(d.log().contains("QUARANTINE"), "{}", d.log());
    let marker = std::fs::read_to_string(state.join("hwrng-quarantine")).unwrap();
    assert_eq!(marker, "fake_rng.0 700\n");
    until("lifted", &d, || (d.metric(HELD)? == 0.0).then_some(()));
    assert_eq!(quality(&sys), "700");
    assert!(!state.join("hwrng-quarantine").exists());
    // Lifted at the end of the cycle in which the 64th block passed (ten
    // blocks a cycle here).
    let lifted = d.wait_for_log("quarantine lifted").unwrap();
    let blocks = log_number(&lifted, "blocks");
    assert!((64..74).contains(&blocks), "{lifted}");
}

#[test]
fn the_quarantine_outlives_sigterm_max_failed_cycles_and_once_and_a_good_restart_lifts_it() {
    let dir = temp_dir();
    let (sys, state) = (fake_sysfs(dir.path()), dir.path().join("state"));
    // SIGTERM while failing.
    let fifo = fed_fifo(dir.path(), "a", zeros(30));
    let d = daemon(args("run", &fifo, &sys, &state, &[]));
    until("held", &d, || (quality(&sys) == "0").then_some(()));
    drop(d);
    assert_eq!(quality(&sys), "0", "kept at SIGTERM");
    assert!(state.join("hwrng-quarantine").exists());

    // A new run sees the marker: the metric shows the quarantine at once,
    // and --max-failed-cycles ends it with the quarantine kept.
    let fifo = fed_fifo(dir.path(), "b", zeros(30));
    let mut a = args("run", &fifo, &sys, &state, &[]);
    let at = a.iter().position(|x| x == "100000").unwrap();
    a[at] = "3".into();
    let mut d = daemon(a);
    assert!(d.log().contains("earlier run holds") || d.wait_for_log("earlier run holds").is_some());
    assert_eq!(d.metric(HELD), Some(1.0), "{}", d.log());
    let status = wait_bounded(&mut d.child, BOUND).expect("gives up");
    assert_eq!(status.code(), Some(1));
    assert_eq!(quality(&sys), "0", "kept after --max-failed-cycles");

    // `once` on a failing device keeps it too.
    let fifo = fed_fifo(dir.path(), "c", zeros(30));
    let out = bin()
        .args(args("once", &fifo, &sys, &state, &[]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(quality(&sys), "0", "kept after once");

    // A restart with good data restores the recorded quality.
    let fifo = fed_fifo(dir.path(), "d", good(1400, 120));
    let d = daemon(args("run", &fifo, &sys, &state, &[]));
    until("restored", &d, || (quality(&sys) == "700").then_some(()));
    assert!(!state.join("hwrng-quarantine").exists());
}

#[test]
fn a_switch_of_rng_current_never_gets_another_devices_quality() {
    let dir = temp_dir();
    let (sys, state) = (fake_sysfs(dir.path()), dir.path().join("state"));
    let hw = sys.join("class/misc/hw_random");
    let fifo = dir.path().join("hwrng");
    mkfifo(&fifo);
    let d = daemon(args("run", &fifo, &sys, &state, &[]));
    let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    for b in zeros(30) {
        w.write_all(&b).unwrap();
    }
    until("held", &d, || (quality(&sys) == "0").then_some(()));
    // The kernel re-picks the best device after the write of 0: now another
    // one is current, with a quality of its own.
    std::fs::write(hw.join("rng_current"), "other_rng.1\n").unwrap();
    std::fs::write(hw.join("rng_quality"), "512\n").unwrap();
    for b in good(1700, 200) {
        if w.write_all(&b).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    d.wait_for_log("rng_current changed")
        .expect("the switch is logged");
    let other = "random_refresher_hwrng_quarantined{rng=\"other_rng.1\"}";
    until("the new device judged", &d, || {
        (d.metric(other)? == 0.0).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        quality(&sys),
        "512",
        "fake_rng.0's quality written into other_rng.1"
    );
    assert_eq!(d.metric(HELD), Some(1.0));
    let marker = std::fs::read_to_string(state.join("hwrng-quarantine")).unwrap();
    assert_eq!(marker, "fake_rng.0 700\n");
    // The operator's way out refuses while fake_rng.0 is not current, then
    // works once it is.
    drop(d);
    let release = |sys: &Path| {
        bin()
            .args([
                "quarantine",
                "--release",
                "--sys-root",
                sys.to_str().unwrap(),
            ])
            .args(["--state-dir", state.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = release(&sys);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("echo fake_rng.0 >"),
        "{}",
        stderr(&out)
    );
    assert_eq!(quality(&sys), "512");
    std::fs::write(hw.join("rng_current"), "fake_rng.0\n").unwrap();
    std::fs::write(hw.join("rng_quality"), "0\n").unwrap();
    let out = release(&sys);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(quality(&sys), "700");
    assert!(!state.join("hwrng-quarantine").exists());
}

#[test]
fn an_unusable_state_dir_is_said_at_start_and_a_failing_device_is_still_cut_to_zero() {
    let dir = temp_dir();
    let sys = fake_sysfs(dir.path());
    // A file where the state folder should be: no marker can go in it.
    let occupied = dir.path().join("state");
    std::fs::write(&occupied, "not a folder\n").unwrap();
    let state = occupied.join("sub");
    let fifo = fed_fifo(dir.path(), "hwrng", zeros(30));
    let d = daemon(args("run", &fifo, &sys, &state, &[]));
    d.wait_for_log("the quarantine marker cannot be written")
        .expect("said at start");
    until("held", &d, || (quality(&sys) == "0").then_some(()));
    assert_eq!(d.metric(HELD), Some(1.0), "{}", d.log());
    let errors = "random_refresher_hwrng_quarantine_marker_errors_total";
    assert_eq!(d.metric(errors), Some(1.0), "{}", d.log());
    assert!(
        d.log().contains("its marker was not written"),
        "{}",
        d.log()
    );
}

#[test]
fn a_quality_raised_from_outside_while_the_device_fails_is_put_back_to_zero() {
    let dir = temp_dir();
    let (sys, state) = (fake_sysfs(dir.path()), dir.path().join("state"));
    let fifo = fed_fifo(dir.path(), "hwrng", zeros(30));
    let d = daemon(args("run", &fifo, &sys, &state, &[]));
    until("held", &d, || (quality(&sys) == "0").then_some(()));
    // A driver rebind or an operator writes a quality back.
    std::fs::write(sys.join("class/misc/hw_random/rng_quality"), "700\n").unwrap();
    until("held again", &d, || (quality(&sys) == "0").then_some(()));
    assert!(d.log().contains("raised from outside"), "{}", d.log());
    let marker = std::fs::read_to_string(state.join("hwrng-quarantine")).unwrap();
    assert_eq!(marker, "fake_rng.0 700\n", "the original quality is kept");
}

#[test]
fn a_symlink_planted_at_the_marker_is_not_followed() {
    let dir = temp_dir();
    let (sys, state) = (fake_sysfs(dir.path()), dir.path().join("state"));
    std::fs::create_dir_all(&state).unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, state.join("hwrng-quarantine")).unwrap();
    let fifo = fed_fifo(dir.path(), "hwrng", zeros(30));
    let d = daemon(args("run", &fifo, &sys, &state, &[]));
    until("held", &d, || (quality(&sys) == "0").then_some(()));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    let meta = std::fs::symlink_metadata(state.join("hwrng-quarantine")).unwrap();
    assert!(
        meta.file_type().is_file(),
        "the link was replaced by the marker"
    );
}

#[test]
fn quarantine_needs_a_source_that_is_the_hwrng_device() {
    let dir = temp_dir();
    let sys = fake_sysfs(dir.path());
    let src = write(dir.path(), "hwrng", &good_block(1));
    let other = write(dir.path(), "other", &good_block(2));
    // Named hwrng, but not the device --hwrng names: refused, one line.
    let out = run(&[
        "once",
        "--source",
        src.to_str().unwrap(),
        "--hwrng",
        other.to_str().unwrap(),
        "--sink",
        "stdout",
        "--quarantine-hwrng",
        "--sys-root",
        sys.to_str().unwrap(),
        "--state-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("--quarantine-hwrng: no --source is the hwrng device"),
        "{err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.contains("ERROR")).count(),
        1,
        "{err}"
    );
}

#[test]
fn a_retried_source_is_trusted_again_within_the_probe_blocks_at_any_batch_size() {
    let dir = temp_dir();
    let mut blocks = zeros(30);
    blocks.extend(good(1800, 200));
    let fifo = fed_fifo(dir.path(), "source", blocks);
    let f = fifo.to_str().unwrap();
    let d = daemon({
        let mut a = vec!["run".to_string()];
        a.extend(fast(&[
            "--source",
            f,
            "--sink",
            "stdout",
            "--batch-size",
            "25000000",
        ]));
        a
    });
    let up = format!("random_refresher_source_up{{source=\"{f}\"}}");
    d.wait_for_log("failed the health tests too often")
        .expect("fails first");
    until("trusted again", &d, || {
        (d.metric(&up)? == 1.0).then_some(())
    });
    assert!(d.log().contains("trusted again"), "{}", d.log());
}

#[test]
fn a_slow_healthy_source_stays_alive() {
    // 100 B/s: a block every 25 s, while the liveness limit is interval +
    // read timeout + 10 s = 12 s. Progress is each read, not each block.
    let dir = temp_dir();
    let fifo = dir.path().join("slow");
    mkfifo(&fifo);
    let path = fifo.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer_stop = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut w = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        let data = good_block(1900);
        for chunk in data.chunks(10) {
            if writer_stop.load(std::sync::atomic::Ordering::Relaxed) || w.write_all(chunk).is_err()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let f = fifo.to_str().unwrap();
    let d = Daemon::start(&[
        "--source",
        f,
        "--sink",
        "stdout",
        "--interval",
        "1s",
        "--read-timeout",
        "1s",
    ]);
    for _ in 0..16 {
        assert_eq!(d.get("/healthz").0, 200, "{}", d.log());
        std::thread::sleep(Duration::from_secs(1));
    }
    drop(d);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = writer.join();
}

#[test]
fn quarantine_on_this_machines_real_sysfs() {
    if !require_root() {
        return;
    }
    let real = Path::new("/sys/class/misc/hw_random/rng_quality");
    let Ok(before) = std::fs::read_to_string(real) else {
        eprintln!("skipped: no hw_random in sysfs");
        return;
    };
    // Put the value back whatever happens.
    struct Restore(String);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = std::fs::write("/sys/class/misc/hw_random/rng_quality", &self.0);
        }
    }
    let _restore = Restore(before.clone());
    let dir = temp_dir();
    let mut blocks = zeros(30);
    blocks.extend(good(1500, 300));
    let fifo = fed_fifo(dir.path(), "hwrng", blocks);
    let d = daemon(args(
        "run",
        &fifo,
        Path::new("/sys"),
        &dir.path().join("state"),
        &[],
    ));
    let read = || std::fs::read_to_string(real).unwrap();
    until("held", &d, || (read().trim() == "0").then_some(()));
    until("restored", &d, || (read() == before).then_some(()));
}
