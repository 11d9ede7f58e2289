//! `check`: an rngtest equivalent. Reads blocks from each source in turn,
//! tests each block, and reports the counts per test: the FIPS 140-2
//! verdicts exactly as `rngtest` counts them, the other tests beside them.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::cli::{CheckArgs, ReportFormat};
use crate::health::entropy::{self, AssessError, Assessment, Estimates};
use crate::health::estimate::{Budget, CHECK_BUDGET, Sampling, Window, Windows};
use crate::health::{
    BLOCK_BYTES, Block, BlockScan, ContinuousRun, HealthConfig, StreamTests, Test, TestCounts,
    Trust, TrustEvent,
};
use crate::source::{ReadLimits, Source, SourceError, SourceSpec};

mod scan;
pub mod verdict;

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
    /// SP 800-90B min-entropy assessments of the bytes read.
    pub min_entropy: AssessmentReport,
    /// Whether the failures say the source is bad, at a false-alarm bound.
    pub verdict: verdict::Verdict,
    /// What `run` would have made of the same blocks, in the same order.
    pub daemon: DaemonView,
}

/// The blocks judged as the daemon judges them ([`Trust`], under the
/// default failure policy): whether, and where, `run` would have stopped
/// using the source. `check` itself reads on to the end, as rngtest does.
#[derive(Debug, serde::Serialize)]
pub struct DaemonView {
    pub max_failures: u32,
    pub forgive_after: u32,
    /// The first time the source would have been marked failed.
    pub gives_up: Option<GiveUp>,
}

#[derive(Debug, PartialEq, Eq, serde::Serialize)]
pub struct GiveUp {
    /// The block, from 0, whose failure marked the source failed.
    pub block: u64,
    /// Unforgiven failures at that block.
    pub failures: u32,
    /// The tests those failures were of, `test:count` comma-separated.
    pub tests: String,
}

/// The min-entropy assessments of one stream's assessed windows.
#[derive(Debug, serde::Serialize)]
pub struct AssessmentReport {
    pub window_samples: usize,
    /// `auto`, `off`, or N for one window in every N.
    pub sampling: String,
    pub bits_per_sample: u8,
    /// Whole windows the stream held.
    pub windows: u64,
    /// The lowest assessed value of any window: the one to judge by.
    pub lowest: Option<f64>,
    /// Time spent assessing.
    pub seconds: f64,
    pub assessed: Vec<AssessedWindow>,
}

/// One window's assessment, and where it was in the stream.
#[derive(Debug, serde::Serialize)]
pub struct AssessedWindow {
    /// Which window, from 0; its first sample is `index × window_samples`.
    pub window: u64,
    /// The stream ended before the window was full.
    pub partial: bool,
    #[serde(flatten)]
    pub assessment: Assessment,
}

impl AssessmentReport {
    fn add(&mut self, window: &Window, assessment: Assessment) {
        if self.lowest.is_none_or(|l| assessment.assessed < l) {
            self.lowest = Some(assessment.assessed);
        }
        self.assessed.push(AssessedWindow {
            window: window.index,
            partial: window.partial,
            assessment,
        });
    }

    fn lowest_window(&self) -> Option<&AssessedWindow> {
        self.assessed
            .iter()
            .min_by(|a, b| a.assessment.assessed.total_cmp(&b.assessment.assessed))
    }
}

/// What to test each source for, and how.
struct Plan {
    blocks: u64,
    /// Threads that scan blocks (one of them also runs the in-order tests).
    jobs: usize,
    /// The cutoffs, the assessment's windows, and the daemon's rules, to
    /// say where it would give the source up.
    health: HealthConfig,
    bits_per_sample: u8,
    /// The verdict's false-alarm bound.
    false_alarm_bound: f64,
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
    #[error("--source {spec} --bits-per-sample {bits}: {source}")]
    Assess {
        spec: String,
        bits: u8,
        source: AssessError,
    },
}

