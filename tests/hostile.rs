//! Hostile clients and a failing node, with real sockets and real limits:
//! a descriptor limit reached by a connection flood, idle connections,
//! malformed and oversized requests, a Pushgateway that hangs, fails or is
//! gone, a seed file on a full or read-only disk. Through all of it the
//! refresh cycles go on, no descriptor leaks, and the seed file stays whole.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn cycles(d: &Daemon) -> (f64, f64) {
    let text = d.get("/metrics").1;
    let m = |s: &str| metric_value(&text, s).unwrap_or(-1.0);
    (
        m("random_refresher_cycles_total{result=\"ok\"}"),
        m("random_refresher_cycles_total{result=\"failed\"}"),
    )
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// CPU seconds the process has used (user + system).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// A daemon under `prlimit --nofile=LIMIT`, refreshing a seed file every
/// 100 ms from a file source.
fn limited_daemon(dir: &std::path::Path, limit: u32) -> Daemon {
    let src = good_file(dir, 3000, 3000);
    let seed = format!("file:{}", dir.join("seed").display());
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={limit}:{limit}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_random-refresher"))
        .args([
            "run",
            "--listen-address",
            "127.0.0.1:0",
            "--source",
            &src,
            "--sink",
            &seed,
        ])
        .args(["--interval", "100ms", "--max-failed-cycles", "3"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null());
    Daemon::start_with(&mut cmd)
}

#[test]
fn a_connection_flood_at_a_low_descriptor_limit_never_stops_the_refresh() {
    let dir = temp_dir();
    let mut d = limited_daemon(dir.path(), 64);
    let addr = d.addr.expect("listening");
    let pid = d.child.id();
    d.wait_for_log("first tested batch").expect("refreshing");
    let fds_before = fds(pid);
    let (ok0, _) = cycles(&d);
    let cpu0 = cpu_seconds(pid);
    let started = Instant::now();
    // Far more connections than descriptors: accept fails with EMFILE for
    // as long as they are held.
    let flood: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let (status, _) = d.get("/healthz");
    assert_eq!(status, 200, "a probe during the flood: {}", d.log());
    let cpu = cpu_seconds(pid) - cpu0;
    let wall = started.elapsed().as_secs_f64();
    drop(flood);
    // Answered again at once once the flood is gone.
    let answered = eventually(Duration::from_secs(5), || {
        (d.get("/metrics").0 == 200).then_some(())
    });
    assert!(answered.is_some(), "{}", d.log());
    let (ok1, failed1) = cycles(&d);
    assert_eq!(failed1, 0.0, "a cycle failed during the flood: {}", d.log());
    assert!(ok1 - ok0 >= 5.0, "only {} cycles in {wall:.1}s", ok1 - ok0);
    assert!(
        cpu < 0.5 * wall,
        "{cpu:.2}s of CPU in {wall:.1}s: accept spins"
    );
    assert!(d.child.try_wait_alive(), "the daemon exited: {}", d.log());
    let settled = eventually(Duration::from_secs(5), || {
        (fds(pid) <= fds_before + 1).then_some(())
    });
    assert!(settled.is_some(), "fds {fds_before} -> {}", fds(pid));
    assert_eq!(
        std::fs::metadata(dir.path().join("seed")).unwrap().len(),
        BLOCK as u64
    );
}

#[test]
fn five_hundred_idle_connections_do_not_keep_a_probe_out() {
    let dir = temp_dir();
    let src = good_file(dir.path(), 3000, 3000);
    let d = Daemon::start(&["--source", &src, "--sink", "stdout", "--interval", "100ms"]);
    let addr = d.addr.unwrap();
    let (ok0, _) = cycles(&d);
    let idle: Vec<TcpStream> = (0..500)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    assert!(idle.len() >= 400);
    // Each probe sends its request at once: room is made by closing an
    // idle connection, never the probe's, however soon after it connects.
    for _ in 0..200 {
        let started = Instant::now();
        assert_eq!(d.get("/healthz").0, 200, "{}", d.log());
        // Within the request timeout (5 s), as the kubelet's probe needs.
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(cycles(&d).0 > ok0, "cycles stopped");
    drop(idle);
}

#[test]
fn two_hundred_trickling_clients_do_not_keep_a_probe_out() {
    let dir = temp_dir();
    let src = good_file(dir.path(), 3000, 3000);
    let d = Daemon::start(&["--source", &src, "--sink", "stdout", "--interval", "100ms"]);
    let addr = d.addr.unwrap();
    // Each client sends one byte of a request head and another every
    // 200 ms, and connects again when it is closed: every slot is taken by
    // a client that has sent something.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let connect = || {
                let mut s = TcpStream::connect(addr).ok()?;
                s.write_all(b"G").ok()?;
                Some(s)
            };
            let mut clients: Vec<Option<TcpStream>> = (0..200).map(|_| connect()).collect();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                for c in clients.iter_mut() {
                    if c.as_mut().is_none_or(|s| s.write_all(b"E").is_err()) {
                        *c = connect();
                    }
                }
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(d.get("/healthz").0, 200, "{}", d.log());
        // Within the request timeout (5 s), as the kubelet's probe needs.
        assert!(started.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flood.join().unwrap();
    let floods = d.log().matches("HTTP connections at their ceiling").count();
    assert_eq!(floods, 1, "the flood logged {floods} times:\n{}", d.log());
}

fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn malformed_oversized_and_pipelined_requests_get_an_error_or_a_close() {
    let dir = temp_dir();
    let src = good_file(dir.path(), 3000, 3000);
    let d = Daemon::start(&["--source", &src, "--sink", "stdout", "--interval", "100ms"]);
    let addr = d.addr.unwrap();
    let status = |r: &str| {
        r.split_whitespace()
            .nth(1)
            .map(str::to_string)
            .unwrap_or_default()
    };
    assert_eq!(status(&raw(addr, b"\x00\x01garbage\r\n\r\n")), "400");
    let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
    huge.extend(
        std::iter::repeat_n(
            b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".as_slice(),
            400,
        )
        .flatten(),
    );
    assert_eq!(status(&raw(addr, &huge)), "431");
    let body = b"POST /metrics HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n";
    assert_eq!(status(&raw(addr, body)), "413");
    // Two requests in one write: the first is answered, then the socket closes.
    let two = raw(
        addr,
        b"GET /healthz HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n",
    );
    assert_eq!(two.matches("HTTP/1.1 200").count(), 1, "{two}");
    assert_eq!(
        status(&raw(addr, b"DELETE /metrics HTTP/1.1\r\n\r\n")),
        "405"
    );
    assert_eq!(
        status(&raw(addr, b"GET /../../etc/passwd HTTP/1.1\r\n\r\n")),
        "404"
    );
    // A slow client that never finishes its head gets 408 at the deadline.
    let slow = raw(addr, b"GET /metrics HTTP/1.1\r\nX-Slow: ");
    assert_eq!(status(&slow), "408", "{slow}");
    assert_eq!(d.get("/healthz").0, 200, "{}", d.log());
}

/// A gateway that accepts and never answers.
fn hung_gateway() -> (SocketAddr, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let held: Vec<TcpStream> = l.incoming().take(3).filter_map(Result::ok).collect();
        std::thread::sleep(Duration::from_secs(30));
        drop(held);
    });
    (addr, t)
}

