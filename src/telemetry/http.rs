//! The metrics and health server: `/metrics`, `/healthz`, `/readyz`.
//!
//! Small on purpose, and built so that no client can touch the refresh
//! loop: one request per connection (answered with `Connection: close`); a
//! ceiling on connections at once, derived from the descriptor limit so
//! that descriptors always remain for the sources and sinks; a cap on the
//! request head (431) and on an announced body (413, never read); a deadline
//! for the request (408); an `accept` that fails (EMFILE) is backed off, not
//! spun on. Each connection's slot is a guard, given back on every path.
//! Parsing is httparse's.
//!
//! At the ceiling a connection still without its whole request head is
//! closed to make room: the oldest that has sent nothing, else the oldest
//! of all (idle, slow-loris and trickling clients). A probe sends its
//! request the moment it connects and its thread reads it at once, so it is
//! the newest of those connections for the moment it is one, never the
//! oldest. Only if every connection has its request does the newcomer get
//! 503 without a thread. The first eviction of a slow client in a while is
//! logged, so that a flood shows.
//!
//! A small crate (`tiny_http`) was weighed against this: it adds a thread
//! pool and its own buffering but no request deadline, no connection
//! ceiling and no eviction, which are the point here (see docs/metrics.md).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::LoopStatus;
use super::exporter::Exporter;

/// Most connections served at once; fewer when the descriptor limit is
/// low (see [`connection_ceiling`]). Past the ceiling a connection without
/// its whole head is closed (the oldest idle one, else the oldest), or, if
/// there is none, the newcomer gets 503 without a thread.
pub const MAX_CONNECTIONS: usize = 64;
/// A new flood is logged after this long without an eviction.
const FLOOD_QUIET: Duration = Duration::from_secs(60);
/// Descriptors kept for everything but HTTP: stdio, sources, sinks, a seed
/// file's temporary file and folder, the signal pipe, procfs reads.
pub const RESERVED_FDS: u64 = 32;
/// Largest request head (request line and headers) read.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Largest request body announced; bodies are never read, larger ones get 413.
pub const MAX_BODY_BYTES: u64 = 8 * 1024;
/// Time a client has to send its request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_HEADERS: usize = 64;
/// Waits after a failed `accept` (EMFILE, ENFILE, ENOBUFS): the first, and
/// the longest as it doubles.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Connections allowed at once for a soft `RLIMIT_NOFILE` of `nofile`: each
/// holds two descriptors (its socket and the handle kept for eviction), one
/// more is used for a moment to turn a newcomer away, and
/// [`RESERVED_FDS`] always stay free for the refresh loop.
pub fn connection_ceiling(nofile: u64) -> usize {
    let spare = nofile.saturating_sub(RESERVED_FDS + 1) / 2;
    (spare as usize).clamp(1, MAX_CONNECTIONS)
}

/// The soft descriptor limit, from /proc/self/limits.
fn nofile_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// What the handlers read: the metrics, and the loop's progress.
pub struct HttpState {
    pub exporter: Arc<Exporter>,
    pub status: Arc<LoopStatus>,
    /// `/healthz` fails when the loop's last sign of life is older.
    pub liveness_limit: Duration,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub allow: bool,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            allow: false,
        }
    }
}

/// A listener, and the error that made it fall back to IPv4, if it did.
pub struct Bound {
    pub listener: TcpListener,
    pub fell_back: Option<std::io::Error>,
}

/// Binds the listener; done before privileges are dropped, so that a
/// port below 1024 works. `[::]` (the default) takes IPv4 and IPv6 on one
/// socket, whatever `net.ipv6.bindv6only` says, and falls back to
/// `0.0.0.0` on the same port where the kernel has no IPv6 at all
/// (`ipv6.disable=1`), so that one default serves IPv4-only, IPv6-only and
/// dual-stack nodes.
pub fn bind(addr: SocketAddr) -> std::io::Result<Bound> {
    let SocketAddr::V6(v6) = addr else {
        return TcpListener::bind(addr).map(|listener| Bound {
            listener,
            fell_back: None,
        });
    };
    if *v6.ip() != Ipv6Addr::UNSPECIFIED {
        return TcpListener::bind(addr).map(|listener| Bound {
            listener,
            fell_back: None,
        });
    }
    match bind_dual_stack(v6) {
        Ok(listener) => Ok(Bound {
            listener,
            fell_back: None,
        }),
        Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
            let v4 = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), addr.port());
            Ok(Bound {
                listener: TcpListener::bind(v4)?,
                fell_back: Some(e),
            })
        }
        Err(e) => Err(e),
    }
}

