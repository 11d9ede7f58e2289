//! systemd's service protocol: `READY=1` once the first tested batch has
//! been delivered (a unit of `Type=notify` is then started), and the
//! watchdog fed while the loop makes progress, so that a hung loop is
//! restarted by systemd (`WatchdogSec=`). Outside systemd (no
//! `NOTIFY_SOCKET`) nothing is sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

#[derive(Debug)]
pub struct Notifier {
    /// The watchdog interval systemd asked for, if any.
    watchdog: Option<Duration>,
    started: Instant,
    last_ping_ms: AtomicU64,
}

impl Notifier {
    /// What the environment systemd set up asks for.
    pub fn from_env() -> Self {
        Self {
            watchdog: sd_notify::watchdog_enabled(),
            started: Instant::now(),
            last_ping_ms: AtomicU64::new(0),
        }
    }

    /// The first tested batch is delivered: the service is up.
    pub fn ready(&self, status: &str) {
        let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)]);
        self.ping();
    }

    /// How often the loop should show progress while it waits.
    pub fn ping_every(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 4)
    }

    /// The loop made progress: feed the watchdog, at most four times per
    /// watchdog interval.
    pub fn progress(&self) {
        let Some(every) = self.ping_every() else {
            return;
        };
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_ping_ms.load(Ordering::Relaxed);
        if last == 0 || now.saturating_sub(last) >= every.as_millis() as u64 {
            self.ping();
        }
    }

    fn ping(&self) {
        if self.watchdog.is_some() {
            let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            let now = self.started.elapsed().as_millis() as u64;
            self.last_ping_ms.store(now.max(1), Ordering::Relaxed);
        }
    }
}
