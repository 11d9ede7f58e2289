//! The metrics and health server: `/metrics`, `/healthz`, `/readyz`.
//!
//! Small on purpose: one request per connection (answered with
//! `Connection: close`), a bounded number of connections at once, a cap on
//! the request head, and a deadline for the whole request, so that neither a
//! flood nor a slow client can hold the server or touch the refresh loop,
//! which never waits on it. Parsing is httparse's.
//!
//! When every slot is taken, the connection that has waited longest for its
//! request head is closed to make room: idle and slow-loris clients are the
//! oldest, while a probe sends its request the moment it connects, so the
//! kubelet's probes get through a flood of idle connections.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::LoopStatus;
use super::exporter::Exporter;

/// Connections served at once; past this the oldest still waiting for its
/// request head is closed, or, if none waits, the newcomer gets 503.
pub const MAX_CONNECTIONS: usize = 64;
/// Largest request head (request line and headers) read.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Time a client has to send its request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_HEADERS: usize = 64;

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

/// Binds and starts serving; returns the bound address (useful with port 0).
pub fn spawn(addr: SocketAddr, state: HttpState) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    let state = Arc::new(state);
    std::thread::Builder::new()
        .name("http-accept".into())
        .spawn(move || {
            let active = Arc::new(AtomicUsize::new(0));
            let waiting = Arc::new(Waiting::default());
            for (id, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { continue };
                if active.load(Ordering::Acquire) >= MAX_CONNECTIONS && !waiting.evict_oldest() {
                    busy(stream);
                    continue;
                }
                active.fetch_add(1, Ordering::AcqRel);
                if let Ok(handle) = stream.try_clone() {
                    waiting.push(id, handle);
                }
                let (state, active, waiting) = (
                    Arc::clone(&state),
                    Arc::clone(&active),
                    Arc::clone(&waiting),
                );
                let spawned = std::thread::Builder::new()
                    .name("http-conn".into())
                    .stack_size(256 * 1024)
                    .spawn(move || {
                        serve(stream, &state, || waiting.remove(id));
                        waiting.remove(id);
                        active.fetch_sub(1, Ordering::AcqRel);
                    });
                if let Err(e) = spawned {
                    warn!(error = %e, "cannot start a connection thread");
                }
            }
        })?;
    Ok(local)
}

/// Connections still reading their request head, oldest first.
#[derive(Default)]
struct Waiting(Mutex<VecDeque<(usize, TcpStream)>>);

impl Waiting {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(usize, TcpStream)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, id: usize, stream: TcpStream) {
        self.lock().push_back((id, stream));
    }

    fn remove(&self, id: usize) {
        self.lock().retain(|(i, _)| *i != id);
    }

    /// Closes the connection that has waited longest; false if none waits.
    fn evict_oldest(&self) -> bool {
        let oldest = self.lock().pop_front();
        match oldest {
            Some((_, stream)) => {
                let _ = stream.shutdown(std::net::Shutdown::Both);
                true
            }
            None => false,
        }
    }
}

fn busy(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = write_response(
        &mut stream,
        &Response::text(503, "too many connections\n"),
        false,
    );
}

fn serve(mut stream: TcpStream, state: &HttpState, head_read: impl FnOnce()) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let response = loop {
        match parse(&head) {
            Parsed::Complete { method, path } => {
                head_read();
                let head_only = method == "HEAD";
                let r = route(&method, &path, state);
                let _ = write_response(&mut stream, &r, head_only);
                return;
            }
            Parsed::Invalid => break Response::text(400, "malformed request\n"),
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
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(_) => break Response::text(408, "request timeout\n"),
        }
    };
    debug!(status = response.status, "bad request");
    let _ = write_response(&mut stream, &response, false);
}

pub enum Parsed {
    Complete { method: String, path: String },
    Partial,
    Invalid,
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
            },
            _ => Parsed::Invalid,
        },
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => Parsed::Invalid,
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
