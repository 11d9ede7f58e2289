//! `check`: an rngtest equivalent. Reads blocks from each source in turn,
//! tests each block, and reports the counts per test: the FIPS 140-2
//! verdicts exactly as `rngtest` counts them, the other tests beside them.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::cli::{CheckArgs, ReportFormat};
use crate::health::estimate::{Estimate, Estimator};
use crate::health::{Block, BlockScan, ContinuousRun, Cutoffs, StreamTests, Test, TestCounts};
use crate::source::{ReadLimits, Source, SourceError, SourceSpec};

mod scan;

#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub source: String,
    #[serde(flatten)]
    pub counts: TestCounts,
    pub bytes_read: u64,
    pub seconds: f64,
    /// Why reading stopped before the requested blocks, if it did.
    pub ended: Option<String>,
    pub rct_cutoff: u32,
    pub apt_cutoff: u32,
    /// SP 800-90B min-entropy estimates of the bytes read.
    pub min_entropy: EstimateReport,
}

/// The estimates over the stream's estimated windows: the newest, and the
/// lowest (the one to judge a device by).
#[derive(Debug, Default, serde::Serialize)]
pub struct EstimateReport {
    pub window_bytes: usize,
    /// One window in every so many was estimated.
    pub every: u32,
    pub windows: u64,
    pub last: Option<Estimate>,
    pub lowest: Option<Estimate>,
}

impl EstimateReport {
    fn add(&mut self, e: Estimate) {
        self.windows += 1;
        self.last = Some(e);
        if self.lowest.is_none_or(|l| e.min < l.min) {
            self.lowest = Some(e);
        }
    }
}

/// What to test each source for, and how.
struct Plan {
    blocks: u64,
    /// Threads that scan blocks (one of them also runs the in-order tests).
    jobs: usize,
    cutoffs: Cutoffs,
    window: usize,
    every: u32,
}

impl Report {
    /// Every requested block was read and passed.
    pub fn passed(&self, requested: u64) -> bool {
        self.counts.failures == 0
            && (requested == 0 || self.counts.blocks == requested)
            && self.counts.blocks > 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("--source {spec}: {source}")]
    Open { spec: String, source: SourceError },
}

/// Tests each source in turn, as many blocks of each as asked for.
pub fn check(
    args: &CheckArgs,
    cutoffs: Cutoffs,
    limits: &ReadLimits,
) -> Result<Vec<Report>, CheckError> {
    let plan = Plan {
        blocks: args.blocks,
        jobs: args.jobs(),
        cutoffs,
        window: args.source.estimate_window,
        every: args.source.estimate_every,
    };
    let mut reports = Vec::new();
    for spec in &args.source.sources {
        if limits.stop.load(Ordering::Relaxed) {
            break;
        }
        reports.push(check_one(spec, &plan, limits)?);
    }
    Ok(reports)
}

fn check_one(spec: &SourceSpec, plan: &Plan, limits: &ReadLimits) -> Result<Report, CheckError> {
    let mut source = Source::open(spec, limits, None).map_err(|source| CheckError::Open {
        spec: spec.to_string(),
        source,
    })?;
    let started = Instant::now();
    // Like rngtest, the first four bytes only prime the continuous run test.
    let mut prime = [0u8; 4];
    let mut got = 0;
    let primed = source.fill(&mut prime, &mut got);
    let mut bytes_read = got as u64;
    let mut ended = primed.err().map(|e| e.to_string());
    let mut stream = Stream::new(plan, ContinuousRun::primed(u32::from_le_bytes(prime)));
    if ended.is_none() {
        let read = match regular_file(spec) {
            // Positioned reads from every thread, after the priming bytes.
            Some((file, path)) => {
                drop(source);
                scan::run_file(&file, path, 4, (plan, limits), &mut stream)
            }
            None => scan::run(source, plan, limits, &mut stream),
        };
        bytes_read += read.bytes;
        ended = read.ended;
    }
    Ok(Report {
        source: spec.to_string(),
        counts: stream.counts,
        bytes_read,
        seconds: started.elapsed().as_secs_f64(),
        ended,
        rct_cutoff: plan.cutoffs.rct,
        apt_cutoff: plan.cutoffs.apt,
        min_entropy: stream.min_entropy,
    })
}

