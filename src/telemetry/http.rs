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
//! With a web configuration file (`--web-config-file`, see
//! [`super::web_config`]) each connection is TLS, by rustls, its handshake
//! inside the same request deadline, and every path but the probes needs a
//! Basic-auth user (401 with a challenge otherwise).
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
pub use super::web_config::TlsReloader;
use super::web_config::Users;

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
    /// Basic-auth users every path but the probes needs; None: open.
    pub users: Option<Users>,
}

/// A request as the router sees it.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The `Authorization` header, if sent.
    pub authorization: Option<String>,
    /// The announced body length (never read).
    pub content_length: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// One more header line (`Allow`, `WWW-Authenticate`), with its CRLF.
    pub header: &'static str,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            header: "",
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

/// Starts serving on `listener`, over TLS when `tls` is given; returns the
/// bound address.
pub fn spawn(
    listener: TcpListener,
    state: HttpState,
    tls: Option<TlsReloader>,
) -> std::io::Result<SocketAddr> {
    let local = listener.local_addr()?;
    let state = Arc::new(state);
    let ceiling = nofile_limit().map_or(MAX_CONNECTIONS, connection_ceiling);
    std::thread::Builder::new()
        .name("http-accept".into())
        .spawn(move || accept_loop(&listener, &state, ceiling, tls))?;
    Ok(local)
}

fn accept_loop(
    listener: &TcpListener,
    state: &Arc<HttpState>,
    ceiling: usize,
    mut tls: Option<TlsReloader>,
) {
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
                    busy(stream, tls.is_some());
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
            busy(stream, tls.is_some());
            continue;
        };
        let tls_config = tls.as_mut().map(TlsReloader::current);
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
                if let Some(conn) = Conn::new(stream, tls_config) {
                    serve(conn, &state, &sent, || slot.waiting.remove(slot.id));
                }
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
    /// short of its head; None if every connection has its request. A
    /// request whose whole head waits in its socket, unread because its
    /// thread has not run yet (a probe, on a busy machine), counts as had:
    /// else clients reconnecting faster than threads start would make a
    /// probe the oldest and close it.
    fn evict(&self) -> Option<Evicted> {
        let mut w = self.lock();
        let unread = |r: &Reading| !r.sent.load(Ordering::Acquire);
        let idle = w
            .iter()
            .position(|r| unread(r) && pending_bytes(&r.stream) == 0);
        let (evicted, at) = match idle {
            Some(at) => (Evicted::Idle, at),
            None => (
                Evicted::Slow,
                w.iter()
                    .position(|r| !(unread(r) && head_waiting(&r.stream)))?,
            ),
        };
        let r = w.remove(at)?;
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

/// Whether a plain-HTTP request head waiting in the socket, looked at
/// without taking it (`MSG_PEEK`), is already one the thread would answer
/// at once, by the same parser.
fn head_waiting(stream: &TcpStream) -> bool {
    use nix::sys::socket::{MsgFlags, recv};
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; MAX_HEAD_BYTES];
    let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
    match recv(stream.as_raw_fd(), &mut buf, flags) {
        Ok(n) => !matches!(parse(&buf[..n]), Parsed::Partial),
        Err(_) => false,
    }
}

/// Turns a newcomer away: 503 in plain HTTP; over TLS the connection is
/// only closed, as a handshake would cost more than the answer is worth.
fn busy(mut stream: TcpStream, tls: bool) {
    if tls {
        return;
    }
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = write_response(
        &mut stream,
        &Response::text(503, "too many connections\n"),
        false,
    );
}

/// One connection, in plain HTTP or TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl Conn {
    fn new(stream: TcpStream, tls: Option<Arc<rustls::ServerConfig>>) -> Option<Self> {
        match tls {
            None => Some(Self::Plain(stream)),
            Some(config) => match rustls::ServerConnection::new(config) {
                Ok(c) => Some(Self::Tls(Box::new(rustls::StreamOwned::new(c, stream)))),
                Err(e) => {
                    warn!(error = %e, "cannot start a TLS connection");
                    None
                }
            },
        }
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(s) => &s.sock,
        }
    }

    /// Sends TLS's close_notify, so that a client tells a whole answer
    /// from a cut one.
    fn close(&mut self) {
        if let Self::Tls(s) = self {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf),
            Self::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(buf),
            Self::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Plain(s) => s.flush(),
            Self::Tls(s) => s.flush(),
        }
    }
}

