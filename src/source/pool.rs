//! The configured sources in failover order.
//!
//! Each source keeps its own health gate (the tests carry state across
//! blocks and cycles for as long as it stays open) and its own standing under
//! the failure policy. Blocks are read from the first usable source in the
//! configured order, so a recovered primary is used again as soon as it is
//! trusted; a failed source is retried after a backoff that doubles up to a
//! ceiling. Whenever the pool opens a source, reopens it, switches to it or
//! retries it, that source's gate starts over with the start-up test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use super::assess::{Assessed, Assessor, OnlineAssessment};
use super::{
    CpuInstruction, Credit, ErrorKind, FileId, FilePosition, Heartbeat, Provenance, ReadLimits,
    Source, SourceError, SourceSpec,
};
use crate::health::entropy::Assessment;
use crate::health::{
    BLOCK_BYTES, Block, BlockVerdict, CreditRule, HealthConfig, PROBE_BLOCKS, Test, Trust,
    TrustEvent,
};

/// Default credit for RDRAND output: a DRBG's output carries at most the
/// entropy of its reseeds. Intel's DRNG guide bounds the DRBG to 511 outputs
/// of 128 bits per 256-bit seed, so 8 KiB of RDRAND output holds at least
/// one fresh seed: 256 bits per 8192 bytes is 1/32 bit per byte.
pub const RDRAND_ENTROPY_PER_BYTE: f64 = 1.0 / 32.0;

/// Default credit for RNDR output: the architecture lets the DRBG behind it
/// reseed "at an implementation-defined rate" and no bound is published for
/// the CPUs that have it, so no amount of output is known to span a fresh
/// seed. Its bytes are mixed in uncredited unless the operator, from the
/// vendor's documentation, says otherwise. (RNDRRS reseeds before every
/// read: credited 8 bits per byte, like RDSEED.)
pub const RNDR_ENTROPY_PER_BYTE: f64 = 0.0;

/// How the pool is built.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    pub limits: ReadLimits,
    /// How every source is judged.
    pub health: HealthConfig,
    /// Credit per byte; None: each kind's default.
    pub entropy_per_byte: Option<Credit>,
    /// The FIFO, pipe and standard-input sources that may be credited.
    pub credit_streams: Vec<SourceSpec>,
    /// The kernel's hwrng device: the source that is the same file is the
    /// one the quarantine judges.
    pub hwrng: Option<FileId>,
}

/// No source could be opened: each one's reason, in the pool's order.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct NoSourceOpens(pub Vec<SourceError>);

/// Shutdown was asked for while reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped;

/// What one fill produced: tested bytes at the front of the buffer, and the
/// entropy they carry by the sources' claims, per source in the pool's
/// order (the credit is counted per source).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filled {
    pub bytes: usize,
    pub credit_bits_by_source: Vec<f64>,
}

impl Filled {
    /// The entropy the bytes carry by the sources' claims, in all.
    pub fn credit_bits(&self) -> f64 {
        self.credit_bits_by_source.iter().sum()
    }
}

/// What the pool tells of one source as it goes, for the metrics: the
/// telemetry implements it, so that this module reports nothing itself. The
/// defaults do nothing (a pool no one watches, in tests).
pub trait SourceObserver {
    /// Whether the source is up (open and trusted) and available (there,
    /// as far as this run knows).
    fn standing(&self, _up: bool, _available: bool) {}
    fn read_error(&self, _kind: ErrorKind) {}
    /// One fill's reads: the bytes that arrived and how long it took.
    fn read(&self, _bytes: u64, _took: Duration) {}
    fn block(&self, _verdict: &BlockVerdict) {}
    fn assessed(&self, _assessment: &Assessment, _took: Duration) {}
}

/// Nobody watches.
pub struct Unobserved;

impl SourceObserver for Unobserved {}

