//! The refresh loop: read a batch through the health gate, deliver it to
//! every sink, wait for the interval or a signal, repeat.
//!
//! Data flows one way, sources to gate to sinks. Each source keeps its own
//! gate (the tests carry state across blocks) and its own standing under the
//! failure policy; the loop reads from the first usable source in the
//! configured order, so a recovered primary is used again as soon as it is
//! trusted.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};
use tracing::{error, info, warn};

use crate::health::{
    BLOCK_BYTES, Block, ContinuousRun, Cutoffs, FailurePolicy, HealthGate, SourceHealth,
};
use crate::kernel::{KernelPaths, Quarantine, QuarantineError};
use crate::sink::{Sink, SinkError, SinkSpec};
use crate::source::{CpuInstruction, ReadLimits, Source, SourceError, SourceSpec};
use crate::telemetry::exporter::Exporter;
use crate::telemetry::{LoopStatus, names};

/// Default credit for RDRAND output: a DRBG's output carries at most the
/// entropy of its reseeds. Intel's DRNG guide bounds the DRBG to 511 outputs
/// of 128 bits per 256-bit seed, so 8 KiB of RDRAND output holds at least
/// one fresh seed: 256 bits per 8192 bytes is 1/32 bit per byte.
pub const RDRAND_ENTROPY_PER_BYTE: f64 = 1.0 / 32.0;

/// Everything the loop needs, validated.
#[derive(Clone, Debug)]
pub struct Config {
    pub sources: Vec<SourceSpec>,
    pub sinks: Vec<SinkSpec>,
    pub random_device: PathBuf,
    pub batch_size: usize,
    pub interval: Duration,
    pub entropy_per_byte: Option<f64>,
    pub max_failed_cycles: u32,
    pub cutoffs: Cutoffs,
    pub policy: FailurePolicy,
    pub limits: ReadLimits,
    pub kernel: KernelPaths,
    /// Hold the kernel's `rng_quality` at 0 while the hwrng source fails.
    pub quarantine: bool,
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
    #[error(
        "--source: none of the sources can be opened ({0}); for a container, pass the device: docker run --device /dev/hwrng"
    )]
    NoSource(String),
    #[error("--sink {spec}: {source}")]
    Sink { spec: SinkSpec, source: SinkError },
    #[error("--quarantine-hwrng: {0}")]
    Quarantine(#[from] QuarantineError),
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
    /// A full tested batch reached every sink.
    Delivered { bytes: usize },
    /// No full tested batch could be read.
    NoBatch,
    /// A batch was read but at least one sink failed.
    SinkFailed,
    /// Shutdown was asked for during the cycle.
    Stopped,
}

struct SourceSlot {
    spec: SourceSpec,
    label: String,
    source: Option<Source>,
    gate: HealthGate,
    health: SourceHealth,
    entropy_per_byte: f64,
    /// The kind of the last error, so that each change is logged once.
    last_error: Option<&'static str>,
    /// Marked failed by the health tests (not by a read error).
    failed_by_tests: bool,
    /// This cycle it delivered every block asked of it.
    whole_batch: bool,
}

impl SourceSlot {
    /// Open and trusted by the policy: what `source_up` and readiness show.
    fn is_up(&self) -> bool {
        self.source.is_some() && !self.health.is_failed()
    }
}

struct SinkSlot {
    spec: SinkSpec,
    sink: Sink,
    failing: bool,
}

/// Running totals for the SIGUSR1 summary.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    cycles_ok: u64,
    cycles_failed: u64,
    blocks_passed: u64,
    blocks_failed: u64,
    bytes_delivered: u64,
}

pub struct Refresher {
    config: Config,
    slots: Vec<SourceSlot>,
    sinks: Vec<SinkSlot>,
    batch: Vec<u8>,
    block: Box<Block>,
    totals: Totals,
    consecutive_failures: u32,
    credited_bits_remainder: u64,
    status: Option<Arc<LoopStatus>>,
    exporter: Option<Arc<Exporter>>,
    quarantine: Option<Quarantine>,
}

