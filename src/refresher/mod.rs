//! The refresh loop: each cycle reads one tested batch per sink from the
//! source pool and hands it to that sink, then waits for the interval or a
//! signal. The parts live where their job is: failover and backoff in
//! [`SourcePool`], the tests and the held-back block in each source's
//! [`crate::health::Gate`], delivery in [`SinkSet`], the hwrng quarantine in
//! [`QuarantinePolicy`]; this module only wires them for one cycle.

mod config;
mod crng;
mod run;

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, counter, gauge};

use crate::sink::Batch;
use tracing::info;

pub use config::{Config, MAX_BATCH_BYTES, StartError, TooManyFailures, batch_size};
pub use run::Request;

use crate::kernel::Quarantine;
use crate::sink::{QuarantinePolicy, QuarantineRules, SinkSet, SinkSpec};
use crate::source::{SourcePool, SourceSpec};
use crate::telemetry::exporter::Exporter;
use crate::telemetry::source_metrics::SourceMetrics;
use crate::telemetry::{LoopStatus, Registry, names};

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
    batch: Batch,
    interval: Duration,
    max_failed_cycles: u32,
    needs: crate::privileges::Needs,
    totals: Totals,
    consecutive_failures: u32,
    cycles: [Counter; 2],
    last_refresh: Gauge,
    status: Option<Arc<LoopStatus>>,
    exporter: Option<Arc<Exporter>>,
    crng: crng::CrngWatch,
}

impl Refresher {
    /// Checks the configuration and opens the sources and sinks; every
    /// metric handle is made in `registry`.
    pub fn new(config: Config, registry: &Registry) -> Result<Self, StartError> {
        let c = config;
        c.check()?;
        let observe = |name: &str, claimed| SourceMetrics::boxed(registry, name, claimed);
        let pool = SourcePool::open(&c.sources, c.pool_options(), &observe)
            .map_err(StartError::no_source)?;
        if c.quarantine && !pool.has_hwrng() {
            return Err(StartError::NoHwrngSource(c.hwrng));
        }
        let sinks = SinkSet::open(&c.sinks, &c.random_device, &pool.labels(), registry)
            .map_err(|(spec, source)| StartError::Sink { spec, source })?;
        let rules = QuarantineRules {
            quarantine: c.quarantine,
            hold_always: c.hold_quality,
        };
        let quarantine = match rules.quarantine || rules.hold_always {
            true => {
                let q = Quarantine::open(&c.kernel, c.state_dir.as_deref()).map_err(|source| {
                    StartError::Quarantine {
                        option: match rules.quarantine {
                            true => "--quarantine-hwrng",
                            false => "--hold-hwrng-quality",
                        },
                        source,
                    }
                })?;
                Some(QuarantinePolicy::new(q, rules, registry))
            }
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
            batch: Batch::new(c.batch_size),
            interval: c.interval,
            max_failed_cycles: c.max_failed_cycles,
            needs: crate::privileges::Needs {
                sys_admin: c.sinks.contains(&SinkSpec::Kernel),
                reopen_as_other_user: c.sources.iter().any(|s| matches!(s, SourceSpec::Path(_))),
            },
            totals: Totals::default(),
            consecutive_failures: 0,
            cycles: registry
                .make(|| ["ok", "failed"].map(|r| zero(counter!(names::CYCLES, "result" => r)))),
            last_refresh: registry.make(|| gauge!(names::LAST_REFRESH_TIMESTAMP)),
            status: None,
            exporter: None,
            crng: crng::CrngWatch::start(registry),
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
        if let Some(q) = self.quarantine.as_mut()
            && q.switched()
        {
            self.pool.rejudge_hwrng();
        }
        // Looked at before the deliveries too: a CRNG made ready between two
        // cycles was not made ready by this cycle's delivery.
        let credited_before = self.sinks.credited_deliveries();
        self.crng.observe(credited_before, false);
        let outcome = self.deliver_batches();
        let credited = self.sinks.credited_deliveries();
        self.crng.observe(credited, credited > credited_before);
        if let Some(q) = self.quarantine.as_mut()
            && q.update(self.pool.hwrng_standing())
        {
            self.pool.rejudge_hwrng();
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
            let filled = match self.pool.fill(self.batch.bytes_mut()) {
                Err(crate::source::Stopped) => return CycleOutcome::Stopped,
                Ok(f) if f.bytes < self.batch.len() => return CycleOutcome::NoBatch,
                Ok(f) => f,
            };
            if self
                .sinks
                .deliver(i, &mut self.batch, &filled.credit_bits_by_source)
            {
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

    /// At exit: a quarantined device stays held, one held only by
    /// `--hold-hwrng-quality` gets its quality back (the rule for every
    /// exit is in `sink::quarantine`).
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
}

#[cfg(test)]
mod tests {
    //! One cycle at a time, in-process, from the command line as the binary
    //! takes it: what each outcome means for the sinks.
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::test_support::passing_block;
    use std::path::Path;
    use std::sync::atomic::Ordering;

    /// `once` with these options, a 5000-byte batch, and retries at once;
    /// and the flag that stops it.
    fn refresher(extra: &[&str]) -> (Refresher, Arc<std::sync::atomic::AtomicBool>) {
        let line = ["random-refresher", "once", "--batch-size", "5000"];
        let line = line.iter().chain(extra).chain(&["--retry-initial", "1ms"]);
        let Command::Once(args) = Cli::try_parse_args(line).unwrap().command else {
            unreachable!()
        };
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let limits = crate::app::read_limits(&args.source, &stop, None);
        let config = crate::app::config(&args, limits).unwrap();
        let r = Refresher::new(config, &Registry::discarding()).unwrap();
        (r, stop)
    }

    fn source(dir: &Path, blocks: u64) -> String {
        let path = dir.join("source");
        let bytes: Vec<u8> = (0..blocks).flat_map(passing_block).collect();
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().into()
    }

    #[test]
    fn each_sink_gets_its_own_batch_and_a_short_source_is_no_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let sink = |p: &Path| format!("file:{}", p.display());
        // Start-up block, then two batches of two blocks and the block
        // that releases the last one: 6 blocks; one block more is not a
        // third batch.
        let src = source(dir.path(), 7);
        let (mut r, _) = refresher(&["--source", &src, "--sink", &sink(&a), "--sink", &sink(&b)]);
        assert_eq!(r.cycle(), CycleOutcome::Delivered { bytes: 10_000 });
        let (a_bytes, b_bytes) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert_eq!(a_bytes, [passing_block(1), passing_block(2)].concat());
        assert_eq!(b_bytes, [passing_block(3), passing_block(4)].concat());
        assert_eq!(r.cycle(), CycleOutcome::NoBatch);
        assert_eq!(std::fs::read(&a).unwrap(), a_bytes, "no partial batch");
    }

    #[test]
    fn a_sink_that_cannot_be_written_fails_the_cycle_and_a_stop_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let seed = out.join("seed");
        let src = source(dir.path(), 40);
        let sink = format!("file:{}", seed.display());
        let (mut r, stop) = refresher(&["--source", &src, "--sink", &sink]);
        assert_eq!(r.cycle(), CycleOutcome::Delivered { bytes: 5000 });
        // The seed file is replaced through a file beside it: with its
        // folder gone, the delivery fails.
        std::fs::remove_dir_all(&out).unwrap();
        assert_eq!(r.cycle(), CycleOutcome::SinkFailed);
        stop.store(true, Ordering::Relaxed);
        assert_eq!(r.cycle(), CycleOutcome::Stopped);
    }
}
