//! Pushing the metrics to a Prometheus Pushgateway, for nodes nobody scrapes.
//! A gateway that is down is logged (once per change) and counted; it never
//! stops the refreshing.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use metrics::counter;
use tracing::{info, warn};

use super::exporter::Exporter;
use super::names;

pub const JOB: &str = "random-refresher";
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// A gateway that does not even accept is given up on sooner.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// `url` is the redacted one; `reason` has any credentials cut out.
    #[error("push to {url} failed: {reason}")]
    Http { url: String, reason: String },
}

/// A gateway URL split into what is sent and what may be shown: credentials
/// given as `http://user:pass@host` go into an Authorization header and
/// never into a log line or an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayUrl {
    /// Without the userinfo.
    pub url: String,
    /// `Basic …` for the userinfo, if any.
    pub authorization: Option<String>,
    userinfo: Option<String>,
}

impl GatewayUrl {
    pub fn parse(gateway: &str) -> Self {
        let (scheme, rest) = gateway.split_once("://").unwrap_or(("http", gateway));
        let authority_end = rest.find('/').unwrap_or(rest.len());
        match rest[..authority_end].rsplit_once('@') {
            Some((userinfo, host)) => {
                use base64::Engine;
                let encoded = base64::engine::general_purpose::STANDARD.encode(userinfo);
                Self {
                    url: format!("{scheme}://{host}{}", &rest[authority_end..]),
                    authorization: Some(format!("Basic {encoded}")),
                    userinfo: Some(userinfo.to_string()),
                }
            }
            None => Self {
                url: gateway.to_string(),
                authorization: None,
                userinfo: None,
            },
        }
    }

    /// `text` with the credentials cut out, for errors from the HTTP client.
    pub fn redact(&self, text: &str) -> String {
        match &self.userinfo {
            Some(u) if !u.is_empty() => text.replace(u.as_str(), "***"),
            _ => text.to_string(),
        }
    }
}

pub struct Pusher {
    agent: ureq::Agent,
    url: String,
    gateway: GatewayUrl,
    exporter: Arc<Exporter>,
    /// Failed pushes, from 0 so that `increase()` sees the first one.
    errors: metrics::Counter,
    failing: bool,
}

impl Pusher {
    pub fn new(gateway: &str, instance: &str, exporter: Arc<Exporter>) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(PUSH_TIMEOUT))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .build()
            .into();
        let gateway = GatewayUrl::parse(gateway);
        Self {
            agent,
            url: group_url(&gateway.url, instance),
            gateway,
            errors: exporter.registry().make(|| {
                let errors = counter!(names::PUSH_ERRORS);
                errors.absolute(0);
                errors
            }),
            exporter,
            failing: false,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Replaces this instance's group on the gateway with the current
    /// metrics, once; the caller reports a failure (`once` does, in its
    /// exit code).
    pub fn push_once(&mut self) -> Result<(), PushError> {
        let body = self.exporter.render();
        let mut request = self
            .agent
            .put(&self.url)
            .header("Content-Type", "text/plain; version=0.0.4");
        if let Some(auth) = &self.gateway.authorization {
            request = request.header("Authorization", auth);
        }
        let result = request
            .send(body.as_bytes())
            .map(drop)
            .map_err(|e| PushError::Http {
                url: self.url.clone(),
                reason: self.gateway.redact(&e.to_string()),
            });
        if result.is_err() {
            self.errors.increment(1);
        }
        result
    }

    /// One push of the daemon's push loop: a failure is counted and logged
    /// once per change of state, and refreshing goes on.
    pub fn push(&mut self) -> Result<(), PushError> {
        let result = self.push_once();
        match &result {
            Ok(()) if self.failing => {
                info!(url = %self.url, "pushes reach the Pushgateway again");
                self.failing = false;
            }
            Ok(()) => {}
            Err(e) => {
                if !self.failing {
                    warn!(error = %e, "push failed; refreshing goes on");
                    self.failing = true;
                }
            }
        }
        result
    }

    /// Pushes every `interval` on a thread of its own until the returned
    /// handle is dropped.
    pub fn spawn(mut self, interval: Duration) -> std::io::Result<PushLoop> {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("push".into())
            .spawn(move || {
                loop {
                    let _ = self.push();
                    match rx.recv_timeout(interval) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                }
            })?;
        Ok(PushLoop {
            _stop: tx,
            _thread: thread,
        })
    }
}

/// A running push loop; dropping it ends the loop at its next wake-up.
pub struct PushLoop {
    _stop: Sender<()>,
    _thread: JoinHandle<()>,
}

/// `{gateway}/metrics/job/random-refresher/instance/{instance}`, with the
/// instance percent-encoded. A `/` is refused by the command line: the
/// gateway would split the path on it even when encoded.
pub fn group_url(gateway: &str, instance: &str) -> String {
    let encoded: String = instance
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!(
        "{}/metrics/job/{JOB}/instance/{encoded}",
        gateway.trim_end_matches('/')
    )
}

/// This host's name, the default `instance`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url_for_a_header() {
        let g = GatewayUrl::parse("http://admin:s3cr3t@pgw:9091/base");
        assert_eq!(g.url, "http://pgw:9091/base");
        assert_eq!(g.authorization.as_deref(), Some("Basic YWRtaW46czNjcjN0"));
        assert_eq!(
            g.redact("failed for admin:s3cr3t@pgw"),
            "failed for ***@pgw"
        );
        let plain = GatewayUrl::parse("http://pgw:9091");
        assert_eq!(
            (plain.url.as_str(), plain.authorization),
            ("http://pgw:9091", None)
        );
    }

    #[test]
    fn group_urls_are_encoded() {
        assert_eq!(
            group_url("http://pgw:9091/", "node-1.example"),
            "http://pgw:9091/metrics/job/random-refresher/instance/node-1.example"
        );
        assert_eq!(
            group_url("http://pgw:9091", "a b"),
            "http://pgw:9091/metrics/job/random-refresher/instance/a%20b"
        );
    }
}
