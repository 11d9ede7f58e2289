//! A source's online min-entropy assessment: tested bytes are cut into
//! windows, and the windows the budget allows are assessed on a thread of
//! their own, so that the refresh loop never waits for an assessment (one
//! 1,000,000-sample window takes a good fraction of a second).
//!
//! One worker thread serves every source of the process, one window at a
//! time: one assessment holds up to about 90 MB while it runs (on the most
//! repetitive input measured), so several sources never add up; and the
//! same thread, hence the same allocator arena, serves every window, so the
//! memory one assessment leaves to the allocator is what the next one uses
//! (a new thread per window grew the daemon's settled resident set by 14 MB
//! over 12 windows in the ten-minute soak). A window that completes while
//! the worker is busy is not assessed. The newest finished assessment is
//! the one that counts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::health::entropy::{self, Assessment};
use crate::health::estimate::{Budget, DAEMON_BUDGET, Sampling, Window, Windows};

/// What one finished assessment gives back.
pub struct Assessed {
    pub assessment: Assessment,
    pub took: Duration,
}

/// One window to assess, and where its result goes.
struct Job {
    window: Window,
    reply: Sender<Assessed>,
}

/// The process's one assessment thread, started with the first window.
#[derive(Default)]
pub struct Assessor {
    jobs: Mutex<Option<Sender<Job>>>,
    /// Set from a job's hand-over until its result is sent.
    busy: Arc<AtomicBool>,
}

impl Assessor {
    /// Hands `window` to the worker, unless it is busy; the receiver gets
    /// the result.
    fn submit(&self, window: Window) -> Option<Receiver<Assessed>> {
        self.busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        let (reply, result) = channel();
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let job = Job { window, reply };
        let sent = match jobs.as_ref() {
            Some(tx) => tx.send(job).map_err(|e| e.0),
            None => Err(job),
        };
        if let Err(job) = sent {
            // No worker yet, or it is gone: start one for this job.
            match self.start() {
                Some(tx) if tx.send(job).is_ok() => *jobs = Some(tx),
                _ => {
                    self.busy.store(false, Ordering::Release);
                    return None;
                }
            }
        }
        Some(result)
    }

    fn start(&self) -> Option<Sender<Job>> {
        let (tx, rx) = channel::<Job>();
        let busy = Arc::clone(&self.busy);
        std::thread::Builder::new()
            .name("assess".into())
            .spawn(move || {
                for job in rx {
                    let started = Instant::now();
                    let assessed = entropy::assess(&job.window.samples, 8).ok();
                    drop(job.window);
                    busy.store(false, Ordering::Release);
                    if let Some(assessment) = assessed {
                        let took = started.elapsed();
                        let _ = job.reply.send(Assessed { assessment, took });
                    }
                }
            })
            .ok()?;
        Some(tx)
    }
}

pub struct OnlineAssessment {
    windows: Windows,
    budget: Budget,
    started: Instant,
    /// The result of this source's window being assessed, when one is.
    running: Option<Receiver<Assessed>>,
    /// Shared by every source of the process.
    assessor: Arc<Assessor>,
}

impl OnlineAssessment {
    pub fn new(window: usize, sampling: Sampling, assessor: Arc<Assessor>) -> Self {
        Self {
            assessor,
            windows: Windows::new(window, sampling),
            budget: Budget::new(DAEMON_BUDGET),
            started: Instant::now(),
            running: None,
        }
    }

    /// Feeds tested bytes; hands a window to the worker when one completes,
    /// this source has none being assessed, the worker is free, and the
    /// sampling rule and budget allow.
    pub fn feed(&mut self, bytes: &[u8]) {
        let Some(window) = self.windows.feed(bytes) else {
            return;
        };
        let within_budget = self.windows.sampling() != Sampling::Budget
            || self.budget.allows(self.started.elapsed());
        if self.running.is_none() && within_budget {
            self.running = self.assessor.submit(window);
        }
    }

    /// The assessment that finished since the last call, if one did.
    pub fn poll(&mut self) -> Option<Assessed> {
        let done = match self.running.as_ref()?.try_recv() {
            Ok(done) => done,
            Err(TryRecvError::Empty) => return None,
            // The worker dropped the job (an assessment it could not make).
            Err(TryRecvError::Disconnected) => {
                self.running = None;
                return None;
            }
        };
        self.running = None;
        self.budget.charge(done.took);
        Some(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_worker_serves_every_window_one_at_a_time() {
        let assessor = Arc::new(Assessor::default());
        let mut x = crate::test_support::XorShift(0x2545_f491_4f6c_dd1d);
        let mut bytes = |n: usize| x.top_bytes(n);
        let (mut a, mut b) = (
            OnlineAssessment::new(4096, Sampling::Every(1), Arc::clone(&assessor)),
            OnlineAssessment::new(4096, Sampling::Every(1), Arc::clone(&assessor)),
        );
        let wait = |s: &mut OnlineAssessment| {
            let started = Instant::now();
            loop {
                if let Some(done) = s.poll() {
                    return done;
                }
                assert!(started.elapsed() < Duration::from_secs(60), "no result");
                std::thread::sleep(Duration::from_millis(2));
            }
        };
        a.feed(&bytes(4096));
        assert!(a.running.is_some());
        assert_eq!(wait(&mut a).assessment.samples, 4096);
        // While the worker is busy (with any source's window), a window
        // that completes is not assessed.
        assessor.busy.store(true, Ordering::Release);
        b.feed(&bytes(4096));
        assert!(b.running.is_none());
        assessor.busy.store(false, Ordering::Release);
        // Free again: b's next window goes to the same worker.
        b.feed(&bytes(4096));
        assert_eq!(wait(&mut b).assessment.samples, 4096);
        assert!(!assessor.busy.load(Ordering::Acquire));
    }
}
