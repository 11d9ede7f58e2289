//! The refresh loop: each cycle reads one tested batch per sink from the
//! source pool and hands it to that sink, then waits for the interval or a
//! signal. The parts live where their job is: failover and backoff in
//! [`SourcePool`], the tests and the held-back block in each source's
//! [`crate::health::Gate`], delivery in [`SinkSet`], the hwrng quarantine in
//! [`QuarantinePolicy`]; this module only wires them for one cycle.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, counter, gauge};
use tracing::info;

use crate::health::{BLOCK_BYTES, Cutoffs, FailurePolicy};
use crate::kernel::{KernelPaths, Quarantine, QuarantineError};
use crate::sink::{QuarantinePolicy, SinkError, SinkSet, SinkSpec};
use crate::source::{FileId, PoolOptions, ReadLimits, SourcePool, SourceSpec};
use crate::telemetry::exporter::Exporter;
use crate::telemetry::{LoopStatus, names};

/// The largest batch: one allocation of this size is held for the run.
pub const MAX_BATCH_BYTES: usize = 1 << 30;

/// Everything the loop needs. Cutoffs are valid by construction; the rest
/// is checked by [`Refresher::new`].
#[derive(Clone, Debug)]
pub struct Config {
    pub sources: Vec<SourceSpec>,
    pub sinks: Vec<SinkSpec>,
    pub random_device: PathBuf,
    /// Tested bytes per sink per cycle.
    pub batch_size: usize,
    pub interval: Duration,
    pub entropy_per_byte: Option<crate::source::Credit>,
    /// Bytes per min-entropy estimate window, and one estimated in every so many.
    pub estimate_window: usize,
    pub estimate_every: u32,
    pub max_failed_cycles: u32,
    pub cutoffs: Cutoffs,
    /// The H the cutoffs were sized from, shown beside the estimate.
    pub claimed_min_entropy: f64,
    pub policy: FailurePolicy,
    pub limits: ReadLimits,
    pub kernel: KernelPaths,
    /// Hold the kernel's `rng_quality` at 0 while the hwrng source fails.
    pub quarantine: bool,
    /// The kernel's hwrng device: the source that is this same file is the
    /// one the quarantine judges.
    pub hwrng: PathBuf,
    /// Where the quarantine marker lives, to survive a crash.
    pub state_dir: Option<PathBuf>,
}

/// What a signal asks of the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Shutdown,
    ReopenSources,
    LogStatistics,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("--batch-size {0}: not a positive multiple of {BLOCK_BYTES} bytes up to 1 GiB")]
    BatchSize(usize),
    #[error("--entropy-per-byte {0}: outside 0 to 8 bits")]
    EntropyPerByte(f64),
    #[error("--source and --sink: at least one of each is needed")]
    Empty,
    #[error("--source: none of the sources can be opened ({reasons}){hint}")]
    NoSource {
        reasons: String,
        /// How to pass the device in, when running in a container.
        hint: &'static str,
    },
    #[error("--sink {spec}: {source}")]
    Sink { spec: SinkSpec, source: SinkError },
    #[error("--quarantine-hwrng: {0}")]
    Quarantine(#[from] QuarantineError),
    #[error(
        "--quarantine-hwrng: no --source is the hwrng device {0} (compared by device number, or by inode for other files); set --hwrng to the path of the device"
    )]
    NoHwrngSource(PathBuf),
}

#[derive(Debug, thiserror::Error)]
#[error(
    "{failed} refresh cycles failed in a row (--max-failed-cycles {limit}); exiting so that the failure shows"
)]
pub struct TooManyFailures {
    pub failed: u32,
    pub limit: u32,
}

/// The result of one cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CycleOutcome {
    /// Every sink received its own full tested batch.
    Delivered { bytes: usize },
    /// The sources ran out before every sink had its batch.
    NoBatch,
    /// Every batch was read but at least one sink failed.
    SinkFailed,
    /// Shutdown was asked for during the cycle.
    Stopped,
}

/// Running totals for the SIGUSR1 summary.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    cycles_ok: u64,
    cycles_failed: u64,
    bytes_delivered: u64,
}

pub struct Refresher {
    pool: SourcePool,
    sinks: SinkSet,
    quarantine: Option<QuarantinePolicy>,
    batch: Vec<u8>,
    interval: Duration,
    max_failed_cycles: u32,
    needs: crate::privileges::Needs,
    totals: Totals,
    consecutive_failures: u32,
    cycles: [Counter; 2],
    last_refresh: Gauge,
    status: Option<Arc<LoopStatus>>,
    exporter: Option<Arc<Exporter>>,
}