/// A gateway that answers 500 to everything, for a bounded number of requests.
fn failing_gateway() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().take(200).filter_map(Result::ok) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 65536];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    addr
}

#[test]
fn a_pushgateway_that_hangs_fails_or_is_gone_never_delays_the_cycles() {
    let dir = temp_dir();
    let src = good_file(dir.path(), 3000, 3000);
    let (hung, _t) = hung_gateway();
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for gateway in [hung, failing_gateway(), closed] {
        let url = format!("http://user:secret@{gateway}");
        let d = Daemon::start(&[
            "--source",
            &src,
            "--sink",
            "stdout",
            "--interval",
            "100ms",
            "--push-gateway",
            &url,
            "--push-interval",
            "100ms",
        ]);
        let (ok0, _) = cycles(&d);
        std::thread::sleep(Duration::from_secs(2));
        let (ok1, failed) = cycles(&d);
        assert!(
            ok1 - ok0 >= 5.0,
            "{gateway}: {} cycles in 2 s: {}",
            ok1 - ok0,
            d.log()
        );
        assert_eq!(failed, 0.0);
        if gateway != hung {
            assert!(
                d.metric("random_refresher_push_errors_total").unwrap() >= 2.0,
                "{}",
                d.log()
            );
            assert_eq!(
                d.log().matches("push failed").count(),
                1,
                "once per change: {}",
                d.log()
            );
        }
        assert!(
            !d.log().contains("secret"),
            "credentials in the log: {}",
            d.log()
        );
    }
}