/// Makes each source's observer from its metric label and the claimed
/// min-entropy.
pub type Observe<'a> = &'a dyn Fn(&str, f64) -> Box<dyn SourceObserver>;

struct Slot {
    spec: SourceSpec,
    /// The source as given, for the log.
    label: String,
    /// Its metric label: the same, but `/dev/hwrng` for the kernel's hwrng
    /// device by whatever path it is reached (`/host/dev/hwrng` in the
    /// chart), so that one device has one name across a fleet.
    metric_name: String,
    source: Option<Source>,
    /// Where a regular file was left when it was closed.
    resume: Option<FilePosition>,
    /// Gate, failure policy, probe, estimate and credit: how far the
    /// source is trusted.
    trust: Trust,
    /// A FIFO, pipe or standard input the operator allowed to be credited.
    credit_stream: bool,
    assessment: OnlineAssessment,
    /// A first assessment was shown.
    assessed_once: bool,
    /// The kind of the last error, so that each change is logged once.
    last_error: Option<ErrorKind>,
    /// Some byte was read since start.
    ever_read: bool,
    /// The last failure said the source is not there: no such device, an
    /// instruction the CPU lacks, a device without its driver.
    last_failure_missing: bool,
    /// The same file as the kernel's hwrng device.
    is_hwrng: bool,
    observer: Box<dyn SourceObserver>,
}

impl Slot {
    /// Open and trusted by the policy: what `source_up` and readiness show.
    fn is_up(&self) -> bool {
        self.source.is_some() && !self.trust.is_failed()
    }

    fn show_up(&self) {
        self.observer.standing(self.is_up(), !self.is_absent());
    }

    /// Not on this machine as far as this run knows: nothing was ever read
    /// and the last failure said it is not there. Shown as unavailable
    /// rather than down, so that listing a source some nodes of a fleet
    /// lack does not page for them; one that was read and then stopped is
    /// down.
    fn is_absent(&self) -> bool {
        !self.ever_read && self.last_failure_missing
    }

    /// Records whether a failure of this kind says the source is not there.
    fn note_absence(&mut self, kind: ErrorKind) {
        self.last_failure_missing = matches!(
            kind,
            ErrorKind::NotFound | ErrorKind::Unsupported | ErrorKind::DeviceGone
        );
    }

    /// Opens the source; a failure is counted, and logged once per change.
    fn open(&mut self, limits: &ReadLimits, hwrng: Option<FileId>) -> Result<(), SourceError> {
        self.try_open(limits, hwrng)
            .inspect_err(|e| self.log_error(e))
    }

    /// Opens the source; a failure is counted, not logged.
    fn try_open(&mut self, limits: &ReadLimits, hwrng: Option<FileId>) -> Result<(), SourceError> {
        match Source::open(&self.spec, limits, self.resume) {
            Ok(s) => {
                self.is_hwrng = hwrng.is_some() && s.id() == hwrng;
                // Only a device or a CPU instruction is credited by
                // default: a FIFO, a pipe or standard input when named by
                // `--credit-stream`, a regular file (bytes that may be
                // replayed) never.
                let creditable = match s.provenance() {
                    Provenance::Device => true,
                    Provenance::Stream => self.credit_stream,
                    Provenance::Replayable => false,
                };
                self.source = Some(s);
                self.trust.opened(creditable);
                Ok(())
            }
            Err(e) => {
                self.observer.read_error(e.kind());
                self.note_absence(e.kind());
                Err(e)
            }
        }
    }

    fn close(&mut self) {
        if let Some(s) = self.source.take() {
            self.resume = s.position().or(self.resume);
        }
    }

    fn note_error(&mut self, e: &SourceError) {
        self.observer.read_error(e.kind());
        self.note_absence(e.kind());
        self.log_error(e);
    }

    fn log_error(&mut self, e: &SourceError) {
        let kind = e.kind();
        if self.last_error != Some(kind) {
            warn!(source = %self.label, error = %e, "source read failed");
            self.last_error = Some(kind);
        }
    }

