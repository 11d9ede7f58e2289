//! The configured sources in failover order.
//!
//! Each source keeps its own health gate (the tests carry state across
//! blocks and cycles for as long as it stays open) and its own standing under
//! the failure policy. Blocks are read from the first usable source in the
//! configured order, so a recovered primary is used again as soon as it is
//! trusted; a failed source is retried after a backoff that doubles up to a
//! ceiling. Whenever the pool opens a source, reopens it, switches to it or
//! retries it, that source's gate starts over with the start-up test.

use std::time::Instant;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use tracing::{debug, error, info, warn};

use super::{CpuInstruction, ErrorKind, FilePosition, ReadLimits, Source, SourceError, SourceSpec};
use crate::health::{BLOCK_BYTES, Block, Cutoffs, FailurePolicy, Gate, SourceHealth, TESTS, Test};
use crate::telemetry::{LoopStatus, names};

/// Default credit for RDRAND output: a DRBG's output carries at most the
/// entropy of its reseeds. Intel's DRNG guide bounds the DRBG to 511 outputs
/// of 128 bits per 256-bit seed, so 8 KiB of RDRAND output holds at least
/// one fresh seed: 256 bits per 8192 bytes is 1/32 bit per byte.
pub const RDRAND_ENTROPY_PER_BYTE: f64 = 1.0 / 32.0;

/// Shutdown was asked for while reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped;

/// What one fill produced: tested bytes at the front of the buffer, and the
/// entropy they carry by the sources' claims.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Filled {
    pub bytes: usize,
    pub credit_bits: f64,
}

/// Metric handles of one source, made once when the pool is built.
struct SlotMetrics {
    bytes_read: Counter,
    read_duration: Histogram,
    up: Gauge,
    passed: Counter,
    failed: Counter,
    test_failures: [Counter; TESTS],
    read_errors: Vec<Counter>,
}

impl SlotMetrics {
    /// Counters start at zero, so that `rate()` and `increase()` see the
    /// first event and no alert needs to handle an absent series.
    fn new(source: &str) -> Self {
        let s = || source.to_string();
        let zero = |c: Counter| {
            c.absolute(0);
            c
        };
        Self {
            bytes_read: zero(counter!(names::SOURCE_BYTES_READ, "source" => s())),
            read_duration: histogram!(names::SOURCE_READ_DURATION, "source" => s()),
            up: gauge!(names::SOURCE_UP, "source" => s()),
            passed: zero(counter!(names::HEALTH_BLOCKS, "source" => s(), "result" => "pass")),
            failed: zero(counter!(names::HEALTH_BLOCKS, "source" => s(), "result" => "fail")),
            test_failures: std::array::from_fn(|i| {
                let test = Test::ALL[i].name();
                zero(counter!(names::HEALTH_TEST_FAILURES, "source" => s(), "test" => test))
            }),
            read_errors: ErrorKind::ALL
                .iter()
                .map(|k| {
                    zero(counter!(names::SOURCE_READ_ERRORS, "source" => s(), "kind" => k.name()))
                })
                .collect(),
        }
    }
}

struct Slot {
    spec: SourceSpec,
    label: String,
    source: Option<Source>,
    /// Where a regular file was left when it was closed.
    resume: Option<FilePosition>,
    gate: Gate,
    health: SourceHealth,
    /// Claimed entropy per byte, credited by the kernel sink.
    entropy_per_byte: f64,
    /// The kind of the last error, so that each change is logged once.
    last_error: Option<ErrorKind>,
    /// Marked failed by the health tests (not by a read error).
    failed_by_tests: bool,
    /// This cycle it was read, and gave less than was asked of it.
    used: bool,
    short: bool,
    blocks_passed: u64,
    blocks_failed: u64,
    metrics: SlotMetrics,
}

impl Slot {
    /// Open and trusted by the policy: what `source_up` and readiness show.
    fn is_up(&self) -> bool {
        self.source.is_some() && !self.health.is_failed()
    }

    fn show_up(&self) {
        self.metrics.up.set(f64::from(u8::from(self.is_up())));
    }

    /// Opens the source; the error says why not.
    fn open(&mut self, limits: &ReadLimits) -> Result<(), String> {
        match Source::open(&self.spec, limits, self.resume) {
            Ok(s) => {
                self.source = Some(s);
                self.gate.restart();
                Ok(())
            }
            Err(e) => {
                self.note_error(&e);
                Err(e.to_string())
            }
        }
    }

