//! `check`: an rngtest equivalent. Reads blocks from a source, tests each,
//! and reports the counts per test.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::cli::{CheckArgs, ReportFormat};
use crate::health::{BLOCK_BYTES, Block, ContinuousRun, Cutoffs, HealthGate, TestCounts};
use crate::source::{ReadLimits, Source, SourceError};

/// Blocks read per call: large reads keep a file check near memory speed.
const CHUNK_BLOCKS: usize = 400;

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

pub fn check(args: &CheckArgs, limits: &ReadLimits) -> Result<Report, CheckError> {
    let spec = &args.source.sources[0];
    let mut source = Source::open(spec, limits).map_err(|source| CheckError::Open {
        spec: spec.to_string(),
        source,
    })?;
    let cutoffs = Cutoffs::new(
        args.source.min_entropy,
        -f64::from(args.source.alpha_exponent),
    );
    let started = Instant::now();
    let mut bytes_read = 0u64;
    let mut ended = None;

    // Like rngtest, the first four bytes only prime the continuous run test.
    let mut prime = [0u8; 4];
    let mut got = 0;
    let primed = source.fill(&mut prime, &mut got);
    bytes_read += got as u64;
    let mut gate = HealthGate::new(cutoffs, ContinuousRun::primed(u32::from_le_bytes(prime)));
    let mut counts = TestCounts::default();
    if let Err(e) = primed {
        ended = Some(e.to_string());
    }

    let mut chunk = vec![0u8; CHUNK_BLOCKS * BLOCK_BYTES];
    while ended.is_none() && (args.blocks == 0 || counts.blocks < args.blocks) {
        if limits.stop.load(Ordering::Relaxed) {
            ended = Some("stopped by a signal".into());
            break;
        }
        let left = if args.blocks == 0 {
            CHUNK_BLOCKS as u64
        } else {
            args.blocks - counts.blocks
        };
        let want = left.min(CHUNK_BLOCKS as u64) as usize * BLOCK_BYTES;
        let mut got = 0;
        let result = source.fill(&mut chunk[..want], &mut got);
        bytes_read += got as u64;
        let (blocks, _) = chunk[..got].as_chunks::<BLOCK_BYTES>();
        for block in blocks {
            counts.add(&gate.test_block(block as &Block));
        }
        if let Err(e) = result {
            ended = Some(e.to_string());
        }
    }
    Ok(Report {
        source: spec.to_string(),
        counts,
        bytes_read,
        seconds: started.elapsed().as_secs_f64(),
        ended,
        rct_cutoff: cutoffs.rct,
        apt_cutoff: cutoffs.apt,
    })
}

pub fn print(report: &Report, format: ReportFormat, mut out: impl Write) -> std::io::Result<()> {
    match format {
        ReportFormat::Json => {
            serde_json::to_writer(&mut out, report)?;
            writeln!(out)
        }
        ReportFormat::Text => {
            let c = &report.counts;
            writeln!(out, "source: {}", report.source)?;
            if let Some(why) = &report.ended {
                writeln!(out, "input ended: {why}")?;
            }
            writeln!(out, "bits received from input: {}", report.bytes_read * 8)?;
            writeln!(out, "FIPS 140-2 successes: {}", c.successes)?;
            writeln!(out, "FIPS 140-2 failures: {}", c.failures)?;
            writeln!(out, "FIPS 140-2(2001-10-10) Monobit: {}", c.monobit)?;
            writeln!(out, "FIPS 140-2(2001-10-10) Poker: {}", c.poker)?;
            writeln!(out, "FIPS 140-2(2001-10-10) Runs: {}", c.runs)?;
            writeln!(out, "FIPS 140-2(2001-10-10) Long run: {}", c.long_run)?;
            writeln!(
                out,
                "FIPS 140-2(2001-10-10) Continuous run: {}",
                c.continuous_run
            )?;
            writeln!(
                out,
                "SP 800-90B Repetition Count (cutoff {}): {}",
                report.rct_cutoff, c.rct
            )?;
            writeln!(
                out,
                "SP 800-90B Adaptive Proportion (cutoff {}): {}",
                report.apt_cutoff, c.apt
            )?;
            writeln!(
                out,
                "Repeated block (one of the last 256): {}",
                c.repeated_block
            )?;
            writeln!(
                out,
                "blocks tested: {} in {:.3} s",
                c.blocks, report.seconds
            )
        }
    }
}