/// Tests each source in turn, as many blocks of each as asked for.
pub fn check(
    args: &CheckArgs,
    health: &HealthConfig,
    limits: &ReadLimits,
) -> Result<Vec<Report>, CheckError> {
    let plan = Plan {
        blocks: args.blocks,
        jobs: args.jobs(),
        health: *health,
        bits_per_sample: args.bits_per_sample,
        false_alarm_bound: args.false_alarm_bound,
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
    // The assessment sees every sample, the priming bytes too, as NIST's
    // tool would see the same file.
    stream.untested(&prime[..got]);
    if ended.is_none() {
        let read = match regular_file(spec) {
            // Positioned reads from every thread, after the priming bytes.
            Some((file, path)) => {
                drop(source);
                let read = scan::run_file(&file, path, 4, (plan, limits), &mut stream);
                if plan.blocks == 0 {
                    stream.untested(&file_tail(
                        &file,
                        4 + stream.counts.blocks * BLOCK_BYTES as u64,
                    ));
                }
                read
            }
            None => scan::run(source, plan, limits, &mut stream),
        };
        bytes_read += read.bytes;
        ended = read.ended;
    }
    stream.finish_stream();
    if let Some(source) = stream.error.take() {
        return Err(CheckError::Assess {
            spec: spec.to_string(),
            bits: plan.bits_per_sample,
            source,
        });
    }
    let c = &stream.counts;
    let verdict = verdict::verdict(
        c.blocks,
        c.fips_failures,
        c.sp800_90b_failures + c.failed(Test::RepeatedBlock),
        plan.health.alpha(),
        plan.false_alarm_bound,
    );
    Ok(Report {
        verdict,
        source: spec.to_string(),
        counts: stream.counts,
        bytes_read,
        seconds: started.elapsed().as_secs_f64(),
        ended,
        rct_cutoff: plan.health.cutoffs().rct,
        apt_cutoff: plan.health.cutoffs().apt,
        min_entropy: stream.min_entropy,
        daemon: DaemonView {
            max_failures: plan.health.policy().max_failures,
            forgive_after: plan.health.policy().forgive_after,
            gives_up: stream.gives_up,
        },
    })
}

/// The bytes of a file from `offset` to its end, shorter than a block: the
/// tail no block test sees. Empty if it cannot be read.
fn file_tail(file: &std::fs::File, offset: u64) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut tail = vec![0u8; BLOCK_BYTES];
    let mut got = 0;
    while got < tail.len() {
        match file.read_at(&mut tail[got..], offset + got as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    tail.truncate(got);
    tail
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
    windows: Windows,
    budget: Budget,
    started: Instant,
    jobs: usize,
    min_entropy: AssessmentReport,
    /// The first assessment that could not be made; no more are tried.
    error: Option<AssessError>,
    /// The daemon's judgement of the same verdicts, until it gives up.
    trust: Trust,
    gives_up: Option<GiveUp>,
}

impl Stream {
    fn new(plan: &Plan, continuous: ContinuousRun) -> Self {
        let h = &plan.health;
        let windows = Windows::new(h.estimate_window(), h.estimate_every());
        Self {
            tests: StreamTests::new(h.cutoffs(), continuous),
            counts: TestCounts::default(),
            min_entropy: AssessmentReport {
                window_samples: windows.size(),
                sampling: h.estimate_every().to_string(),
                bits_per_sample: plan.bits_per_sample,
                windows: 0,
                lowest: None,
                seconds: 0.0,
                assessed: Vec::new(),
            },
            windows,
            budget: Budget::new(CHECK_BUDGET),
            started: Instant::now(),
            jobs: plan.jobs,
            error: None,
            trust: Trust::new(h),
            gives_up: None,
        }
    }

    fn finish(&mut self, blocks: &[Block], scans: &[BlockScan]) {
        for (block, scan) in blocks.iter().zip(scans) {
            let verdict = self.tests.finish(block, scan);
            self.judge_as_daemon(&verdict);
            self.counts.add(&verdict);
            if let Some(window) = self.windows.feed(block) {
                self.assess(window);
            }
        }
    }

    /// The daemon's first block after it opens a source is its start-up
    /// test's; once it would give the source up, the rest is check's alone.
    fn judge_as_daemon(&mut self, verdict: &crate::health::BlockVerdict) {
        if self.gives_up.is_some() {
            return;
        }
        let block = self.counts.blocks;
        let event = self.trust.judge(*verdict, block == 0, self.started);
        if let Some(TrustEvent::MarkedFailed {
            failures, tests, ..
        }) = event
        {
            self.gives_up = Some(GiveUp {
                block,
                failures,
                tests: tests.to_string(),
            });
        }
    }

    /// Samples no block test saw (the priming bytes, a file's tail): for
    /// the assessment only.
    fn untested(&mut self, samples: &[u8]) {
        if let Some(window) = self.windows.feed(samples) {
            self.assess(window);
        }
    }

    /// The stream ended: its last, partial window too.
    fn finish_stream(&mut self) {
        if let Some(window) = self.windows.finish() {
            self.assess(window);
        }
        self.min_entropy.windows = self.windows.completed();
        self.min_entropy.seconds = self.budget.spent().as_secs_f64();
    }

    fn assess(&mut self, window: Window) {
        let budgeted = self.windows.sampling() == Sampling::Budget;
        if self.error.is_some() || (budgeted && !self.budget.allows(self.started.elapsed())) {
            return;
        }
        let started = Instant::now();
        let bits = self.min_entropy.bits_per_sample;
        match entropy::assess_with(&window.samples, bits, self.jobs) {
            Ok(a) => self.min_entropy.add(&window, a),
            Err(e) => self.error = Some(e),
        }
        self.budget.charge(started.elapsed());
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
    print_assessment(&report.min_entropy, out)?;
    print_daemon_view(&report.daemon, out)?;
    let v = &report.verdict;
    writeln!(
        out,
        "verdict (false-alarm bound {:e}): {}; FIPS 140-2 {} failures, {:.1} expected of good data at most (p = {:.3e}); SP 800-90B and repeated blocks {} (p = {:.3e})",
        v.bound,
        if v.passed { "pass" } else { "fail" },
        v.fips_140_2.failures,
        v.fips_140_2.expected,
        v.fips_140_2.p_value,
        v.others.failures,
        v.others.p_value
    )?;
    writeln!(
        out,
        "blocks tested: {} in {:.3} s",
        c.blocks, report.seconds
    )
}

fn print_daemon_view(d: &DaemonView, out: &mut impl Write) -> std::io::Result<()> {
    let rule = format!(
        "{} unforgiven failures, one forgiven per {} passes",
        d.max_failures, d.forgive_after
    );
    match &d.gives_up {
        None => writeln!(out, "run would keep this source ({rule})"),
        Some(g) => writeln!(
            out,
            "run would give this source up at block {} ({rule}): {} failures, {}",
            g.block, g.failures, g.tests
        ),
    }
}

fn print_assessment(m: &AssessmentReport, out: &mut impl Write) -> std::io::Result<()> {
    let Some(low) = m.lowest_window() else {
        let why = match m.sampling.as_str() {
            "off" => "off (--estimate-every off)".to_string(),
            _ => format!(
                "none (fewer than {} samples read)",
                crate::health::estimate::MIN_WINDOW
            ),
        };
        return writeln!(out, "min-entropy assessment: {why}");
    };
    let a = &low.assessment;
    writeln!(
        out,
        "min-entropy (SP 800-90B, bits per {}-bit sample): {:.6} assessed, in the lowest window",
        m.bits_per_sample,
        a.assessed.max(0.0),
    )?;
    writeln!(
        out,
        "  windows of {} samples: read whole {}, assessed {} (sampling {}, {:.3} s)",
        m.window_samples,
        m.windows,
        m.assessed.len(),
        m.sampling,
        m.seconds
    )?;
    let partial = if low.partial { ", partial" } else { "" };
    writeln!(
        out,
        "  window {}{partial}: {} samples, {} distinct values; H_original {:.6}{}",
        low.window,
        a.samples,
        a.alphabet,
        a.h_original,
        a.h_bitstring
            .map(|h| format!(", H_bitstring {h:.6} per bit"))
            .unwrap_or_default()
    )?;
    print_estimates("literal", &a.literal, out)?;
    if let Some(b) = &a.bitstring {
        print_estimates("bitstring", b, out)?;
    }
    Ok(())
}

fn print_estimates(track: &str, e: &Estimates, out: &mut impl Write) -> std::io::Result<()> {
    let list: Vec<String> = e.iter().map(|(e, v)| format!("{e} {v:.6}")).collect();
    writeln!(out, "  {track}: {}", list.join(", "))
}

#[cfg(test)]
mod tests {
    //! `check` in-process: the report is the same for any `--jobs`, from a
    //! regular file (positioned reads on every thread) and from a stream.
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::health::FailurePolicy;
    use crate::test_support::XorShift;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    fn args(source: &str, jobs: usize) -> CheckArgs {
        let jobs = jobs.to_string();
        let line = [
            "random-refresher",
            "check",
            "--source",
            source,
            "--jobs",
            &jobs,
            "--estimate-window",
            "8250",
            "--estimate-every",
            "30",
        ];
        match Cli::try_parse_args(line).unwrap().command {
            Command::Check(a) => a,
            _ => unreachable!(),
        }
    }

    /// Noise with failures spread over the stream: a block of zeros every
    /// 29, one block repeated, and a tail shorter than a block. Three
    /// pieces of 100 blocks (the last one short) for up to eight threads,
    /// and windows 0, 30 and 60 (the partial last one, 6,000 samples with
    /// the tail) assessed.
    fn stream() -> Vec<u8> {
        let mut x = XorShift(0x5DEE_CE66_D1CE_5EED);
        let mut blocks: Vec<Block> = (0..200).map(|_| x.block()).collect();
        for b in blocks.iter_mut().step_by(29) {
            *b = [0; BLOCK_BYTES];
        }
        // Two in a row: `check`'s blocks start four bytes in.
        blocks[150] = blocks[60];
        blocks[151] = blocks[61];
        let mut bytes = blocks.concat();
        bytes.extend(x.top_bytes(1000));
        bytes
    }

    fn limits() -> ReadLimits {
        ReadLimits {
            // How long `check` waits for a new writer once the FIFO's is
            // gone: the end of every FIFO run here.
            timeout: std::time::Duration::from_secs(1),
            stop: Arc::new(AtomicBool::new(false)),
            progress: None,
        }
    }

    /// `check`'s reports for `a`, with the daemon's default policy.
    fn reports(a: &CheckArgs) -> Vec<Report> {
        let health = a.source.health(FailurePolicy::default()).unwrap();
        check(a, &health, &limits()).unwrap()
    }

    /// The report as JSON, without the times.
    fn report(spec: &str, jobs: usize) -> serde_json::Value {
        let mut reports = reports(&args(spec, jobs));
        let mut v = serde_json::to_value(reports.remove(0)).unwrap();
        v["seconds"] = 0.into();
        v["min_entropy"]["seconds"] = 0.into();
        // Both name the path they read.
        v["source"] = "".into();
        v["ended"] = v["ended"].is_string().into();
        v
    }

    /// The blocks' failures counted on one thread, block after block, as
    /// `check` reads them: after the four bytes that prime the continuous
    /// run test.
    fn failures_in_order(data: &[u8]) -> (u64, u64) {
        let prime = u32::from_le_bytes(data[..4].try_into().unwrap());
        let cutoffs = crate::health::Cutoffs::new(8.0, -40.0).unwrap();
        let mut tests = StreamTests::new(cutoffs, ContinuousRun::primed(prime));
        let (chunks, _) = data[4..].as_chunks::<BLOCK_BYTES>();
        let failed = chunks.iter().filter(|b| !tests.test_block(b).passed());
        (chunks.len() as u64, failed.count() as u64)
    }

    #[test]
    fn one_three_and_eight_jobs_give_the_same_report_from_a_file_and_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let data = stream();
        let file = dir.path().join("file");
        std::fs::write(&file, &data).unwrap();
        let one = report(file.to_str().unwrap(), 1);
        let (blocks, failures) = failures_in_order(&data);
        assert_eq!(one["blocks"], blocks, "{one}");
        assert_eq!(one["failures"], failures, "{one}");
        assert!(failures >= 7, "every zero block fails: {one}");
        assert_eq!(one["repeated_block"], 1, "{one}");
        assert_eq!(one["daemon"]["gives_up"], serde_json::Value::Null, "{one}");
        let assessed = one["min_entropy"]["assessed"].as_array().unwrap();
        assert_eq!(assessed.len(), 3, "{one}");
        assert_eq!(assessed[2]["window"], 60, "{one}");
        assert_eq!(assessed[2]["samples"], data.len() - 60 * 8250, "{one}");
        for jobs in [3, 8] {
            assert_eq!(
                report(file.to_str().unwrap(), jobs),
                one,
                "file, {jobs} jobs"
            );
        }
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for jobs in [1, 3, 8] {
            // The writer is connected before `check` opens the FIFO (a read
            // end of the test's own, never read, lets it open), so that
            // `check` sees the writer go away only at the end.
            use std::os::unix::fs::OpenOptionsExt;
            let _keep = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo)
                .unwrap();
            let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            let data = data.clone();
            let writer = std::thread::spawn(move || std::io::Write::write_all(&mut w, &data));
            let from_fifo = report(fifo.to_str().unwrap(), jobs);
            writer.join().unwrap().unwrap();
            assert_eq!(from_fifo, one, "FIFO, {jobs} jobs");
        }
    }

    /// `check` judges its verdicts with the daemon's [`Trust`]: it names
    /// the block at which `run`, fed the same blocks, marks the source
    /// failed, and reads on past it.
    #[test]
    fn check_names_the_block_where_run_would_give_the_source_up() {
        let mut x = XorShift(0xC0FF_EE00_D15E_A5E5);
        let mut blocks: Vec<Block> = (0..80).map(|_| x.block()).collect();
        for b in &mut blocks[40..70] {
            *b = [0; BLOCK_BYTES];
        }
        let data = blocks.concat();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, &data).unwrap();
        // The daemon's way: every block through `Trust::push`, after the
        // same four priming bytes `check` skips.
        let policy = FailurePolicy::default();
        let mut trust = Trust::new(&HealthConfig::default());
        trust.begin(true);
        let now = Instant::now();
        let (chunks, _) = data[4..].as_chunks::<BLOCK_BYTES>();
        let marked = chunks.iter().enumerate().find_map(|(i, b)| {
            match trust.push(b, &mut [0; BLOCK_BYTES], now).event {
                Some(TrustEvent::MarkedFailed { tests, .. }) => Some((i, tests.to_string())),
                _ => None,
            }
        });
        let (marked, tests) = marked.expect("25 failing blocks mark the source failed");
        // The block before the zeros ends in four of them: a long run.
        assert!(
            tests.starts_with("monobit:24,") && tests.contains("long_run:25"),
            "{tests}"
        );
        let v = report(file.to_str().unwrap(), 3);
        assert_eq!(v["daemon"]["gives_up"]["block"], marked, "{v}");
        assert_eq!(
            v["daemon"]["gives_up"]["failures"], policy.max_failures,
            "{v}"
        );
        assert_eq!(v["daemon"]["gives_up"]["tests"], tests, "{v}");
        assert_eq!(v["blocks"], chunks.len(), "check reads on: {v}");
        let reports = reports(&args(file.to_str().unwrap(), 1));
        let mut text = Vec::new();
        print(&reports, ReportFormat::Text, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        let line = format!(
            "run would give this source up at block {marked} (25 unforgiven failures, one forgiven per 1000 passes): 25 failures, {tests}\n"
        );
        assert!(text.contains(&line), "{text}");
    }
}