    fn close(&mut self) {
        if let Some(s) = self.source.take() {
            self.resume = s.position().or(self.resume);
        }
    }

    fn note_error(&mut self, e: &SourceError) {
        let kind = e.kind();
        self.metrics.read_errors[kind as usize].increment(1);
        if self.last_error != Some(kind) {
            warn!(source = %self.label, error = %e, "source read failed");
            self.last_error = Some(kind);
        }
    }

    /// A regular file may replay bytes used before: it is never credited.
    fn credit_per_byte(&self) -> f64 {
        match &self.source {
            Some(s) if s.is_replayable() => 0.0,
            _ => self.entropy_per_byte,
        }
    }

    /// Reads and tests blocks until `out` is full of released blocks, the
    /// source fails a read, or the policy gives up on it. Returns the bytes
    /// released into the front of `out`.
    fn fill(&mut self, out: &mut [u8], status: Option<&LoopStatus>) -> Result<usize, Stopped> {
        let retrying = self.health.is_failed();
        let started = Instant::now();
        let mut block = [0u8; BLOCK_BYTES];
        let (mut written, mut read) = (0, 0u64);
        let result = loop {
            let Some(source) = self.source.as_mut().filter(|_| written < out.len()) else {
                break Ok(());
            };
            let mut got = 0;
            let result = source.fill(&mut block, &mut got);
            read += got as u64;
            if let Some(status) = status {
                status.beat();
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
            let step = self.gate.push(&block, slot);
            written += if step.released { BLOCK_BYTES } else { 0 };
            if step.verdict.passed() {
                self.blocks_passed += 1;
                self.metrics.passed.increment(1);
                self.health.block_passed();
                continue;
            }
            self.blocks_failed += 1;
            self.metrics.failed.increment(1);
            for t in step.verdict.failed_tests() {
                self.metrics.test_failures[t as usize].increment(1);
            }
            debug!(source = %self.label, tests = ?step.verdict.failed_tests().map(Test::name).collect::<Vec<_>>(),
                   start_up = step.start_up, "block failed; dropped with the block held before it");
            if self.block_failed(retrying) {
                break Ok(());
            }
        };
        self.metrics.bytes_read.increment(read);
        self.metrics
            .read_duration
            .record(started.elapsed().as_secs_f64());
        result.map(|()| written)
    }

    fn read_failed(&mut self, e: &SourceError) {
        self.note_error(e);
        if e.closes_source() {
            self.close();
        }
        // The stream broke: the held block's next window never came.
        self.gate.restart();
        self.health.mark_failed(Instant::now());
    }

    /// Records a failed block; true if the source is given up on for now.
    fn block_failed(&mut self, retrying: bool) -> bool {
        let now = Instant::now();
        if retrying {
            self.health.mark_failed(now);
            self.failed_by_tests = true;
            warn!(source = %self.label, "source still fails the health tests; retrying later");
            return true;
        }
        if self.health.block_failed(now) {
            self.failed_by_tests = true;
            error!(source = %self.label, failures = self.health.failures(),
                   "source failed the health tests too often and is no longer used");
            return true;
        }
        false
    }
}

/// How the sources that are the kernel's hwrng fared this cycle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HwrngStanding {
    /// Marked failed by the health tests.
    pub failing: bool,
    /// Read this cycle, trusted, and gave every block asked of it.
    pub passing: bool,
}

/// The sources in failover order.
pub struct SourcePool {
    slots: Vec<Slot>,
    limits: ReadLimits,
    /// The slot read last, to notice a switch.
    active: Option<usize>,
}

impl SourcePool {
    /// Opens every source. At least one must open: a daemon that can read
    /// nothing is misconfigured and should say so at once (the error joins
    /// each source's reason).
    pub fn open(
        specs: &[SourceSpec],
        limits: ReadLimits,
        cutoffs: Cutoffs,
        policy: FailurePolicy,
        entropy_per_byte: Option<f64>,
    ) -> Result<Self, String> {
        let mut slots: Vec<Slot> = specs
            .iter()
            .map(|spec| Slot {
                spec: spec.clone(),
                label: spec.to_string(),
                source: None,
                resume: None,
                gate: Gate::new(cutoffs),
                health: SourceHealth::new(policy),
                entropy_per_byte: entropy_per_byte.unwrap_or(match spec {
                    SourceSpec::Cpu(CpuInstruction::RdRand) => RDRAND_ENTROPY_PER_BYTE,
                    _ => 8.0,
                }),
                last_error: None,
                failed_by_tests: false,
                used: false,
                short: false,
                blocks_passed: 0,
                blocks_failed: 0,
                metrics: SlotMetrics::new(&spec.to_string()),
            })
            .collect();
        let mut errors = Vec::new();
        for slot in &mut slots {
            if let Err(e) = slot.open(&limits) {
                errors.push(e);
            }
            slot.show_up();
        }
        if slots.iter().all(|s| s.source.is_none()) {
            return Err(errors.join("; "));
        }
        Ok(Self {
            slots,
            limits,
            active: None,
        })
    }

