//! Helpers shared by the integration tests: the built binary, deterministic
//! test data, and the reference tools.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BLOCK: usize = 2500;

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_random-refresher"));
    c.env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("RANDOM_REFRESHER_") {
            c.env_remove(k);
        }
    }
    c
}

pub fn run(args: &[&str]) -> Output {
    bin()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run random-refresher")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// SplitMix64: deterministic, good enough to pass FIPS 140-2 like real noise.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }

    /// Bytes whose bits are 1 with probability `p`.
    pub fn biased(&mut self, n: usize, p: f64) -> Vec<u8> {
        let threshold = (p * (u64::MAX as f64)) as u64;
        (0..n)
            .map(|_| (0..8).fold(0u8, |b, _| (b << 1) | u8::from(self.next_u64() < threshold)))
            .collect()
    }

    /// Bits from a Markov chain that stays on its last bit with probability
    /// `stay`: more than 0.5 gives long runs, less gives short ones.
    pub fn sticky(&mut self, n: usize, stay: f64) -> Vec<u8> {
        let threshold = (stay * (u64::MAX as f64)) as u64;
        let mut bit = 0u8;
        (0..n)
            .map(|_| {
                (0..8).fold(0u8, |b, _| {
                    if self.next_u64() >= threshold {
                        bit ^= 1;
                    }
                    (b << 1) | bit
                })
            })
            .collect()
    }
}

/// A block that passes every test, deterministic per seed.
pub fn good_block(seed: u64) -> Vec<u8> {
    let mut s = SplitMix(seed);
    loop {
        let b = s.bytes(BLOCK);
        if passes(&b) {
            return b;
        }
    }
}

/// A stream from which the daemon delivers exactly `blocks`: a start-up
/// block before them (tested, then discarded) and one good block after them
/// (it closes the last block's windows and is itself held back).
pub fn framed(blocks: &[Vec<u8>]) -> Vec<u8> {
    let mut s = good_block(900_001);
    for b in blocks {
        s.extend_from_slice(b);
    }
    s.extend(good_block(900_002));
    s
}

fn passes(block: &[u8]) -> bool {
    use random_refresher::health::{Block, ContinuousRun, fips::reference};
    let b: &Block = block.try_into().unwrap();
    reference::test_block(b, &mut ContinuousRun::default()).passed()
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rr-test-")
        .tempdir()
        .unwrap()
}

/// Makes a FIFO at `path`.
pub fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(made, "mkfifo {}", path.display());
}

/// A FIFO with a writer that never writes, so a reader blocks: the writer
/// lets go when the returned sender is used or dropped.
pub fn silent_fifo(
    dir: &Path,
) -> (
    PathBuf,
    std::thread::JoinHandle<()>,
    std::sync::mpsc::Sender<()>,
) {
    let fifo = dir.join("silent");
    mkfifo(&fifo);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let path = fifo.clone();
    let writer = std::thread::spawn(move || {
        let _w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let _ = rx.recv();
    });
    (fifo, writer, tx)
}