/// The file behind `spec` when it is a regular file, opened for positioned
/// reads.
fn regular_file(spec: &SourceSpec) -> Option<(std::fs::File, &std::path::Path)> {
    let SourceSpec::Path(path) = spec else {
        return None;
    };
    let file = std::fs::File::open(path).ok()?;
    file.metadata()
        .ok()?
        .is_file()
        .then_some((file, path.as_path()))
}

/// Everything that sees the blocks in stream order.
pub(crate) struct Stream {
    tests: StreamTests,
    counts: TestCounts,
    estimator: Estimator,
    min_entropy: EstimateReport,
}

impl Stream {
    fn new(plan: &Plan, continuous: ContinuousRun) -> Self {
        Self {
            tests: StreamTests::new(plan.cutoffs, continuous),
            counts: TestCounts::default(),
            estimator: Estimator::sampled(plan.window, plan.every),
            min_entropy: EstimateReport {
                window_bytes: plan.window.max(crate::health::estimate::MIN_WINDOW),
                every: plan.every,
                ..EstimateReport::default()
            },
        }
    }

    fn finish(&mut self, blocks: &[Block], scans: &[BlockScan]) {
        for (block, scan) in blocks.iter().zip(scans) {
            self.counts.add(&self.tests.finish(block, scan));
            if let Some(e) = self.estimator.feed(block) {
                self.min_entropy.add(e);
            }
        }
    }
}

/// Prints the reports: text, one section per source; JSON, one object per
/// line.
pub fn print(reports: &[Report], format: ReportFormat, mut out: impl Write) -> std::io::Result<()> {
    for (i, report) in reports.iter().enumerate() {
        match format {
            ReportFormat::Json => {
                serde_json::to_writer(&mut out, report)?;
                writeln!(out)?;
            }
            ReportFormat::Text => {
                if i > 0 {
                    writeln!(out)?;
                }
                print_text(report, &mut out)?;
            }
        }
    }
    out.flush()
}

fn print_text(report: &Report, out: &mut impl Write) -> std::io::Result<()> {
    let c = &report.counts;
    writeln!(out, "source: {}", report.source)?;
    if let Some(why) = &report.ended {
        writeln!(out, "input ended: {why}")?;
    }
    writeln!(out, "bits received from input: {}", report.bytes_read * 8)?;
    writeln!(out, "FIPS 140-2 successes: {}", c.fips_successes)?;
    writeln!(out, "FIPS 140-2 failures: {}", c.fips_failures)?;
    for &t in Test::ALL {
        writeln!(out, "{}: {}", t.label(), c.failed(t))?;
    }
    writeln!(
        out,
        "SP 800-90B cutoffs: repetition count {}, adaptive proportion {} (window 512)",
        report.rct_cutoff, report.apt_cutoff
    )?;
    writeln!(out, "SP 800-90B failures: {}", c.sp800_90b_failures)?;
    writeln!(out, "successes (every test passed): {}", c.successes)?;
    writeln!(out, "failures: {}", c.failures)?;
    let m = &report.min_entropy;
    match (m.last, m.lowest) {
        (Some(last), Some(lowest)) => {
            writeln!(
                out,
                "min-entropy estimate (SP 800-90B, bits per byte): {:.3} (MCV {:.3}, MultiMMC {:.3}) in the newest window, {:.3} in the lowest; {} windows of {} bytes, one in every {}",
                last.min, last.mcv, last.mmc, lowest.min, m.windows, m.window_bytes, m.every
            )?;
        }
        _ => writeln!(
            out,
            "min-entropy estimate: none (fewer than {} bytes read)",
            m.window_bytes
        )?,
    }
    writeln!(
        out,
        "blocks tested: {} in {:.3} s",
        c.blocks, report.seconds
    )
}