fn serve(mut stream: Conn, state: &HttpState, sent: &AtomicBool, head_read: impl FnOnce()) {
    let _ = stream.tcp().set_write_timeout(Some(WRITE_TIMEOUT));
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let response = loop {
        match parse(&head) {
            Parsed::Complete(r) if r.content_length > MAX_BODY_BYTES => {
                break Response::text(413, "request body too large\n");
            }
            Parsed::Complete(request) => {
                head_read();
                let r = respond(&request, state);
                let _ = write_response(&mut stream, &r, request.method == "HEAD");
                stream.close();
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
        if left.is_zero() || stream.tcp().set_read_timeout(Some(left)).is_err() {
            break Response::text(408, "request timeout\n");
        }
        match stream.read(&mut buf) {
            Ok(0) => return, // the client went away
            Ok(n) => {
                sent.store(true, Ordering::Release);
                head.extend_from_slice(&buf[..n]);
            }
            // A failed TLS handshake (a plain-HTTP client, an unknown
            // certificate): nothing can be said to the client.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                debug!(error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => break Response::text(408, "request timeout\n"),
        }
    };
    debug!(status = response.status, "bad request");
    let _ = write_response(&mut stream, &response, false);
    stream.close();
}

pub enum Parsed {
    Complete(Request),
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
            (Some(m), Some(p)) => {
                let header = |name: &str| {
                    req.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .and_then(|h| std::str::from_utf8(h.value).ok())
                };
                Parsed::Complete(Request {
                    method: m.to_string(),
                    path: p.to_string(),
                    authorization: header("authorization").map(str::to_string),
                    content_length: header("content-length")
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0),
                })
            }
            _ => Parsed::Invalid,
        },
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => Parsed::TooLarge,
        Err(_) => Parsed::Invalid,
    }
}

/// The probes' paths, open whatever the web configuration says.
const PROBES: [&str; 2] = ["/healthz", "/readyz"];

/// The answer to a request, credentials checked, without any I/O.
pub fn respond(request: &Request, state: &HttpState) -> Response {
    if !authorized(request, state.users.as_ref()) {
        return Response {
            header: "WWW-Authenticate: Basic realm=\"random-refresher\", charset=\"UTF-8\"\r\n",
            ..Response::text(401, "unauthorized\n")
        };
    }
    route(&request.method, &request.path, state)
}

/// Whether the request may be answered: always for the probes and when no
/// users are configured, else only with a user's right password.
pub fn authorized(request: &Request, users: Option<&Users>) -> bool {
    let path = request.path.split(['?', '#']).next().unwrap_or("");
    match users {
        None => true,
        Some(_) if PROBES.contains(&path) => true,
        Some(users) => users.allows(request.authorization.as_deref()),
    }
}

/// What the server serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Metrics,
    Healthz,
    Readyz,
}

/// The endpoint a request asks for (the query and fragment do not count),
/// or the answer for one that asks for none or with another method.
fn endpoint(method: &str, target: &str) -> Result<Endpoint, Response> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let endpoint = match path {
        "/metrics" => Endpoint::Metrics,
        "/healthz" => Endpoint::Healthz,
        "/readyz" => Endpoint::Readyz,
        _ => {
            return Err(Response::text(
                404,
                "not found; try /metrics, /healthz or /readyz\n",
            ));
        }
    };
    if method != "GET" && method != "HEAD" {
        return Err(Response {
            header: "Allow: GET, HEAD\r\n",
            ..Response::text(405, "method not allowed\n")
        });
    }
    Ok(endpoint)
}

/// The answer to a request, without any I/O.
pub fn route(method: &str, target: &str, state: &HttpState) -> Response {
    match endpoint(method, target) {
        Err(answer) => answer,
        Ok(Endpoint::Metrics) => Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: state.exporter.render(),
            header: "",
        },
        Ok(Endpoint::Healthz) => healthz(&state.status, state.liveness_limit),
        Ok(Endpoint::Readyz) => readyz(&state.status),
    }
}

/// Live while the loop shows progress within `limit`.
fn healthz(status: &LoopStatus, limit: Duration) -> Response {
    let age = status.since_heartbeat();
    if age <= limit {
        return Response::text(200, "ok\n");
    }
    Response::text(
        503,
        format!(
            "refresh loop shows no progress for {:.0}s (limit {:.0}s)\n",
            age.as_secs_f64(),
            limit.as_secs_f64()
        ),
    )
}

/// Ready once a tested batch was delivered, while some source is healthy.
fn readyz(status: &LoopStatus) -> Response {
    if !status.delivered_once() {
        Response::text(503, "no tested batch delivered yet\n")
    } else if !status.source_healthy() {
        Response::text(503, "no healthy source\n")
    } else {
        Response::text(200, "ready\n")
    }
}