    /// Starts a cycle's bookkeeping for [`Self::hwrng_standing`].
    pub fn begin_cycle(&mut self) {
        for slot in &mut self.slots {
            slot.used = false;
            slot.short = false;
        }
    }

    /// Fills `out` (whole blocks) with tested bytes from the first usable
    /// sources in order. Fewer bytes than asked means the sources ran out.
    pub fn fill(&mut self, out: &mut [u8], status: Option<&LoopStatus>) -> Result<Filled, Stopped> {
        let now = Instant::now();
        let mut filled = Filled::default();
        for i in 0..self.slots.len() {
            if filled.bytes == out.len() {
                break;
            }
            let active = self.active;
            let slot = &mut self.slots[i];
            if !slot.health.usable(now) {
                continue;
            }
            if slot.source.is_none() && slot.open(&self.limits).is_err() {
                slot.health.mark_failed(now);
                slot.show_up();
                continue;
            }
            let retrying = slot.health.is_failed();
            if active != Some(i) || retrying {
                if active.is_some() && active != Some(i) {
                    info!(source = %slot.label, "now reading {}", slot.label);
                }
                slot.gate.restart();
                self.active = Some(i);
            }
            let want = out.len() - filled.bytes;
            let credit = slot.credit_per_byte();
            let got = slot.fill(&mut out[filled.bytes..], status)?;
            slot.used = true;
            slot.short |= got < want;
            filled.bytes += got;
            filled.credit_bits += got as f64 * credit;
            if retrying && got == want {
                slot.health.recovered();
                slot.failed_by_tests = false;
                info!(source = %slot.label, "source passed a whole batch again and is trusted");
            }
            slot.show_up();
        }
        Ok(filled)
    }

    /// Closes and reopens every source (SIGHUP): picks up a replaced device
    /// node or a FIFO's new writer. A regular file continues where it was.
    pub fn reopen(&mut self) {
        for slot in &mut self.slots {
            slot.close();
            let _ = slot.open(&self.limits);
            slot.show_up();
        }
        info!("sources reopened");
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
            (p + s.blocks_passed, f + s.blocks_failed)
        })
    }

    /// How the hwrng sources fared this cycle, for the quarantine policy.
    pub fn hwrng_standing(&self) -> HwrngStanding {
        let hwrng = || self.slots.iter().filter(|s| s.spec.is_hwrng());
        HwrngStanding {
            failing: hwrng().any(|s| s.failed_by_tests),
            passing: hwrng().any(|s| s.used && !s.short && !s.health.is_failed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{ContinuousRun, fips::reference};
    use std::collections::VecDeque;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

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
            if reference::test_block(block, &mut ContinuousRun::default()).passed() {
                return b;
            }
        }
    }

    fn pool(spec: SourceSpec) -> SourcePool {
        let limits = ReadLimits {
            timeout: Duration::from_secs(1),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let policy = FailurePolicy {
            retry_initial: Duration::ZERO,
            retry_max: Duration::ZERO,
            ..FailurePolicy::default()
        };
        SourcePool::open(
            &[spec],
            limits,
            Cutoffs::new(8.0, -40.0).unwrap(),
            policy,
            None,
        )
        .unwrap()
    }

    fn fill_one(p: &mut SourcePool) -> Vec<u8> {
        let mut out = vec![0u8; BLOCK_BYTES];
        let got = p.fill(&mut out, None).unwrap().bytes;
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
            let blocks: Vec<Vec<u8>> = (0..12).map(good_block).collect();
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
            assert!(slot.health.is_failed());
            // Reopened at block 3: a new start-up test (b3), b4 held and
            // released by b5. No byte is read twice.
            assert_eq!(fill_one(&mut p), blocks[4]);
            assert!(!p.slots[0].health.is_failed());
        }
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