pub fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// Waits for a child with a generous bound, so a hang fails the test
/// instead of the suite; returns None if it did not exit in time.
pub fn wait_bounded(child: &mut Child, bound: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

pub fn signal(child: &Child, sig: i32) {
    let rc = unsafe_free_kill(child.id(), sig);
    assert!(rc, "kill -{sig} {}", child.id());
}

fn unsafe_free_kill(pid: u32, sig: i32) -> bool {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success()
}

/// Polls `f` until it returns Some, within a generous bound.
pub fn eventually<T>(bound: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `run` options for fault tests: short interval, timeouts and backoff,
/// and no giving up, then `extra`.
pub fn fast(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "--interval",
        "100ms",
        "--read-timeout",
        "300ms",
        "--retry-initial",
        "200ms",
        "--retry-max",
        "400ms",
        "--max-failed-cycles",
        "100000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// As [`fast`], for `once`, which refuses the options only `run` uses.
pub fn fast_once(extra: &[&str]) -> Vec<String> {
    let mut v = fast(extra);
    for run_only in ["--interval", "--max-failed-cycles"] {
        if let Some(at) = v.iter().position(|a| a == run_only) {
            v.drain(at..at + 2);
        }
    }
    v
}

/// The per-test counts `rngtest` prints on standard error.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct RngtestCounts {
    pub successes: u64,
    pub failures: u64,
    pub monobit: u64,
    pub poker: u64,
    pub runs: u64,
    pub long_run: u64,
    pub continuous_run: u64,
}

pub fn parse_rngtest(stderr: &str) -> RngtestCounts {
    let mut c = RngtestCounts::default();
    for line in stderr.lines() {
        let Some((label, value)) = line.rsplit_once(": ") else {
            continue;
        };
        let Ok(v) = value.trim().parse::<u64>() else {
            continue;
        };
        let slot = match label {
            l if l.ends_with("FIPS 140-2 successes") => &mut c.successes,
            l if l.ends_with("FIPS 140-2 failures") => &mut c.failures,
            l if l.ends_with("Monobit") => &mut c.monobit,
            l if l.ends_with("Poker") => &mut c.poker,
            l if l.ends_with("Runs") => &mut c.runs,
            l if l.ends_with("Long run") => &mut c.long_run,
            l if l.ends_with("Continuous run") => &mut c.continuous_run,
            _ => continue,
        };
        *slot = v;
    }
    c
}

/// `check` on `file` for `blocks` blocks, with `extra` options.
pub fn check_file(file: &Path, blocks: usize, extra: &[&str]) -> Output {
    let blocks = blocks.to_string();
    let mut args = vec![
        "check",
        "--source",
        file.to_str().unwrap(),
        "--blocks",
        &blocks,
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// A file from which the daemon delivers `blocks` good blocks (seeds from
/// `seed` on); its path.
pub fn good_file(dir: &Path, seed: u64, blocks: u64) -> String {
    let data: Vec<Vec<u8>> = (0..blocks).map(|i| good_block(seed + i)).collect();
    write(dir, "good", &framed(&data)).display().to_string()
}

/// The number after `key=` in a log line.
pub fn log_number(line: &str, key: &str) -> u64 {
    let at = format!("{key}=");
    let value = line
        .split(&at)
        .nth(1)
        .unwrap_or_else(|| panic!("no {key} in {line}"));
    value
        .split_whitespace()
        .next()
        .unwrap()
        .trim_matches('"')
        .parse()
        .unwrap()
}

/// Our `check --format json` counts, in rngtest's shape.
pub fn check_counts(file: &Path, blocks: usize) -> (RngtestCounts, serde_json::Value) {
    let out = check_file(file, blocks, &["--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("check printed no JSON ({e}): {}", stderr(&out)));
    (fips_counts(&v), v)
}

/// The FIPS 140-2 counts of a `check` JSON report, in rngtest's shape.
pub fn fips_counts(v: &serde_json::Value) -> RngtestCounts {
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"));
    RngtestCounts {
        successes: n("fips_successes"),
        failures: n("fips_failures"),
        monobit: n("monobit"),
        poker: n("poker"),
        runs: n("runs"),
        long_run: n("long_run"),
        continuous_run: n("continuous_run"),
    }
}

/// Our `check` text report, read as rngtest's report is read.
pub fn check_text_counts(file: &Path, blocks: usize) -> RngtestCounts {
    let out = check_file(file, blocks, &[]);
    parse_rngtest(&String::from_utf8_lossy(&out.stdout))
}

/// A reference tool: found on PATH or at the path in `env`; when missing,
/// the test fails under the test command (RR_REQUIRE_TOOLS=1) and is
/// skipped with a message otherwise.
pub fn tool(env: &str, name: &str) -> Option<PathBuf> {
    let found = std::env::var_os(env)
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .or_else(|| {
            std::env::var_os("PATH")?
                .to_str()?
                .split(':')
                .map(|d| Path::new(d).join(name))
                .find(|p| p.exists())
        });
    if found.is_none() {
        let msg = format!("{name} not found (set {env} or run the README's test command)");
        if std::env::var_os("RR_REQUIRE_TOOLS").is_some() {
            panic!("{msg}");
        }
        eprintln!("skipped: {msg}");
    }
    found
}

/// Runs an rngtest binary on a file, for `blocks` blocks.
pub fn rngtest(tool: &Path, file: &Path, blocks: usize) -> RngtestCounts {
    let out = Command::new(tool)
        .arg("-c")
        .arg(blocks.to_string())
        .stdin(std::fs::File::open(file).unwrap())
        .output()
        .unwrap();
    parse_rngtest(&String::from_utf8_lossy(&out.stderr))
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// Root-only tests (the real device, the kernel ioctls) need root; under the
/// test command that is required, elsewhere they are skipped with a word.
pub fn require_root() -> bool {
    if is_root() {
        return true;
    }
    if std::env::var_os("RR_REQUIRE_TOOLS").is_some() {
        panic!("this test needs root");
    }
    eprintln!("skipped: needs root");
    false
}

/// Tests that reach the kernel's random ioctls need root, and a kernel
/// that sees them: qemu-user (the aarch64 run, which sets QEMU_CPU) passes
/// on only the ioctls it knows, and RNDADDENTROPY is not one of them (the
/// binary gets ENOSYS). Those tests run in the native build only.
pub fn require_kernel_ioctls() -> bool {
    if cfg!(target_arch = "aarch64") && std::env::var_os("QEMU_CPU").is_some() {
        eprintln!("skipped: qemu-user does not pass RNDADDENTROPY to the kernel");
        return false;
    }
    require_root()
}

/// A free loopback port (bound and released; good enough on a test machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `random-refresher run` whose log lines are collected; it is
/// stopped with SIGTERM when dropped.
pub struct Daemon {
    pub child: Child,
    pub lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pub addr: Option<std::net::SocketAddr>,
}

impl Daemon {
    /// Starts `run` with the server on a free loopback port.
    pub fn start(args: &[&str]) -> Daemon {
        Self::start_with(
            bin()
                .arg("run")
                .args(["--listen-address", "127.0.0.1:0"])
                .args(args)
                .stdout(Stdio::null()),
        )
    }

    /// Starts `cmd` as given: its standard output is the caller's to set.
    pub fn start_with(cmd: &mut Command) -> Daemon {
        let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
        let err = child.stderr.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut d = Daemon {
            child,
            lines,
            addr: None,
        };
        d.addr = d.wait_for_log("serving /metrics").and_then(|l| {
            l.split("address=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        });
        d
    }

    pub fn wait_for_log(&self, needle: &str) -> Option<String> {
        eventually(Duration::from_secs(20), || {
            self.lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
                .cloned()
        })
    }

    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr.expect("daemon address"), path)
    }

    /// The value of one series on /metrics (exact name and labels as printed).
    pub fn metric(&self, series: &str) -> Option<f64> {
        metric_value(&self.get("/metrics").1, series)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = wait_bounded(&mut self.child, Duration::from_secs(10));
    }
}

pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

/// A minimal HTTP/1.1 GET: status and body.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let raw = http_raw(
        addr,
        format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes(),
    );
    parse_response(&raw)
}

pub fn http_raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

pub fn parse_response(raw: &str) -> (u16, String) {
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A server process, killed when dropped.
pub struct Service(pub Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real Prometheus on a free loopback port, with `config` (relative paths
/// in it are from `dir`) and its storage under `dir`.
pub fn start_prometheus(
    prometheus: &Path,
    config: &Path,
    dir: &Path,
) -> (Service, std::net::SocketAddr) {
    let port = free_port();
    let svc = Service(
        Command::new(prometheus)
            .current_dir(dir)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    (svc, format!("127.0.0.1:{port}").parse().unwrap())
}