/// A small tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(at.into()))
    }

    fn remount(&self, opt: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{opt}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_or_read_only_disk_leaves_the_old_seed_whole_and_recovers() {
    if !require_root() {
        return;
    }
    let dir = temp_dir();
    let Some(fs) = Tmpfs::mount(&dir.path().join("fs"), "64k") else {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    let src = good_file(dir.path(), 3000, 3000);
    let seed_path = fs.0.join("seed");
    let seed = format!("file:{}", seed_path.display());
    let d = Daemon::start(&[
        "--source",
        &src,
        "--sink",
        &seed,
        "--interval",
        "100ms",
        "--max-failed-cycles",
        "100000",
    ]);
    let pid = d.child.id();
    d.wait_for_log("first tested batch").expect("a first seed");
    let fds0 = fds(pid);
    let errors = || {
        d.metric(&format!(
            "random_refresher_sink_errors_total{{sink=\"{seed}\"}}"
        ))
        .unwrap_or(0.0)
    };
    // Full: one file takes the rest of the space.
    let filler = fs.0.join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 64 * 1024]);
    assert!(
        eventually(Duration::from_secs(10), || (errors() >= 2.0).then_some(())).is_some(),
        "{}",
        d.log()
    );
    let old = std::fs::read(&seed_path).unwrap();
    assert_eq!(old.len(), BLOCK, "the old seed is whole");
    let names: Vec<String> = std::fs::read_dir(&fs.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains(".tmp.")),
        "temporary file left: {names:?}"
    );
    assert_eq!(
        d.log().matches("delivery failed").count(),
        1,
        "one line per change: {}",
        d.log()
    );
    assert!(d.log().contains("No space left on device"), "{}", d.log());
    std::fs::remove_file(&filler).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || d
            .wait_for_log("sink works again"))
        .is_some()
    );
    // Read-only: the same, then writable again.
    fs.remount("ro");
    let before = errors();
    assert!(
        eventually(Duration::from_secs(10), || (errors() >= before + 2.0)
            .then_some(()))
        .is_some()
    );
    assert_eq!(std::fs::read(&seed_path).unwrap().len(), BLOCK);
    assert!(d.log().contains("Read-only file system"), "{}", d.log());
    fs.remount("rw");
    let ok = cycles(&d).0;
    assert!(
        eventually(Duration::from_secs(10), || (cycles(&d).0 > ok + 2.0)
            .then_some(()))
        .is_some()
    );
    assert_eq!(fds(pid), fds0, "a descriptor leaked");
    drop(d);
}

trait Alive {
    fn try_wait_alive(&mut self) -> bool;
}

impl Alive for std::process::Child {
    fn try_wait_alive(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }
}

#[test]
fn the_random_device_must_be_the_kernels_not_a_file_or_a_link() {
    let dir = temp_dir();
    let src = good_file(dir.path(), 3000, 3);
    let victim = write(dir.path(), "victim", b"keep me\n");
    let link = dir.path().join("random-link");
    std::os::unix::fs::symlink("/dev/random", &link).unwrap();
    for device in [&victim, &link] {
        let out = run(&[
            "once",
            "--source",
            &src,
            "--sink",
            "mix",
            "--random-device",
            device.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("--random-device"), "{err}");
        assert_eq!(
            err.lines().filter(|l| l.contains("ERROR")).count(),
            1,
            "{err}"
        );
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me\n");
}

#[test]
fn a_privileged_port_is_bound_before_privileges_are_dropped() {
    if !require_root() {
        return;
    }
    let dir = temp_dir();
    let src = good_file(dir.path(), 3000, 3000);
    let Some(port) = (900..1000).find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok()) else {
        eprintln!("skipped: no free port below 1024");
        return;
    };
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut cmd = bin();
    cmd.args([
        "run",
        "--listen-address",
        &format!("127.0.0.1:{port}"),
        "--source",
        &src,
    ])
    .args(["--sink", "mix", "--user", "65534:65534", "--interval", "1h"])
    .stdout(Stdio::null());
    let d = Daemon::start_with(&mut cmd);
    assert_eq!(d.addr.map(|a| a.port()), Some(port), "{}", d.log());
    assert_eq!(d.get("/healthz").0, 200, "{}", d.log());
}

#[test]
fn metric_labels_that_clash_are_refused_with_one_line() {
    for args in [
        &["--metrics-label", "le=1"][..],
        &["--metrics-label", "source=x"],
        &["--metrics-label", "job=x"],
        &["--metrics-label", "node=a", "--metrics-label", "node=b"],
    ] {
        let out = bin()
            .arg("once")
            .args(args)
            .args(["--sink", "stdout"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("--metrics-label"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    }
    let out = bin()
        .args(["once", "--sink", "stdout"])
        .env("RANDOM_REFRESHER_METRICS_LABEL", "zone=a,zone=b")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn a_comma_is_part_of_a_value_on_the_command_line_and_a_separator_in_the_environment() {
    let dir = temp_dir();
    let src = write(
        dir.path(),
        "good",
        &framed(&[good_block(3100), good_block(3101)]),
    );
    let seed = dir.path().join("seed,v2");
    let out = run(&[
        "once",
        "--source",
        src.to_str().unwrap(),
        "--sink",
        &format!("file:{}", seed.display()),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&seed).unwrap(), good_block(3100));
    let other = dir.path().join("other");
    let out = bin()
        .arg("once")
        .env("RANDOM_REFRESHER_SOURCE", &src)
        .env(
            "RANDOM_REFRESHER_SINK",
            format!("stdout,file:{}", other.display()),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, good_block(3100));
    assert_eq!(std::fs::read(&other).unwrap(), good_block(3101));
}
