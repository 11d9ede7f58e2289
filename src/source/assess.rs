//! A source's online min-entropy assessment: tested bytes are cut into
//! windows, and the windows the budget allows are assessed on a thread of
//! their own, so that the refresh loop never waits for an assessment (one
//! 1,000,000-sample window takes a good fraction of a second).
//!
//! At most one assessment runs at a time in the whole process (one holds up
//! to about 90 MB while it runs, on the most repetitive input measured), so
//! several sources never add up; a window that completes while one runs is
//! not assessed. The newest finished assessment is the one that counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::health::entropy::{self, Assessment};
use crate::health::estimate::{Budget, DAEMON_BUDGET, Sampling, Window, Windows};

/// What one finished assessment gives back.
pub struct Assessed {
    pub assessment: Assessment,
    pub took: Duration,
}

pub struct OnlineAssessment {
    windows: Windows,
    budget: Budget,
    started: Instant,
    running: Option<JoinHandle<Option<Assessed>>>,
    last: Option<Assessment>,
    /// Set while any source's assessment runs.
    busy: Arc<AtomicBool>,
}

/// Clears the process's "an assessment runs" flag however the thread ends.
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl OnlineAssessment {
    /// `busy` is shared by every source of the process.
    pub fn new(window: usize, sampling: Sampling, busy: Arc<AtomicBool>) -> Self {
        Self {
            busy,
            windows: Windows::new(window, sampling),
            budget: Budget::new(DAEMON_BUDGET),
            started: Instant::now(),
            running: None,
            last: None,
        }
    }

    /// The newest finished assessment.
    pub fn last(&self) -> Option<&Assessment> {
        self.last.as_ref()
    }

    /// Feeds tested bytes; starts an assessment when a window completes,
    /// none is running, and the sampling rule and budget allow.
    pub fn feed(&mut self, bytes: &[u8]) {
        let Some(window) = self.windows.feed(bytes) else {
            return;
        };
        let within_budget = self.windows.sampling() != Sampling::Budget
            || self.budget.allows(self.started.elapsed());
        if self.running.is_none()
            && within_budget
            && self
                .busy
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            self.start(window);
        }
    }

    fn start(&mut self, window: Window) {
        let running = Running(Arc::clone(&self.busy));
        let spawned = std::thread::Builder::new()
            .name("assess".into())
            .spawn(move || {
                let _running = running;
                let started = Instant::now();
                let assessment = entropy::assess(&window.samples, 8).ok()?;
                Some(Assessed {
                    assessment,
                    took: started.elapsed(),
                })
            });
        // No thread (the process is at its limit): this window is skipped.
        self.running = spawned.ok();
    }

    /// The assessment that finished since the last call, if one did.
    pub fn poll(&mut self) -> Option<Assessed> {
        if !self.running.as_ref()?.is_finished() {
            return None;
        }
        let done = self.running.take()?.join().ok().flatten()?;
        self.budget.charge(done.took);
        self.last = Some(done.assessment.clone());
        Some(done)
    }
}
