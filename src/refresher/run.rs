//! The daemon's loop around the cycles: the wait between them, and the
//! signals served meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::Instant;

use tracing::info;

use super::{CycleOutcome, Refresher, TooManyFailures};

/// What a signal asks of the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Shutdown,
    ReopenSources,
    LogStatistics,
}

impl Refresher {
    /// The daemon loop. Returns when shutdown is asked for, or fails after
    /// too many failed cycles in a row.
    pub fn run(
        &mut self,
        requests: &Receiver<Request>,
        stop: &AtomicBool,
    ) -> Result<(), TooManyFailures> {
        info!(interval = %humantime::format_duration(self.interval), batch_size = self.batch.len(), "refreshing");
        loop {
            let started = Instant::now();
            match self.cycle() {
                CycleOutcome::Stopped => return Ok(()),
                CycleOutcome::Delivered { bytes } => tracing::debug!(bytes, "cycle delivered"),
                _ if self.consecutive_failures >= self.max_failed_cycles => {
                    return Err(TooManyFailures {
                        failed: self.consecutive_failures,
                        limit: self.max_failed_cycles,
                    });
                }
                _ => {}
            }
            if !self.wait(started + self.interval, requests, stop) {
                return Ok(());
            }
        }
    }

    /// Waits until `deadline`, serving signals as they come; false when
    /// shutdown is asked for. A cycle longer than the interval leaves no
    /// wait, but the requests that came meanwhile are still served.
    fn wait(&mut self, deadline: Instant, requests: &Receiver<Request>, stop: &AtomicBool) -> bool {
        loop {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            // Under systemd's watchdog, wake up to feed it while waiting.
            let ping = self.status.as_ref().and_then(|s| s.waiting_ping_every());
            let nap = ping.map_or(left, |p| left.min(p));
            let request = if left.is_zero() {
                requests.try_recv().map_err(|e| match e {
                    TryRecvError::Empty => RecvTimeoutError::Timeout,
                    TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            } else {
                requests.recv_timeout(nap)
            };
            match request {
                Ok(Request::Shutdown) | Err(RecvTimeoutError::Disconnected) => return false,
                Ok(Request::ReopenSources) => self.pool.reopen(),
                Ok(Request::LogStatistics) => self.log_statistics(),
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Some(s) = &self.status {
                        s.waiting();
                    }
                }
                Err(RecvTimeoutError::Timeout) => return true,
            }
        }
    }
}