/// `[::]:port` with `IPV6_V6ONLY` off, as `TcpListener::bind` would make
/// it otherwise (close-on-exec, `SO_REUSEADDR`, the largest backlog).
fn bind_dual_stack(addr: std::net::SocketAddrV6) -> std::io::Result<TcpListener> {
    use nix::sys::socket::{self as sock, AddressFamily, SockFlag, SockType, SockaddrIn6, sockopt};
    use std::os::fd::AsRawFd;
    let fd = sock::socket(
        AddressFamily::Inet6,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    sock::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    sock::setsockopt(&fd, sockopt::Ipv6V6Only, &false)?;
    sock::bind(fd.as_raw_fd(), &SockaddrIn6::from(addr))?;
    sock::listen(&fd, sock::Backlog::MAXCONN)?;
    Ok(TcpListener::from(fd))
}

/// Starts serving on `listener`; returns the bound address.
pub fn spawn(listener: TcpListener, state: HttpState) -> std::io::Result<SocketAddr> {
    let local = listener.local_addr()?;
    let state = Arc::new(state);
    let ceiling = nofile_limit().map_or(MAX_CONNECTIONS, connection_ceiling);
    std::thread::Builder::new()
        .name("http-accept".into())
        .spawn(move || accept_loop(&listener, &state, ceiling))?;
    Ok(local)
}

fn accept_loop(listener: &TcpListener, state: &Arc<HttpState>, ceiling: usize) {
    let active = Arc::new(AtomicUsize::new(0));
    let waiting = Arc::new(Waiting::default());
    let mut backoff = ACCEPT_BACKOFF_FIRST;
    let mut failing = false;
    let mut last_eviction: Option<Instant> = None;
    for id in 0.. {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: say so once, and wait instead of spinning.
                if !failing {
                    warn!(error = %e, "cannot accept connections; backing off");
                    failing = true;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        if failing {
            info!("accepting connections again");
            failing = false;
        }
        backoff = ACCEPT_BACKOFF_FIRST;
        if active.load(Ordering::Acquire) >= ceiling {
            match waiting.evict() {
                None => {
                    busy(stream);
                    continue;
                }
                Some(Evicted::Slow) if last_eviction.is_none_or(|t| t.elapsed() >= FLOOD_QUIET) => {
                    warn!(
                        ceiling,
                        "HTTP connections at their ceiling: closing the slowest clients to keep the probes answered"
                    );
                    last_eviction = Some(Instant::now());
                }
                Some(_) => last_eviction = Some(Instant::now()),
            }
        }
        let Ok(handle) = stream.try_clone() else {
            busy(stream);
            continue;
        };
        let sent = Arc::new(AtomicBool::new(false));
        waiting.push(id, handle, Arc::clone(&sent));
        active.fetch_add(1, Ordering::AcqRel);
        let slot = Slot {
            id,
            active: Arc::clone(&active),
            waiting: Arc::clone(&waiting),
        };
        let state = Arc::clone(state);
        // The slot is released when the thread ends, or when the closure is
        // dropped because the thread could not start.
        let spawned = std::thread::Builder::new()
            .name("http-conn".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                serve(stream, &state, &sent, || slot.waiting.remove(slot.id));
                drop(slot);
            });
        if let Err(e) = spawned {
            warn!(error = %e, "cannot start a connection thread");
        }
    }
}

/// One connection's place among the active ones, given back on drop.
struct Slot {
    id: usize,
    active: Arc<AtomicUsize>,
    waiting: Arc<Waiting>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.waiting.remove(self.id);
        self.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What was closed to make room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Evicted {
    /// A connection that had sent nothing.
    Idle,
    /// One that had sent part of its head.
    Slow,
}

/// A connection still reading its request head, and whether it has sent
/// a byte.
struct Reading {
    id: usize,
    stream: TcpStream,
    sent: Arc<AtomicBool>,
}

/// Connections still reading their request head, oldest first.
#[derive(Default)]
struct Waiting(Mutex<VecDeque<Reading>>);

impl Waiting {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Reading>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, id: usize, stream: TcpStream, sent: Arc<AtomicBool>) {
        self.lock().push_back(Reading { id, stream, sent });
    }

    fn remove(&self, id: usize) {
        self.lock().retain(|r| r.id != id);
    }

    /// Closes the oldest connection that has sent nothing (neither read by
    /// its thread yet nor waiting in its socket), else the oldest still
    /// short of its head; None if every connection has its request.
    fn evict(&self) -> Option<Evicted> {
        let mut w = self.lock();
        let idle = w
            .iter()
            .position(|r| !r.sent.load(Ordering::Acquire) && pending_bytes(&r.stream) == 0);
        let evicted = if idle.is_some() {
            Evicted::Idle
        } else {
            Evicted::Slow
        };
        let r = w.remove(idle.unwrap_or(0))?;
        let _ = r.stream.shutdown(std::net::Shutdown::Both);
        Some(evicted)
    }
}

/// Bytes received on the socket and not read yet.
fn pending_bytes(stream: &TcpStream) -> i32 {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to the pointer, which lives for the
    // call; the descriptor is open for as long as `stream` is.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut n) };
    if rc == 0 { n } else { 0 }
}

fn busy(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = write_response(
        &mut stream,
        &Response::text(503, "too many connections\n"),
        false,
    );
}

fn serve(mut stream: TcpStream, state: &HttpState, sent: &AtomicBool, head_read: impl FnOnce()) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let response = loop {
        match parse(&head) {
            Parsed::Complete { content_length, .. } if content_length > MAX_BODY_BYTES => {
                break Response::text(413, "request body too large\n");
            }
            Parsed::Complete { method, path, .. } => {
                head_read();
                let head_only = method == "HEAD";
                let r = route(&method, &path, state);
                let _ = write_response(&mut stream, &r, head_only);
                return;
            }
            Parsed::Invalid => break Response::text(400, "malformed request\n"),
            Parsed::TooLarge => break Response::text(431, "request head too large\n"),
            Parsed::Partial if head.len() >= MAX_HEAD_BYTES => {
                break Response::text(431, "request head too large\n");
            }
            Parsed::Partial => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break Response::text(408, "request timeout\n");
        }
        match stream.read(&mut buf) {
            Ok(0) => return, // the client went away
            Ok(n) => {
                sent.store(true, Ordering::Release);
                head.extend_from_slice(&buf[..n]);
            }
            Err(_) => break Response::text(408, "request timeout\n"),
        }
    };
    debug!(status = response.status, "bad request");
    let _ = write_response(&mut stream, &response, false);
}