    /// Shows a finished assessment: the first in the log at info (it ends
    /// the wait for a first window), later ones at debug.
    fn assessed(&mut self, done: &Assessed) {
        let a = &done.assessment;
        let seconds = done.took.as_secs_f64();
        if std::mem::replace(&mut self.assessed_once, true) {
            debug!(source = %self.label, assessed = a.assessed, h_original = a.h_original,
                h_bitstring = a.h_bitstring, samples = a.samples, seconds, "min-entropy assessed");
        } else {
            info!(source = %self.label, assessed = a.assessed, h_original = a.h_original,
                h_bitstring = a.h_bitstring, samples = a.samples, seconds, "min-entropy assessed");
        }
        self.observer.assessed(a, done.took);
    }

    /// Takes the assessment that finished since the last call, if one
    /// did: shown, and handed to the trust to cap the credit.
    fn poll_assessment(&mut self) -> Option<f64> {
        let done = self.assessment.poll()?;
        self.assessed(&done);
        self.trust.estimated(done.assessment.assessed);
        Some(done.assessment.assessed)
    }

    /// Reads and tests blocks until `out` is full of released blocks, the
    /// source fails a read, or the policy gives up on it. Returns the bytes
    /// released into the front of `out`, and the bits they carry by the
    /// source's claim.
    fn fill(
        &mut self,
        out: &mut [u8],
        heartbeat: Option<&dyn Heartbeat>,
    ) -> Result<(usize, f64), Stopped> {
        let started = Instant::now();
        let mut block = [0u8; BLOCK_BYTES];
        let (mut written, mut read, mut credit_bits) = (0, 0u64, 0.0);
        let result = loop {
            // Whole blocks only: a tail of `out` shorter than a block is
            // left as it is, never indexed past.
            let room = written + BLOCK_BYTES <= out.len();
            let Some(source) = self.source.as_mut().filter(|_| room) else {
                break Ok(());
            };
            let mut got = 0;
            let result = source.fill(&mut block, &mut got);
            read += got as u64;
            self.ever_read |= got > 0;
            if let Some(heartbeat) = heartbeat {
                heartbeat.beat();
            }
            if let Err(e) = result {
                if matches!(e, SourceError::Stopped { .. }) {
                    break Err(Stopped);
                }
                self.read_failed(&e);
                break Ok(());
            }
            if let Some(kind) = self.last_error.take() {
                info!(source = %self.label, previous_error = kind.name(), "source reads again");
            }
            let slot: &mut Block = (&mut out[written..written + BLOCK_BYTES])
                .try_into()
                .unwrap();
            let step = self.trust.push(&block, slot, Instant::now());
            if step.released {
                // Credited by what was known before this block.
                credit_bits += step.credit_bits;
                self.assessment.feed(&slot[..]);
                self.poll_assessment();
                written += BLOCK_BYTES;
            }
            self.observer.block(&step.verdict);
            if !step.verdict.passed() {
                let tests: Vec<&str> = step.verdict.failed_tests().map(Test::name).collect();
                debug!(source = %self.label, tests = tests.join(","),
                       start_up = step.start_up, "block failed; dropped with the block held before it");
            }
            if let Some(event) = step.event {
                self.trust_changed(event);
                if event != TrustEvent::Recovered {
                    break Ok(());
                }
            }
        };
        self.observer.read(read, started.elapsed());
        result.map(|()| (written, credit_bits))
    }

    fn read_failed(&mut self, e: &SourceError) {
        self.note_error(e);
        if e.closes_source() {
            self.close();
        }
        self.trust.stream_broke(Instant::now());
    }

