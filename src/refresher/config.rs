//! The refresher's configuration, checked before anything is opened.

use std::path::PathBuf;
use std::time::Duration;

use crate::health::{BLOCK_BYTES, HealthConfig};
use crate::kernel::{KernelPaths, QuarantineError};
use crate::sink::{SinkError, SinkSpec};
use crate::source::{Credit, FileId, PoolOptions, ReadLimits, SourceSpec};

/// The largest batch: one allocation of this size is held for the run.
pub const MAX_BATCH_BYTES: usize = 1 << 30;

/// Everything the loop needs. The health configuration is valid by
/// construction; the rest is checked by [`super::Refresher::new`].
#[derive(Clone, Debug)]
pub struct Config {
    pub sources: Vec<SourceSpec>,
    pub sinks: Vec<SinkSpec>,
    pub random_device: PathBuf,
    /// Tested bytes per sink per cycle.
    pub batch_size: usize,
    pub interval: Duration,
    pub entropy_per_byte: Option<crate::source::Credit>,
    /// FIFO, pipe and standard-input sources that may be credited.
    pub credit_streams: Vec<SourceSpec>,
    pub max_failed_cycles: u32,
    /// How every source is judged.
    pub health: HealthConfig,
    pub limits: ReadLimits,
    pub kernel: KernelPaths,
    /// Hold the kernel's `rng_quality` at 0 while the hwrng source fails.
    pub quarantine: bool,
    /// Hold the current hwrng's `rng_quality` at 0 while running.
    pub hold_quality: bool,
    /// The kernel's hwrng device: the source that is this same file is the
    /// one the quarantine judges.
    pub hwrng: PathBuf,
    /// Where the quarantine marker lives, to survive a crash.
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("--batch-size {0}")]
    BatchSize(String),
    #[error("--entropy-per-byte {0}")]
    EntropyPerByte(String),
    #[error("--source and --sink: at least one of each is needed")]
    Empty,
    #[error("{option} {spec}: given twice; name each once")]
    Duplicate { option: &'static str, spec: String },
    #[error("--credit-stream {0}: not one of the --source options")]
    CreditStream(SourceSpec),
    #[error("--source: none of the sources can be opened ({reasons}){hint}")]
    NoSource {
        reasons: crate::source::NoSourceOpens,
        /// How to pass the device in, when running in a container.
        hint: &'static str,
    },
    #[error("--sink {spec}: {source}")]
    Sink { spec: SinkSpec, source: SinkError },
    #[error("{option}: {source}")]
    Quarantine {
        option: &'static str,
        source: QuarantineError,
    },
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

impl Config {
    /// What no constructor further down checks: a batch of whole blocks, a
    /// credit in range, at least one source and one sink.
    pub(super) fn check(&self) -> Result<(), StartError> {
        batch_size(self.batch_size as u64).map_err(StartError::BatchSize)?;
        if let Some(Credit::Bits(e)) = self.entropy_per_byte {
            Credit::bits(e).map_err(StartError::EntropyPerByte)?;
        }
        if self.sources.is_empty() || self.sinks.is_empty() {
            return Err(StartError::Empty);
        }
        // A source or sink is its metric label: two of one name would share
        // one series, and two of one file sink overwrite each other.
        if let Some(spec) = first_repeated(&self.sources) {
            return Err(StartError::Duplicate {
                option: "--source",
                spec,
            });
        }
        if let Some(spec) = first_repeated(&self.sinks) {
            return Err(StartError::Duplicate {
                option: "--sink",
                spec,
            });
        }
        if let Some(s) = self
            .credit_streams
            .iter()
            .find(|s| !self.sources.contains(s))
        {
            return Err(StartError::CreditStream(s.clone()));
        }
        Ok(())
    }

    pub(super) fn pool_options(&self) -> PoolOptions {
        PoolOptions {
            limits: self.limits.clone(),
            health: self.health,
            entropy_per_byte: self.entropy_per_byte,
            credit_streams: self.credit_streams.clone(),
            hwrng: FileId::of_path(&self.hwrng).ok(),
        }
    }
}

impl StartError {
    /// No source opens; in a container, say how to pass the device in.
    pub(super) fn no_source(reasons: crate::source::NoSourceOpens) -> Self {
        let hint = match crate::kernel::in_container() {
            true => "; for a container, pass the device: docker run --device /dev/hwrng",
            false => "",
        };
        Self::NoSource { reasons, hint }
    }
}

/// `n` bytes as a batch: whole blocks, at least one, at most 1 GiB; the
/// error names the valid sizes on either side. The one rule, for the
/// command line and for a configuration built in code.
pub fn batch_size(n: u64) -> Result<usize, String> {
    let max = MAX_BATCH_BYTES as u64;
    if n == 0 || n > max {
        return Err(format!("{n} bytes is outside 2500 to 1 GiB"));
    }
    let block = BLOCK_BYTES as u64;
    if !n.is_multiple_of(block) {
        // The valid sizes on either side: none below the first block, none
        // above the largest whole number of blocks.
        let below = n / block * block;
        let valid: Vec<String> = [below, below + block]
            .into_iter()
            .filter(|&v| v > 0 && v <= max)
            .map(|v| v.to_string())
            .collect();
        return Err(format!(
            "{n} bytes is not a multiple of {block} (one FIPS 140-2 block): use {}",
            valid.join(" or ")
        ));
    }
    Ok(n as usize)
}

/// The first item named as an earlier one, by its name.
fn first_repeated<T: std::fmt::Display>(items: &[T]) -> Option<String> {
    let names: Vec<String> = items.iter().map(T::to_string).collect();
    (1..names.len())
        .find(|&i| names[..i].contains(&names[i]))
        .map(|i| names[i].clone())
}