impl Refresher {
    /// Checks the configuration and opens the sources and sinks.
    pub fn new(config: Config) -> Result<Self, StartError> {
        let c = config;
        if c.batch_size == 0
            || !c.batch_size.is_multiple_of(BLOCK_BYTES)
            || c.batch_size > MAX_BATCH_BYTES
        {
            return Err(StartError::BatchSize(c.batch_size));
        }
        if let Some(crate::source::Credit::Bits(e)) = c.entropy_per_byte
            && !(0.0..=8.0).contains(&e)
        {
            return Err(StartError::EntropyPerByte(e));
        }
        if c.sources.is_empty() || c.sinks.is_empty() {
            return Err(StartError::Empty);
        }
        let options = PoolOptions {
            limits: c.limits.clone(),
            cutoffs: c.cutoffs,
            policy: c.policy,
            entropy_per_byte: c.entropy_per_byte,
            claimed_min_entropy: c.claimed_min_entropy,
            estimate_window: c.estimate_window,
            estimate_every: c.estimate_every,
            hwrng: FileId::of_path(&c.hwrng).ok(),
        };
        let pool =
            SourcePool::open(&c.sources, options).map_err(|reasons| StartError::NoSource {
                reasons,
                hint: match crate::kernel::in_container() {
                    true => "; for a container, pass the device: docker run --device /dev/hwrng",
                    false => "",
                },
            })?;
        if c.quarantine && !pool.has_hwrng() {
            return Err(StartError::NoHwrngSource(c.hwrng));
        }
        let sinks = SinkSet::open(&c.sinks, &c.random_device)
            .map_err(|(spec, source)| StartError::Sink { spec, source })?;
        let quarantine = match c.quarantine {
            true => Some(QuarantinePolicy::new(Quarantine::open(
                &c.kernel,
                c.state_dir.as_deref(),
            )?)),
            false => None,
        };
        let zero = |c: Counter| {
            c.absolute(0);
            c
        };
        Ok(Self {
            pool,
            sinks,
            quarantine,
            batch: vec![0u8; c.batch_size],
            interval: c.interval,
            max_failed_cycles: c.max_failed_cycles,
            needs: crate::privileges::Needs {
                sys_admin: c.sinks.contains(&SinkSpec::Kernel),
                reopen_as_other_user: c.sources.iter().any(|s| matches!(s, SourceSpec::Path(_))),
            },
            totals: Totals::default(),
            consecutive_failures: 0,
            cycles: ["ok", "failed"].map(|r| zero(counter!(names::CYCLES, "result" => r))),
            last_refresh: gauge!(names::LAST_REFRESH_TIMESTAMP),
            status: None,
            exporter: None,
        })
    }

    /// Shares the loop's progress with the health endpoints.
    pub fn with_status(mut self, status: Arc<LoopStatus>) -> Self {
        status.beat();
        self.status = Some(status);
        self
    }

    /// Lets the loop run the exporter's upkeep once a cycle.
    pub fn with_exporter(mut self, exporter: Arc<Exporter>) -> Self {
        self.exporter = Some(exporter);
        self
    }

    /// One cycle: for each sink in turn, read a tested batch and deliver it.
    pub fn cycle(&mut self) -> CycleOutcome {
        let outcome = self.deliver_batches();
        if let Some(q) = self.quarantine.as_mut()
            && q.update(self.pool.hwrng_standing())
        {
            self.pool.restart_hwrng();
        }
        let ok = matches!(outcome, CycleOutcome::Delivered { .. });
        if outcome != CycleOutcome::Stopped {
            self.cycles[usize::from(!ok)].increment(1);
            if ok {
                if self.totals.cycles_ok == 0 {
                    info!(
                        sinks = self.sinks.names(),
                        "first tested batch delivered to {}",
                        self.sinks.names()
                    );
                }
                self.totals.cycles_ok += 1;
                self.consecutive_failures = 0;
                self.last_refresh.set(crate::telemetry::unix_now());
            } else {
                self.totals.cycles_failed += 1;
                self.consecutive_failures += 1;
            }
        }
        if let Some(status) = &self.status {
            status.cycle_finished(ok, self.pool.any_up());
        }
        if let Some(exporter) = &self.exporter {
            exporter.upkeep();
        }
        outcome
    }

    fn deliver_batches(&mut self) -> CycleOutcome {
        let mut all_ok = true;
        for i in 0..self.sinks.len() {
            let filled = match self.pool.fill(&mut self.batch, self.status.as_deref()) {
                Err(crate::source::Stopped) => return CycleOutcome::Stopped,
                Ok(f) if f.bytes < self.batch.len() => return CycleOutcome::NoBatch,
                Ok(f) => f,
            };
            if self.sinks.deliver(i, &self.batch, filled.credit_bits) {
                self.totals.bytes_delivered += self.batch.len() as u64;
            } else {
                all_ok = false;
            }
        }
        match all_ok {
            true => CycleOutcome::Delivered {
                bytes: self.batch.len() * self.sinks.len(),
            },
            false => CycleOutcome::SinkFailed,
        }
    }

    /// Restores what the daemon changed in the kernel; call before exiting.
    pub fn finish(&mut self) {
        if let Some(q) = self.quarantine.as_mut() {
            q.finish();
        }
    }

    /// What the open sources and sinks still need once running.
    pub fn privilege_needs(&self) -> crate::privileges::Needs {
        self.needs
    }

    pub fn log_statistics(&self) {
        let t = &self.totals;
        let (blocks_passed, blocks_failed) = self.pool.block_totals();
        info!(
            cycles_ok = t.cycles_ok,
            cycles_failed = t.cycles_failed,
            blocks_passed,
            blocks_failed,
            bytes_delivered = t.bytes_delivered,
            sources_up = self.pool.up_count(),
            "statistics"
        );
    }

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
            let request = if left.is_zero() {
                requests.try_recv().map_err(|e| match e {
                    TryRecvError::Empty => RecvTimeoutError::Timeout,
                    TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            } else {
                requests.recv_timeout(left)
            };
            match request {
                Ok(Request::Shutdown) | Err(RecvTimeoutError::Disconnected) => return false,
                Ok(Request::ReopenSources) => self.pool.reopen(),
                Ok(Request::LogStatistics) => self.log_statistics(),
                Err(RecvTimeoutError::Timeout) => return true,
            }
        }
    }
}