    /// Says what changed in the source's trust.
    fn trust_changed(&self, event: TrustEvent) {
        match event {
            TrustEvent::Recovered => {
                self.show_up();
                info!(source = %self.label, blocks = PROBE_BLOCKS,
                      "source passed its start-up test and the probe blocks and is trusted again");
            }
            TrustEvent::ProbeFailed { tests, retry_in } => {
                warn!(source = %self.label, tests = tests.to_string().as_str(),
                      retry_in = %humantime::format_duration(retry_in),
                      "source still fails the health tests; retrying later");
            }
            TrustEvent::MarkedFailed {
                failures,
                tests,
                retry_in,
            } => {
                error!(source = %self.label, failures, tests = tests.to_string().as_str(),
                       retry_in = %humantime::format_duration(retry_in),
                       "source failed the health tests too often; not used until its retry");
            }
        }
    }
}

/// How the source that is the kernel's hwrng stands, for the quarantine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HwrngStanding {
    /// Marked failed by the health tests.
    pub failing: bool,
    /// Passing blocks since its last start-up test, while trusted.
    pub trusted_passes: u64,
}

/// The kernel's name of its hwrng device: the metric label of the source
/// that is that device.
const HWRNG_NAME: &str = "/dev/hwrng";

/// The sources in failover order.
pub struct SourcePool {
    slots: Vec<Slot>,
    limits: ReadLimits,
    /// The slot read last, to notice a switch.
    active: Option<usize>,
    hwrng: Option<FileId>,
}

impl SourcePool {
    /// Opens every source. At least one must open: a daemon that can read
    /// nothing is misconfigured and should say so at once (the error joins
    /// each source's reason).
    pub fn open(
        specs: &[SourceSpec],
        options: PoolOptions,
        observe: Observe,
    ) -> Result<Self, NoSourceOpens> {
        let PoolOptions {
            limits,
            health,
            entropy_per_byte,
            credit_streams,
            hwrng,
        } = options;
        let kind_claim = |spec: &SourceSpec| match spec {
            SourceSpec::Cpu(CpuInstruction::RdRand) => RDRAND_ENTROPY_PER_BYTE,
            SourceSpec::Cpu(CpuInstruction::Rndr) => RNDR_ENTROPY_PER_BYTE,
            _ => 8.0,
        };
        let assessor = Arc::new(Assessor::default());
        let mut slots: Vec<Slot> = specs
            .iter()
            .map(|spec| {
                // Before an open succeeds, the path itself says.
                let is_hwrng = hwrng.is_some()
                    && matches!(spec, SourceSpec::Path(p) if FileId::of_path(p).ok() == hwrng);
                let metric_name = match is_hwrng {
                    true => HWRNG_NAME.to_owned(),
                    false => spec.to_string(),
                };
                Slot {
                    spec: spec.clone(),
                    label: spec.to_string(),
                    source: None,
                    resume: None,
                    trust: Trust::new(&health).crediting(CreditRule {
                        claim: match entropy_per_byte {
                            Some(Credit::Bits(b)) => b,
                            _ => kind_claim(spec),
                        },
                        capped_by_estimate: entropy_per_byte == Some(Credit::Auto),
                    }),
                    credit_stream: credit_streams.contains(spec),
                    assessment: OnlineAssessment::new(
                        health.estimate_window(),
                        health.estimate_every(),
                        Arc::clone(&assessor),
                    ),
                    assessed_once: false,
                    last_error: None,
                    ever_read: false,
                    last_failure_missing: false,
                    is_hwrng,
                    observer: observe(&metric_name, health.claimed_min_entropy()),
                    metric_name,
                }
            })
            .collect();
        // Each failure is logged only if another source opened: when none
        // does, the caller's one line names them all.
        let mut errors = Vec::new();
        for slot in &mut slots {
            if let Err(e) = slot.try_open(&limits, hwrng) {
                errors.push((slot.label.clone(), e));
            }
            slot.show_up();
        }
        if slots.iter().all(|s| s.source.is_none()) {
            return Err(NoSourceOpens(errors.into_iter().map(|(_, e)| e).collect()));
        }
        for (label, e) in errors {
            if let Some(slot) = slots.iter_mut().find(|s| s.label == label) {
                slot.log_error(&e);
            }
        }
        Ok(Self {
            slots,
            limits,
            active: None,
            hwrng,
        })
    }

