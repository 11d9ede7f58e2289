//! Faults caused by real means: a FIFO whose writer vanishes, a file that is
//! truncated or removed, a device node that disappears, a source that turns
//! into zeros or repeats itself; for each, the log line, the metric, the
//! readiness and that no failing byte is delivered. The quarantine has its
//! own file, `quarantine.rs`.

mod common;

use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::process::Stdio;
use std::time::Duration;

use common::*;

const BOUND: Duration = Duration::from_secs(60);

fn start(args: Vec<String>) -> Daemon {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::start(&refs)
}

#[test]
fn a_fifo_whose_writer_vanishes_fails_the_source_until_a_writer_returns() {
    let dir = temp_dir();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let f = fifo.to_str().unwrap();
    let d = start(fast(&["--source", f, "--sink", "stdout"]));
    let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    for i in 0..4 {
        w.write_all(&good_block(900 + i)).unwrap();
    }
    assert!(
        eventually(BOUND, || (d.get("/readyz").0 == 200).then_some(())).is_some(),
        "{}",
        d.log()
    );
    drop(w);
    let up = format!("random_refresher_source_up{{source=\"{f}\"}}");
    assert!(
        eventually(BOUND, || d.metric(&up).filter(|v| *v == 0.0)).is_some(),
        "{}",
        d.log()
    );
    assert_eq!(d.get("/readyz").0, 503);
    assert!(
        d.metric(&format!(
            "random_refresher_source_read_errors_total{{source=\"{f}\",kind=\"eof\"}}"
        ))
        .unwrap()
            >= 1.0
    );
    assert!(
        d.log().contains("the FIFO's writer went away"),
        "{}",
        d.log()
    );
    let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let feeder = std::thread::spawn(move || {
        for i in 0..100 {
            if w.write_all(&good_block(950 + i)).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    assert!(
        eventually(BOUND, || d.metric(&up).filter(|v| *v == 1.0)).is_some(),
        "{}",
        d.log()
    );
    assert_eq!(d.get("/readyz").0, 200);
    drop(d);
    let _ = feeder.join();
}

#[test]
fn a_truncated_or_removed_file_fails_the_source_and_the_daemon_lives_on() {
    let dir = temp_dir();
    let data: Vec<u8> = (0..3).flat_map(|i| good_block(1100 + i)).collect();
    let path = write(dir.path(), "source", &data);
    let p = path.to_str().unwrap();
    let d = start(fast(&["--source", p, "--sink", "stdout"]));
    assert!(eventually(BOUND, || (d.get("/readyz").0 == 200).then_some(())).is_some());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(10)
        .unwrap();
    let eof = format!("random_refresher_source_read_errors_total{{source=\"{p}\",kind=\"eof\"}}");
    assert!(
        eventually(BOUND, || d.metric(&eof).filter(|v| *v >= 1.0)).is_some(),
        "{}",
        d.log()
    );
    std::fs::remove_file(&path).unwrap();
    signal(&d.child, 1); // SIGHUP: reopen
    let gone =
        format!("random_refresher_source_read_errors_total{{source=\"{p}\",kind=\"not_found\"}}");
    assert!(
        eventually(BOUND, || d.metric(&gone).filter(|v| *v >= 1.0)).is_some(),
        "{}",
        d.log()
    );
    assert_eq!(d.get("/healthz").0, 200, "the loop lives on");
    assert_eq!(d.get("/readyz").0, 503);
}

#[test]
fn a_device_node_that_disappears_and_comes_back() {
    if !require_root() {
        return;
    }
    let dir = temp_dir();
    let node = dir.path().join("hwrng");
    let mknod = || {
        // The real virtio-rng: character device 10:183.
        let ok = std::process::Command::new("mknod")
            .arg(&node)
            .args(["c", "10", "183"])
            .status()
            .unwrap()
            .success();
        assert!(
            ok && std::fs::metadata(&node)
                .unwrap()
                .file_type()
                .is_char_device()
        );
    };
    mknod();
    let n = node.to_str().unwrap();
    let d = start(fast(&["--source", n, "--sink", "stdout"]));
    assert!(
        eventually(BOUND, || (d.get("/readyz").0 == 200).then_some(())).is_some(),
        "{}",
        d.log()
    );
    std::fs::remove_file(&node).unwrap();
    signal(&d.child, 1);
    // The node is the kernel's hwrng device (10:183), so its series is
    // named /dev/hwrng, whatever path reaches it.
    let up = "random_refresher_source_up{source=\"/dev/hwrng\"}";
    assert!(
        eventually(BOUND, || d.metric(up).filter(|v| *v == 0.0)).is_some(),
        "{}",
        d.log()
    );
    assert!(d.log().contains("no such file or device"));
    mknod();
    assert!(
        eventually(BOUND, || d.metric(up).filter(|v| *v == 1.0)).is_some(),
        "{}",
        d.log()
    );
}

/// A stream that turns bad mid-way: the output holds exactly the good
/// blocks whose every window passed (the block just before the bad stretch
/// is dropped with it).
fn only_good_blocks_pass(bad: Vec<u8>, test: &str) {
    let dir = temp_dir();
    let good: Vec<Vec<u8>> = (0..6).map(|i| good_block(1200 + i)).collect();
    let stream = [
        good_block(1299),
        good[0].clone(),
        good[1].clone(),
        good[2].clone(),
        bad,
        good[3].clone(),
        good[4].clone(),
        good[5].clone(),
    ]
    .concat();
    let delivered = [&good[0], &good[1], &good[3], &good[4]]
        .map(|b| b.as_slice())
        .concat();
    let src = write(dir.path(), "source", &stream);
    let out = run(&[
        "once",
        "--source",
        src.to_str().unwrap(),
        "--sink",
        "stdout",
        "--batch-size",
        "10000",
        "--log-level",
        "debug",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        out.stdout, delivered,
        "{test}: a failing byte was delivered"
    );
    assert!(
        stderr(&out).contains(test),
        "{test} not named in the log: {}",
        stderr(&out)
    );
}

#[test]
fn a_source_that_turns_into_zeros_delivers_none_of_them() {
    only_good_blocks_pass(vec![0u8; 2 * BLOCK], "monobit");
}

#[test]
fn a_source_that_repeats_itself_delivers_no_repeat() {
    only_good_blocks_pass(good_block(1200), "repeated_block");
}

#[test]
fn a_read_that_blocks_forever_fails_the_source_not_the_loop() {
    let dir = temp_dir();
    let (fifo, writer, tx) = silent_fifo(dir.path());
    let f = fifo.to_str().unwrap();
    let d = start(fast(&["--source", f, "--sink", "stdout"]));
    let timeouts =
        format!("random_refresher_source_read_errors_total{{source=\"{f}\",kind=\"timeout\"}}");
    assert!(
        eventually(BOUND, || d.metric(&timeouts).filter(|v| *v >= 2.0)).is_some(),
        "{}",
        d.log()
    );
    assert_eq!(d.get("/healthz").0, 200);
    assert_eq!(d.get("/readyz").0, 503);
    assert!(
        d.metric("random_refresher_cycles_total{result=\"failed\"}")
            .unwrap()
            >= 2.0
    );
    drop(d);
    tx.send(()).unwrap();
    writer.join().unwrap();
}

#[test]
fn the_loop_survives_many_stdout_readers_going_away() {
    // stdout closed under the daemon: the sink fails (EPIPE), is counted,
    // and the daemon keeps serving.
    let dir = temp_dir();
    let src = write(
        dir.path(),
        "good",
        &(0..50)
            .flat_map(|i| good_block(1600 + i))
            .collect::<Vec<_>>(),
    );
    let mut cmd = bin();
    cmd.args([
        "run",
        "--listen-address",
        "127.0.0.1:0",
        "--source",
        src.to_str().unwrap(),
        "--sink",
        "stdout",
        "--interval",
        "50ms",
        "--max-failed-cycles",
        "100000",
    ]);
    cmd.stdout(Stdio::piped());
    let mut d = Daemon::start_with(&mut cmd);
    drop(d.child.stdout.take());
    assert!(
        eventually(BOUND, || d
            .metric("random_refresher_sink_errors_total{sink=\"stdout\"}")
            .filter(|v| *v >= 2.0))
        .is_some(),
        "{}",
        d.log()
    );
    assert_eq!(d.get("/healthz").0, 200);
    assert_eq!(
        d.log().matches("delivery failed").count(),
        1,
        "logged once per change"
    );
}

#[test]
fn a_device_at_13_bytes_a_second_keeps_the_daemon_live_and_delivers_when_its_block_completes() {
    // The Raspberry Pi's bcm2835 regression read about 13 B/s: a block
    // takes over three minutes. The stream here holds the start-up block,
    // one block to deliver and the block that releases it, of which the
    // last 260 bytes arrive at 13 bytes a second: twenty seconds in which
    // the daemon reads, slowly, and must stay live, past its liveness limit
    // of 16 s (interval + read timeout + 10 s) had it counted only blocks.
    let dir = temp_dir();
    let fifo = dir.path().join("slow");
    mkfifo(&fifo);
    let stream = framed(&[good_block(4300)]);
    let (fast, slow) = stream.split_at(stream.len() - 260);
    let (fast, slow) = (fast.to_vec(), slow.to_vec());
    let (done, held) = std::sync::mpsc::channel::<()>();
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut w = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
            w.write_all(&fast).unwrap();
            for b in slow {
                std::thread::sleep(Duration::from_millis(1000 / 13));
                w.write_all(&[b]).unwrap();
            }
            // Held open until the test ends: the source waits for more
            // rather than ending.
            let _ = held.recv_timeout(Duration::from_secs(60));
        })
    };
    let seed = dir.path().join("seed");
    let sink = format!("file:{}", seed.display());
    // A read timeout of 5 s: each byte is progress, so it never expires.
    let d = Daemon::start(&[
        "--source",
        fifo.to_str().unwrap(),
        "--sink",
        &sink,
        "--interval",
        "1s",
        "--read-timeout",
        "5s",
    ]);
    let mut probes = Vec::new();
    while !seed.exists() && probes.len() < 60 {
        probes.push((d.get("/healthz").0, d.get("/readyz").0));
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(seed.exists(), "nothing delivered:\n{}", d.log());
    assert!(
        probes.len() >= 30,
        "the slow bytes came too fast: {} probes",
        probes.len()
    );
    assert!(
        probes.iter().all(|&(live, _)| live == 200),
        "not live while reading: {probes:?}\n{}",
        d.log()
    );
    assert!(
        probes.iter().all(|&(_, ready)| ready == 503),
        "ready before a delivery: {probes:?}"
    );
    assert_eq!(std::fs::read(&seed).unwrap(), good_block(4300));
    assert!(
        eventually(Duration::from_secs(10), || (d.get("/readyz").0 == 200)
            .then_some(()))
        .is_some()
    );
    // Every byte was read, and counted: the device's rate is what
    // `rate(random_refresher_source_bytes_read_total[10m])` shows.
    let src = format!("source=\"{}\"", fifo.display());
    let read = d.metric(&format!(
        "random_refresher_source_bytes_read_total{{{src}}}"
    ));
    assert_eq!(read, Some(stream.len() as f64), "{}", d.log());
    drop(d);
    done.send(()).unwrap();
    writer.join().unwrap();
}