pub enum Parsed {
    Complete {
        method: String,
        path: String,
        /// The announced body length (never read).
        content_length: u64,
    },
    Partial,
    Invalid,
    /// More headers than the server reads.
    TooLarge,
}

/// Parses a request head; anything after it (a body) is ignored.
pub fn parse(head: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => match (req.method, req.path) {
            (Some(m), Some(p)) => Parsed::Complete {
                method: m.to_string(),
                path: p.to_string(),
                content_length: req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                    .unwrap_or(0),
            },
            _ => Parsed::Invalid,
        },
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => Parsed::TooLarge,
        Err(_) => Parsed::Invalid,
    }
}

/// The answer to a request, without any I/O.
pub fn route(method: &str, target: &str, state: &HttpState) -> Response {
    let path = target.split(['?', '#']).next().unwrap_or("");
    if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return Response::text(404, "not found; try /metrics, /healthz or /readyz\n");
    }
    if method != "GET" && method != "HEAD" {
        return Response {
            allow: true,
            ..Response::text(405, "method not allowed\n")
        };
    }
    match path {
        "/metrics" => Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: state.exporter.render(),
            allow: false,
        },
        "/healthz" => {
            let age = state.status.since_heartbeat();
            if age <= state.liveness_limit {
                Response::text(200, "ok\n")
            } else {
                Response::text(
                    503,
                    format!(
                        "refresh loop shows no progress for {:.0}s (limit {:.0}s)\n",
                        age.as_secs_f64(),
                        state.liveness_limit.as_secs_f64()
                    ),
                )
            }
        }
        _ => {
            let s = &state.status;
            if !s.delivered_once() {
                Response::text(503, "no tested batch delivered yet\n")
            } else if !s.source_healthy() {
                Response::text(503, "no healthy source\n")
            } else {
                Response::text(200, "ready\n")
            }
        }
    }
}

fn write_response(stream: &mut TcpStream, r: &Response, head_only: bool) -> std::io::Result<()> {
    let reason = match r.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let allow = if r.allow { "Allow: GET, HEAD\r\n" } else { "" };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        r.status,
        r.content_type,
        r.body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(r.body.as_bytes())?;
    }
    stream.flush()
}