    /// Fills `out` (whole blocks) with tested bytes from the first usable
    /// sources in order. Fewer bytes than asked means the sources ran out.
    pub fn fill(&mut self, out: &mut [u8]) -> Result<Filled, Stopped> {
        let now = Instant::now();
        let mut filled = Filled {
            credit_bits_by_source: vec![0.0; self.slots.len()],
            ..Filled::default()
        };
        for i in 0..self.slots.len() {
            if filled.bytes == out.len() {
                break;
            }
            let active = self.active;
            let slot = &mut self.slots[i];
            if !slot.trust.usable(now) {
                continue;
            }
            if slot.source.is_none() && slot.open(&self.limits, self.hwrng).is_err() {
                slot.trust.unavailable(now);
                slot.show_up();
                continue;
            }
            // A retry starts once, with a start-up test; the probe then
            // goes on across cycles until it passes or fails.
            let switched = active != Some(i);
            if switched && active.is_some() {
                info!(source = %slot.label, "now reading {}", slot.label);
            }
            if slot.trust.begin(switched) {
                debug!(source = %slot.label, blocks = PROBE_BLOCKS,
                       "retrying the source: a start-up test, then the probe blocks");
            }
            self.active = Some(i);
            let heartbeat = self.limits.progress.as_deref();
            let (bytes, credit_bits) = slot.fill(&mut out[filled.bytes..], heartbeat)?;
            filled.bytes += bytes;
            filled.credit_bits_by_source[i] += credit_bits;
            slot.show_up();
        }
        Ok(filled)
    }

    /// Closes and reopens every source (SIGHUP): picks up a replaced device
    /// node or a FIFO's new writer. A regular file continues where it was.
    pub fn reopen(&mut self) {
        for slot in &mut self.slots {
            slot.close();
            let _ = slot.open(&self.limits, self.hwrng);
            slot.show_up();
        }
        info!("sources reopened");
    }

