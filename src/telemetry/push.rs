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

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("push to {url} failed: {source}")]
    Http {
        url: String,
        source: Box<ureq::Error>,
    },
}

pub struct Pusher {
    agent: ureq::Agent,
    url: String,
    exporter: Arc<Exporter>,
    failing: bool,
}

impl Pusher {
    pub fn new(gateway: &str, instance: &str, exporter: Arc<Exporter>) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(PUSH_TIMEOUT))
            .build()
            .into();
        Self {
            agent,
            url: group_url(gateway, instance),
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
        let result = self
            .agent
            .put(&self.url)
            .header("Content-Type", "text/plain; version=0.0.4")
            .send(body.as_bytes())
            .map(drop)
            .map_err(|e| PushError::Http {
                url: self.url.clone(),
                source: Box::new(e),
            });
        if result.is_err() {
            counter!(names::PUSH_ERRORS).increment(1);
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