fn write_response(stream: &mut impl Write, r: &Response, head_only: bool) -> std::io::Result<()> {
    let reason = match r.status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
        r.status,
        r.content_type,
        r.body.len(),
        r.header
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(r.body.as_bytes())?;
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(head: &str) -> Request {
        match parse(head.as_bytes()) {
            Parsed::Complete(r) => r,
            _ => panic!("not a complete request: {head:?}"),
        }
    }

    #[test]
    fn the_authorization_header_is_read_in_any_case() {
        let r = request("GET /metrics HTTP/1.1\r\nhost: x\r\nauthorization: Basic YTpi\r\n\r\n");
        assert_eq!(r.authorization.as_deref(), Some("Basic YTpi"));
        assert_eq!(request("GET / HTTP/1.1\r\n\r\n").authorization, None);
    }

    #[test]
    fn with_users_only_the_probes_answer_without_a_password() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let config = format!("basic_auth_users:\n  prometheus: {hash}\n");
        let users = crate::telemetry::web_config::parse(&config, "/".as_ref())
            .unwrap()
            .users
            .unwrap();
        let good = "Basic cHJvbWV0aGV1czpzM2NyZXQ="; // prometheus:s3cret
        let get = |path: &str, auth: Option<&str>| {
            let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
            request(&format!("GET {path} HTTP/1.1\r\n{auth}\r\n"))
        };
        for probe in ["/healthz", "/readyz", "/readyz?verbose"] {
            assert!(authorized(&get(probe, None), Some(&users)), "{probe}");
        }
        for path in ["/metrics", "/", "/metrics/../healthz", "/nothing"] {
            assert!(!authorized(&get(path, None), Some(&users)), "{path}");
            assert!(authorized(&get(path, Some(good)), Some(&users)), "{path}");
        }
        assert!(!authorized(
            &get("/metrics", Some("Basic cHJvbWV0aGV1czp3cm9uZw==")),
            Some(&users)
        ));
        assert!(authorized(&get("/metrics", None), None), "no users: open");
    }

    #[test]
    fn each_path_and_method_gets_its_endpoint_or_its_refusal() {
        for (target, want) in [
            ("/metrics", Endpoint::Metrics),
            ("/healthz", Endpoint::Healthz),
            ("/readyz", Endpoint::Readyz),
            ("/readyz?verbose", Endpoint::Readyz),
            ("/metrics#x", Endpoint::Metrics),
        ] {
            assert_eq!(endpoint("GET", target), Ok(want), "{target}");
            assert_eq!(endpoint("HEAD", target), Ok(want), "{target}");
        }
        for target in ["/", "/readyz/", "/metricsx", "/healthz/../metrics", ""] {
            assert_eq!(endpoint("GET", target).unwrap_err().status, 404, "{target}");
        }
        let refused = endpoint("POST", "/readyz").unwrap_err();
        assert_eq!(
            (refused.status, refused.header),
            (405, "Allow: GET, HEAD\r\n")
        );
        assert_eq!(endpoint("POST", "/nothing").unwrap_err().status, 404);
    }

    #[test]
    fn readyz_waits_for_a_delivery_and_a_healthy_source_and_healthz_for_progress() {
        let status = LoopStatus::default();
        let ready = |s: &LoopStatus| {
            let r = readyz(s);
            (r.status, r.body)
        };
        assert_eq!(
            ready(&status),
            (503, "no tested batch delivered yet\n".into())
        );
        status.cycle_finished(false, true);
        assert_eq!(ready(&status).0, 503, "a failed cycle delivered nothing");
        status.cycle_finished(true, false);
        assert_eq!(ready(&status), (503, "no healthy source\n".into()));
        status.cycle_finished(true, true);
        assert_eq!(ready(&status), (200, "ready\n".into()));
        // Once delivered, a later failed cycle keeps it delivered.
        status.cycle_finished(false, true);
        assert_eq!(ready(&status).0, 200);
        assert_eq!(healthz(&status, Duration::from_secs(3600)).status, 200);
        std::thread::sleep(Duration::from_millis(5));
        let stale = healthz(&status, Duration::ZERO);
        assert_eq!(stale.status, 503);
        assert!(stale.body.contains("no progress"), "{}", stale.body);
    }

    #[test]
    fn extra_headers_are_written_whole() {
        let mut out = Vec::new();
        let r = Response {
            header: "WWW-Authenticate: Basic realm=\"random-refresher\"\r\n",
            ..Response::text(401, "unauthorized\n")
        };
        write_response(&mut out, &r, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{text}");
        assert!(text.contains("\r\nWWW-Authenticate: Basic realm=\"random-refresher\"\r\nConnection: close\r\n\r\nunauthorized\n"), "{text}");
    }
}