    /// The sources' metric labels, in the pool's order.
    pub fn labels(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.metric_name.clone()).collect()
    }

    /// Some source is open and trusted.
    pub fn any_up(&self) -> bool {
        self.slots.iter().any(Slot::is_up)
    }

    pub fn up_count(&self) -> usize {
        self.slots.iter().filter(|s| s.is_up()).count()
    }

    /// Blocks passed and failed over all sources, for the statistics line.
    pub fn block_totals(&self) -> (u64, u64) {
        self.slots.iter().fold((0, 0), |(p, f), s| {
            let (passed, failed) = s.trust.blocks();
            (p + passed, f + failed)
        })
    }

    /// Whether some source is the kernel's hwrng device.
    pub fn has_hwrng(&self) -> bool {
        self.slots.iter().any(|s| s.is_hwrng)
    }

    /// How the hwrng source stands, for the quarantine policy.
    pub fn hwrng_standing(&self) -> HwrngStanding {
        let hwrng = || self.slots.iter().filter(|s| s.is_hwrng);
        HwrngStanding {
            failing: hwrng().any(|s| s.trust.failed_by_tests()),
            trusted_passes: hwrng().map(|s| s.trust.trusted_passes()).max().unwrap_or(0),
        }
    }

    /// The device behind the hwrng changed (`rng_current`): the source now
    /// reads another device, whose standing owes nothing to the one before.
    /// Its failures, backoff and probe are forgotten, and it is judged from
    /// a start-up test on bytes read from now on.
    pub fn rejudge_hwrng(&mut self) {
        for slot in self.slots.iter_mut().filter(|s| s.is_hwrng) {
            slot.trust.rejudge();
            slot.show_up();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::FailurePolicy;
    use crate::health::estimate::Sampling;
    use std::collections::VecDeque;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    fn good_block(seed: u64) -> Vec<u8> {
        crate::test_support::passing_block(seed).to_vec()
    }

    fn pool(spec: SourceSpec) -> SourcePool {
        pool_crediting(spec, None)
    }

    fn pool_crediting(spec: SourceSpec, entropy_per_byte: Option<Credit>) -> SourcePool {
        pool_of(&[spec], entropy_per_byte)
    }

    fn pool_of(specs: &[SourceSpec], entropy_per_byte: Option<Credit>) -> SourcePool {
        SourcePool::open(specs, options(entropy_per_byte), &|_, _| {
            Box::new(Unobserved)
        })
        .unwrap()
    }

    /// Retries at once (no backoff), small assessment windows.
    fn options(entropy_per_byte: Option<Credit>) -> PoolOptions {
        PoolOptions {
            limits: ReadLimits {
                timeout: Duration::from_secs(1),
                stop: Arc::new(AtomicBool::new(false)),
                progress: None,
            },
            health: HealthConfig::new(
                8.0,
                -40.0,
                FailurePolicy {
                    retry_initial: Duration::ZERO,
                    retry_max: Duration::ZERO,
                    ..FailurePolicy::default()
                },
                4096,
                Sampling::Every(1),
            )
            .unwrap(),
            entropy_per_byte,
            credit_streams: Vec::new(),
            hwrng: None,
        }
    }

    /// Two sources, each reading its script.
    fn two(first: Vec<Vec<u8>>, second: Vec<Vec<u8>>) -> SourcePool {
        let null = SourceSpec::Path("/dev/null".into());
        let mut p = pool_of(&[null.clone(), null], None);
        for (slot, script) in p.slots.iter_mut().zip([first, second]) {
            slot.source = Some(Source::Scripted(script.into_iter().map(Ok).collect()));
        }
        p
    }

    fn goods(from: u64, n: u64) -> Vec<Vec<u8>> {
        (from..from + n).map(good_block).collect()
    }

    #[test]
    fn when_no_source_opens_the_error_gives_each_ones_reason_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let [a, b] = ["a", "b"].map(|n| SourceSpec::Path(dir.path().join(n)));
        let Err(e) = SourcePool::open(&[a, b], options(None), &|_, _| Box::new(Unobserved)) else {
            panic!("opened")
        };
        assert_eq!(e.0.len(), 2);
        assert!(e.0.iter().all(|e| e.kind() == ErrorKind::NotFound), "{e}");
        let text = e.to_string();
        let (first, second) = text.split_once("; ").expect("two reasons");
        assert!(first.contains("/a") && second.contains("/b"), "{text}");
    }

    #[test]
    fn a_failing_primary_fails_over_and_is_read_again_on_probation_until_trusted() {
        let mut first = goods(0, 1);
        first.extend(vec![vec![0u8; BLOCK_BYTES]; 25]);
        first.extend(goods(1, 40));
        let mut p = two(first, goods(100, 40));
        assert_eq!(p.up_count(), 2);
        let mut out = vec![0u8; BLOCK_BYTES];
        // 25 unforgiven failures give the first up; the second starts with
        // its own start-up test (b100) and b101 is released by b102.
        let filled = p.fill(&mut out).unwrap();
        assert_eq!(out, good_block(101));
        assert_eq!(
            filled.credit_bits_by_source,
            [0.0, 8.0 * BLOCK_BYTES as f64]
        );
        assert!(p.slots[0].trust.failed_by_tests());
        assert_eq!(p.up_count(), 1);
        // Due its retry (no backoff here): read first again, from a start-up
        // test (b1); its tested bytes flow while it is on probation, not
        // up, until the 16th probe block has passed.
        // Each fill sees one block past the one it releases: the 15th
        // sees the 16th probe block pass.
        for fill in 0..PROBE_BLOCKS as u64 - 2 {
            assert_eq!(fill_one(&mut p), good_block(2 + fill), "fill {fill}");
            assert_eq!(p.up_count(), 1, "trusted before its probe ended");
        }
        assert_eq!(fill_one(&mut p), good_block(PROBE_BLOCKS as u64));
        assert_eq!(p.up_count(), 2);
        assert!(!p.slots[0].trust.failed_by_tests());
        assert_eq!(p.block_totals(), (1 + 17 + 3, 25));
    }

    #[test]
    fn a_failure_during_the_probe_goes_back_to_the_next_source_in_the_same_fill() {
        let zeros = || vec![vec![0u8; BLOCK_BYTES]; 25];
        let mut first = goods(0, 1);
        first.extend(zeros());
        first.extend(goods(1, 4));
        first.push(vec![0u8; BLOCK_BYTES]);
        first.extend(goods(10, 40));
        let mut p = two(first, goods(100, 40));
        fill_one(&mut p);
        // The probe: start-up b1, b2 released by b3, b3 by b4.
        assert_eq!(fill_one(&mut p), good_block(2));
        assert_eq!(fill_one(&mut p), good_block(3));
        // The zero ends the probe and drops b4; the second source, read
        // again after another one, starts over: start-up b103, b104
        // released by b105.
        assert_eq!(fill_one(&mut p), good_block(104));
        assert!(p.slots[0].trust.failed_by_tests());
        assert_eq!(p.up_count(), 1);
    }

    fn fill_one(p: &mut SourcePool) -> Vec<u8> {
        let mut out = vec![0u8; BLOCK_BYTES];
        let got = p.fill(&mut out).unwrap().bytes;
        out.truncate(got);
        out
    }

    #[test]
    fn eio_and_enodev_close_the_source_which_is_reopened_where_it_stopped() {
        for (errno, kind) in [
            (libc::EIO, ErrorKind::Io),
            (libc::ENODEV, ErrorKind::DeviceGone),
            (libc::ENXIO, ErrorKind::DeviceGone),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let blocks: Vec<Vec<u8>> = (0..40).map(good_block).collect();
            let path = dir.path().join("source");
            std::fs::write(&path, blocks.concat()).unwrap();
            let mut p = pool(SourceSpec::Path(path));
            // Start-up b0, b1 held, released by b2.
            assert_eq!(fill_one(&mut p), blocks[1]);
            let slot = &mut p.slots[0];
            slot.resume = slot.source.as_ref().unwrap().position();
            slot.source = Some(Source::Scripted(VecDeque::from([Err(errno)])));
            assert!(fill_one(&mut p).is_empty(), "errno {errno}");
            let slot = &p.slots[0];
            assert_eq!(slot.last_error, Some(kind));
            assert!(slot.source.is_none(), "closed for a reopen");
            assert!(slot.trust.is_failed());
            // Reopened at block 3: a new start-up test (b3), b4 held and
            // released by b5. No byte is read twice, and the source is
            // trusted again once the probe blocks have passed.
            // The fill that releases b(k) has seen b(k + 1) pass: the 15th
            // fill completes the 16 probe blocks.
            for (i, want) in blocks
                .iter()
                .enumerate()
                .skip(4)
                .take(PROBE_BLOCKS as usize - 1)
            {
                assert!(
                    p.slots[0].trust.is_failed(),
                    "trusted before the probe ended"
                );
                assert_eq!(fill_one(&mut p), *want, "block {i}");
            }
            assert!(!p.slots[0].trust.is_failed());
        }
    }

    #[test]
    fn the_held_block_and_the_tests_carry_across_fills() {
        // A run of three 0xA5 ends block a; block b starts with three more.
        // Fill 1 ends with a held back; fill 2 reads b, whose RCT failure
        // reaches back into a: a is dropped although its own fill is over.
        let [s, x] = [21, 22].map(good_block);
        let mut a = good_block(23);
        a[BLOCK_BYTES - 4] = 0;
        a[BLOCK_BYTES - 3..].fill(0xA5);
        let mut b = good_block(24);
        b[..3].fill(0xA5);
        b[3] = 0;
        let [c, d] = [25, 26].map(good_block);
        let mut p = pool(SourceSpec::Path("/dev/null".into()));
        p.slots[0].source = Some(Source::Scripted(VecDeque::from([
            Ok(s),
            Ok(x.clone()),
            Ok(a),
            Ok(b),
            Ok(c.clone()),
            Ok(d),
        ])));
        assert_eq!(fill_one(&mut p), x, "x released by a");
        assert!(p.slots[0].trust.is_holding(), "a waits for the next fill");
        assert_eq!(fill_one(&mut p), c, "a went with b's failed run");
    }

    #[test]
    fn a_buffer_that_is_not_whole_blocks_gets_whole_blocks_and_no_panic() {
        let [s, a, b] = [31, 32, 33].map(good_block);
        let mut p = pool(SourceSpec::Path("/dev/null".into()));
        p.slots[0].source = Some(Source::Scripted(VecDeque::from([
            Ok(s),
            Ok(a.clone()),
            Ok(b),
        ])));
        let mut out = vec![7u8; BLOCK_BYTES + 100];
        assert_eq!(p.fill(&mut out).unwrap().bytes, BLOCK_BYTES);
        assert_eq!(out[..BLOCK_BYTES], a[..]);
        assert_eq!(out[BLOCK_BYTES..], [7u8; 100]);
        assert_eq!(p.fill(&mut [0u8; 10]).unwrap().bytes, 0);
    }

    #[test]
    fn auto_credit_is_nothing_before_an_assessment_and_the_assessed_value_after() {
        let blocks: Vec<Vec<u8>> = (0..200).map(good_block).collect();
        let mut p = pool_crediting(SourceSpec::Path("/dev/null".into()), Some(Credit::Auto));
        p.slots[0].source = Some(Source::Scripted(blocks.into_iter().map(Ok).collect()));
        let mut out = vec![0u8; 2 * BLOCK_BYTES];
        // Start-up, then two windows of 4096 samples: nothing credited yet.
        let first = p.fill(&mut out).unwrap();
        assert_eq!((first.bytes, first.credit_bits()), (2 * BLOCK_BYTES, 0.0));
        let slot = &mut p.slots[0];
        let started = Instant::now();
        // The window's assessment runs on its own thread; wait for it.
        let assessed = loop {
            if let Some(assessed) = slot.poll_assessment() {
                break assessed;
            }
            assert!(started.elapsed().as_secs() < 60, "no assessment");
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert!(assessed > 0.0 && assessed < 8.0, "{assessed}");
        let next = p.fill(&mut out).unwrap();
        assert_eq!(next.bytes, 2 * BLOCK_BYTES);
        // Each block is credited by the newest assessment known when it is
        // released: the one above, or a newer one of the following window.
        let newest = p.slots[0].trust.estimate().unwrap();
        let per_byte = next.credit_bits() / next.bytes as f64;
        assert!(
            per_byte > 0.0 && per_byte <= assessed.max(newest) + 1e-12,
            "{per_byte} {assessed} {newest}"
        );
    }

    #[test]
    fn a_bad_block_drops_the_block_held_before_it() {
        let [a, b, c, d] = [11, 12, 13, 14].map(good_block);
        let mut p = pool(SourceSpec::Path("/dev/null".into()));
        p.slots[0].source = Some(Source::Scripted(VecDeque::from([
            Ok(a),
            Ok(b),
            Ok(vec![0u8; BLOCK_BYTES]),
            Ok(c.clone()),
            Ok(d),
        ])));
        assert_eq!(fill_one(&mut p), c);
    }
}