impl Refresher {
    /// Opens the sources and sinks. At least one source must open: a daemon
    /// that can read nothing is misconfigured and should say so at once.
    pub fn new(config: Config) -> Result<Self, StartError> {
        let mut slots: Vec<SourceSlot> = config
            .sources
            .iter()
            .map(|spec| SourceSlot {
                spec: spec.clone(),
                label: spec.to_string(),
                source: None,
                gate: HealthGate::new(config.cutoffs, ContinuousRun::default()),
                health: SourceHealth::new(config.policy),
                entropy_per_byte: config.entropy_per_byte.unwrap_or(match spec {
                    SourceSpec::Cpu(CpuInstruction::RdRand) => RDRAND_ENTROPY_PER_BYTE,
                    _ => 8.0,
                }),
                last_error: None,
                failed_by_tests: false,
                whole_batch: false,
            })
            .collect();
        let mut errors = Vec::new();
        for slot in &mut slots {
            match Source::open(&slot.spec, &config.limits) {
                Ok(s) => slot.source = Some(s),
                Err(e) => {
                    note_read_error(slot, &e);
                    errors.push(e.to_string());
                }
            }
            gauge!(names::SOURCE_UP, "source" => slot.label.clone())
                .set(f64::from(u8::from(slot.source.is_some())));
        }
        if slots.iter().all(|s| s.source.is_none()) {
            return Err(StartError::NoSource(errors.join("; ")));
        }
        // The credit depends on the sources a batch came from, so sinks are
        // told it with each delivery.
        let sinks = config
            .sinks
            .iter()
            .map(|spec| {
                Sink::open(spec, &config.random_device)
                    .map(|sink| SinkSlot {
                        spec: spec.clone(),
                        sink,
                        failing: false,
                    })
                    .map_err(|source| StartError::Sink {
                        spec: spec.clone(),
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        register_series(&slots, &config.sinks);
        let quarantine = if config.quarantine {
            let q = Quarantine::open(&config.kernel, config.state_dir.as_deref())?;
            if q.is_held() {
                warn!(
                    rng = q.rng(),
                    "a quarantine left by an earlier run holds; it lifts once the device passes again"
                );
            }
            gauge!(names::HWRNG_QUARANTINED, "rng" => q.rng().to_string())
                .set(f64::from(u8::from(q.is_held())));
            Some(q)
        } else {
            None
        };
        let batch = vec![0u8; config.batch_size];
        Ok(Self {
            config,
            slots,
            sinks,
            batch,
            block: Box::new([0u8; BLOCK_BYTES]),
            totals: Totals::default(),
            consecutive_failures: 0,
            credited_bits_remainder: 0,
            status: None,
            exporter: None,
            quarantine,
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

    /// One cycle: fill a batch with tested blocks, then deliver it.
    pub fn cycle(&mut self) -> CycleOutcome {
        let outcome = match self.collect_batch() {
            Err(Stopped) => CycleOutcome::Stopped,
            Ok(None) => CycleOutcome::NoBatch,
            Ok(Some(credit_bits)) => self.deliver(credit_bits),
        };
        self.update_quarantine();
        let ok = matches!(outcome, CycleOutcome::Delivered { .. });
        if outcome != CycleOutcome::Stopped {
            let result = if ok { "ok" } else { "failed" };
            counter!(names::CYCLES, "result" => result).increment(1);
            if ok {
                self.totals.cycles_ok += 1;
                self.consecutive_failures = 0;
                gauge!(names::LAST_REFRESH_TIMESTAMP).set(crate::telemetry::unix_now());
            } else {
                self.totals.cycles_failed += 1;
                self.consecutive_failures += 1;
            }
        }
        if let Some(status) = &self.status {
            status.cycle_finished(ok, self.slots.iter().any(SourceSlot::is_up));
        }
        if let Some(exporter) = &self.exporter {
            exporter.upkeep();
        }
        outcome
    }

    /// Reads tested blocks into `self.batch` until it is full; returns the
    /// entropy credit of the batch in bits, or None if the sources ran out.
    fn collect_batch(&mut self) -> Result<Option<f64>, Stopped> {
        let target = self.batch.len();
        let mut filled = 0;
        let mut credit = 0.0;
        let now = Instant::now();
        for slot in &mut self.slots {
            slot.whole_batch = false;
        }
        for slot in &mut self.slots {
            if filled == target {
                break;
            }
            if !slot.health.usable(now) {
                continue;
            }
            if slot.source.is_none() {
                match Source::open(&slot.spec, &self.config.limits) {
                    Ok(s) => slot.source = Some(s),
                    Err(e) => {
                        note_read_error(slot, &e);
                        slot.health.mark_failed(now);
                        set_up(slot);
                        continue;
                    }
                }
            }
            let retrying = slot.health.is_failed();
            let wanted_blocks = (target - filled) / BLOCK_BYTES;
            let started = Instant::now();
            let mut read_bytes = 0u64;
            let result = read_tested(
                slot,
                &mut self.block,
                &mut self.batch[filled..],
                &mut read_bytes,
                &mut self.totals,
                retrying,
                self.status.as_deref(),
            );
            counter!(names::SOURCE_BYTES_READ, "source" => slot.label.clone())
                .increment(read_bytes);
            histogram!(names::SOURCE_READ_DURATION, "source" => slot.label.clone())
                .record(started.elapsed().as_secs_f64());
            let got = match result {
                ReadResult::Got(n) => n,
                ReadResult::Stopped => return Err(Stopped),
            };
            filled += got;
            credit += got as f64 * slot.entropy_per_byte;
            slot.whole_batch = got == wanted_blocks * BLOCK_BYTES;
            if retrying && slot.whole_batch {
                slot.health.recovered();
                slot.failed_by_tests = false;
                info!(source = %slot.label, "source passed a whole batch again and is trusted");
            }
            set_up(slot);
        }
        Ok((filled == target).then_some(credit))
    }

    fn deliver(&mut self, credit_bits: f64) -> CycleOutcome {
        let mut all_ok = true;
        for s in &mut self.sinks {
            let label = s.spec.label();
            match s.sink.deliver(&self.batch, credit_bits) {
                Ok(d) => {
                    counter!(names::SINK_BYTES, "sink" => label).increment(d.bytes as u64);
                    if d.credited_bits > 0 {
                        // Counted in bytes; the remainder bits are carried to the next batch.
                        self.credited_bits_remainder += d.credited_bits;
                        counter!(names::ENTROPY_CREDITED_BYTES)
                            .increment(self.credited_bits_remainder / 8);
                        self.credited_bits_remainder %= 8;
                    }
                    if d.reseeded {
                        counter!(names::KERNEL_RESEEDS).increment(1);
                    }
                    if s.failing {
                        info!(sink = %s.spec, "sink works again");
                        s.failing = false;
                    }
                }
                Err(e) => {
                    all_ok = false;
                    counter!(names::SINK_ERRORS, "sink" => label).increment(1);
                    if !s.failing {
                        error!(sink = %s.spec, error = %e, "delivery failed");
                        s.failing = true;
                    }
                }
            }
        }
        if all_ok {
            self.totals.bytes_delivered += self.batch.len() as u64;
            CycleOutcome::Delivered {
                bytes: self.batch.len(),
            }
        } else {
            CycleOutcome::SinkFailed
        }
    }

    /// Holds the kernel's credit for its hwrng at 0 while our hwrng source
    /// fails the health tests, and lifts it once that source delivers a whole
    /// tested batch again.
    fn update_quarantine(&mut self) {
        let Some(q) = self.quarantine.as_mut() else {
            return;
        };
        let hwrng = || self.slots.iter().filter(|s| s.spec.is_hwrng());
        let failing = hwrng().any(|s| s.failed_by_tests);
        let passing = hwrng().any(|s| s.whole_batch && !s.health.is_failed());
        let rng = q.rng().to_string();
        let result = if failing {
            q.hold().map(|held| {
                if let Some(found) = held {
                    error!(rng = %rng, rng_quality_was = found,
                           "QUARANTINE: the hardware RNG fails its health tests; rng_quality set to 0 so the kernel stops crediting it");
                }
            })
        } else if passing {
            q.release().map(|released| {
                if let Some(quality) = released {
                    warn!(rng = %rng, rng_quality = quality, "quarantine lifted: the hardware RNG passes its health tests again");
                }
            })
        } else {
            Ok(())
        };
        if let Err(e) = result {
            error!(error = %e, "cannot change the hardware RNG's quality");
        }
        gauge!(names::HWRNG_QUARANTINED, "rng" => rng).set(f64::from(u8::from(q.is_held())));
    }

    /// Restores what the daemon changed in the kernel; call before exiting.
    pub fn finish(&mut self) {
        if let Some(q) = self.quarantine.as_mut() {
            match q.release() {
                Ok(Some(quality)) => info!(
                    rng = q.rng(),
                    rng_quality = quality,
                    "quarantine lifted at exit"
                ),
                Ok(None) => {}
                Err(e) => error!(error = %e, "cannot restore the hardware RNG's quality at exit"),
            }
        }
    }

    /// What the open sources and sinks still need once running.
    pub fn privilege_needs(&self) -> crate::privileges::Needs {
        crate::privileges::Needs {
            sys_admin: self.config.sinks.contains(&SinkSpec::Kernel),
            reopen_as_other_user: self
                .config
                .sources
                .iter()
                .any(|s| matches!(s, SourceSpec::Path(_))),
        }
    }

    /// Closes and reopens every source (SIGHUP): picks up a replaced device
    /// node or a FIFO's new writer. Gates keep their state: the stream is
    /// the same source's.
    pub fn reopen_sources(&mut self) {
        for slot in &mut self.slots {
            slot.source = None;
            match Source::open(&slot.spec, &self.config.limits) {
                Ok(s) => slot.source = Some(s),
                Err(e) => note_read_error(slot, &e),
            }
            set_up(slot);
        }
        info!("sources reopened");
    }

    pub fn log_statistics(&self) {
        let t = &self.totals;
        info!(
            cycles_ok = t.cycles_ok,
            cycles_failed = t.cycles_failed,
            blocks_passed = t.blocks_passed,
            blocks_failed = t.blocks_failed,
            bytes_delivered = t.bytes_delivered,
            sources_up = self.slots.iter().filter(|s| s.is_up()).count(),
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
        info!(interval = ?self.config.interval, batch_size = self.config.batch_size, "refreshing");
        loop {
            let started = Instant::now();
            match self.cycle() {
                CycleOutcome::Stopped => return Ok(()),
                CycleOutcome::Delivered { bytes } => tracing::debug!(bytes, "cycle delivered"),
                _ => {
                    if self.consecutive_failures >= self.config.max_failed_cycles {
                        return Err(TooManyFailures {
                            failed: self.consecutive_failures,
                            limit: self.config.max_failed_cycles,
                        });
                    }
                }
            }
            // Wait out the rest of the interval, serving signals as they come.
            let deadline = started + self.config.interval;
            loop {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                // A cycle longer than the interval leaves no wait, but the
                // requests that came meanwhile are still served.
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
                    Ok(Request::Shutdown) | Err(RecvTimeoutError::Disconnected) => return Ok(()),
                    Ok(Request::ReopenSources) => self.reopen_sources(),
                    Ok(Request::LogStatistics) => self.log_statistics(),
                    Err(RecvTimeoutError::Timeout) => break,
                }
            }
        }
    }
}

struct Stopped;

enum ReadResult {
    Got(usize),
    Stopped,
}

/// Reads blocks from one source into `out` until it is full, the source
/// fails a read, or the policy marks it failed. Returns the bytes of passing
/// blocks written to the front of `out`.
fn read_tested(
    slot: &mut SourceSlot,
    block: &mut Block,
    out: &mut [u8],
    read_bytes: &mut u64,
    totals: &mut Totals,
    retrying: bool,
    status: Option<&LoopStatus>,
) -> ReadResult {
    let mut written = 0;
    let Some(source) = slot.source.as_mut() else {
        return ReadResult::Got(0);
    };
    while written < out.len() {
        let mut got = 0;
        let result = source.fill(&mut block[..], &mut got);
        *read_bytes += got as u64;
        if let Some(status) = status {
            status.beat();
        }
        if let Err(e) = result {
            if matches!(e, SourceError::Stopped { .. }) {
                return ReadResult::Stopped;
            }
            note_read_error(slot, &e);
            if matches!(
                e,
                SourceError::NotFound { .. }
                    | SourceError::DeviceGone { .. }
                    | SourceError::Io { .. }
            ) {
                slot.source = None; // reopen on the next attempt
            }
            slot.health.mark_failed(Instant::now());
            return ReadResult::Got(written);
        }
        if let Some(kind) = slot.last_error.take() {
            info!(source = %slot.label, previous_error = kind, "source reads again");
        }
        let verdict = slot.gate.test_block(block);
        let result = if verdict.passed() { "pass" } else { "fail" };
        counter!(names::HEALTH_BLOCKS, "source" => slot.label.clone(), "result" => result)
            .increment(1);
        if verdict.passed() {
            totals.blocks_passed += 1;
            out[written..written + BLOCK_BYTES].copy_from_slice(&block[..]);
            written += BLOCK_BYTES;
            slot.health.block_passed();
            continue;
        }
        totals.blocks_failed += 1;
        for test in verdict.failed_tests() {
            counter!(names::HEALTH_TEST_FAILURES, "source" => slot.label.clone(), "test" => test)
                .increment(1);
        }
        tracing::debug!(source = %slot.label, tests = ?verdict.failed_tests().collect::<Vec<_>>(), "block failed, dropped");
        let now = Instant::now();
        if retrying {
            slot.health.mark_failed(now);
            slot.failed_by_tests = true;
            warn!(source = %slot.label, "source still fails the health tests; retrying later");
            break;
        }
        if slot.health.block_failed(now) {
            slot.failed_by_tests = true;
            error!(source = %slot.label, failures = slot.health.failures(),
                   "source failed the health tests too often and is no longer used");
            break;
        }
    }
    ReadResult::Got(written)
}

fn note_read_error(slot: &mut SourceSlot, e: &SourceError) {
    let kind = e.kind();
    counter!(names::SOURCE_READ_ERRORS, "source" => slot.label.clone(), "kind" => kind)
        .increment(1);
    if slot.last_error != Some(kind) {
        warn!(source = %slot.label, error = %e, "source read failed");
        slot.last_error = Some(kind);
    }
}

fn set_up(slot: &SourceSlot) {
    let up = slot.is_up();
    gauge!(names::SOURCE_UP, "source" => slot.label.clone()).set(f64::from(u8::from(up)));
}

/// Creates every counter at zero, so that `rate()` and `increase()` see the
/// first event and alerts on absent series are not needed.
fn register_series(slots: &[SourceSlot], sinks: &[SinkSpec]) {
    for slot in slots {
        let source = slot.label.clone();
        counter!(names::SOURCE_BYTES_READ, "source" => source.clone()).absolute(0);
        for kind in SourceError::KINDS {
            counter!(names::SOURCE_READ_ERRORS, "source" => source.clone(), "kind" => kind)
                .absolute(0);
        }
        for result in ["pass", "fail"] {
            counter!(names::HEALTH_BLOCKS, "source" => source.clone(), "result" => result)
                .absolute(0);
        }
        for test in crate::health::TEST_NAMES {
            counter!(names::HEALTH_TEST_FAILURES, "source" => source.clone(), "test" => test)
                .absolute(0);
        }
    }
    for sink in sinks {
        counter!(names::SINK_BYTES, "sink" => sink.label()).absolute(0);
        counter!(names::SINK_ERRORS, "sink" => sink.label()).absolute(0);
    }
    for result in ["ok", "failed"] {
        counter!(names::CYCLES, "result" => result).absolute(0);
    }
    counter!(names::ENTROPY_CREDITED_BYTES).absolute(0);
    counter!(names::KERNEL_RESEEDS).absolute(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn good_block(seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        loop {
            let b: Vec<u8> = (0..BLOCK_BYTES)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 32) as u8
                })
                .collect();
            let block: &Block = b.as_slice().try_into().unwrap();
            if crate::health::fips::reference::test_block(block, &mut ContinuousRun::default())
                .passed()
            {
                return b;
            }
        }
    }

    fn refresher(dir: &std::path::Path) -> Refresher {
        let src = dir.join("source");
        std::fs::write(&src, (0..8).flat_map(good_block).collect::<Vec<_>>()).unwrap();
        Refresher::new(Config {
            sources: vec![SourceSpec::Path(src)],
            sinks: vec![SinkSpec::File(dir.join("seed"))],
            random_device: "/dev/null".into(),
            batch_size: BLOCK_BYTES,
            interval: Duration::from_millis(1),
            entropy_per_byte: None,
            max_failed_cycles: 10,
            cutoffs: Cutoffs::new(8.0, -40.0),
            policy: FailurePolicy {
                retry_initial: Duration::ZERO,
                retry_max: Duration::ZERO,
                ..FailurePolicy::default()
            },
            limits: ReadLimits {
                timeout: Duration::from_secs(1),
                stop: Arc::new(AtomicBool::new(false)),
            },
            kernel: KernelPaths::new("/proc".as_ref(), "/sys".as_ref()),
            quarantine: false,
            state_dir: None,
        })
        .unwrap()
    }

    #[test]
    fn eio_and_enodev_close_the_source_which_is_reopened_and_used_again() {
        for (errno, kind) in [
            (libc::EIO, "io"),
            (libc::ENODEV, "device_gone"),
            (libc::ENXIO, "device_gone"),
        ] {
            let dir = std::env::temp_dir().join(format!("rr-fault-{}-{errno}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let mut r = refresher(&dir);
            assert_eq!(r.cycle(), CycleOutcome::Delivered { bytes: BLOCK_BYTES });
            let seed = std::fs::read(dir.join("seed")).unwrap();
            r.slots[0].source = Some(Source::Scripted(VecDeque::from([Err(errno)])));
            assert_eq!(r.cycle(), CycleOutcome::NoBatch, "errno {errno}");
            assert_eq!(r.slots[0].last_error, Some(kind));
            assert!(r.slots[0].source.is_none(), "closed for a reopen");
            assert!(r.slots[0].health.is_failed());
            assert_eq!(
                std::fs::read(dir.join("seed")).unwrap(),
                seed,
                "nothing delivered"
            );
            // The retry reopens the path. The file starts over, so its first
            // block repeats one already delivered and is refused; the stream
            // then goes on with blocks not seen before.
            assert_eq!(r.cycle(), CycleOutcome::NoBatch);
            assert!(r.slots[0].source.is_some());
            assert_eq!(r.cycle(), CycleOutcome::Delivered { bytes: BLOCK_BYTES });
            assert!(!r.slots[0].health.is_failed());
            assert_ne!(std::fs::read(dir.join("seed")).unwrap(), seed);
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn a_scripted_bad_block_mid_stream_is_never_delivered() {
        let dir = std::env::temp_dir().join(format!("rr-fault-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = refresher(&dir);
        let good = good_block(99);
        r.slots[0].source = Some(Source::Scripted(VecDeque::from([
            Ok(vec![0u8; BLOCK_BYTES]),
            Ok(good.clone()),
        ])));
        assert_eq!(r.cycle(), CycleOutcome::Delivered { bytes: BLOCK_BYTES });
        assert_eq!(std::fs::read(dir.join("seed")).unwrap(), good);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
