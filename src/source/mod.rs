//! Where entropy comes from: a path (character device, FIFO or regular file)
//! or the CPU's RDSEED/RDRAND instructions.
//!
//! A source either fills the whole buffer it is given or says why it could
//! not ([`SourceError`]); the [`SourcePool`] orders the configured sources
//! for failover, gives each its own health gate and backs off from failed
//! ones.

mod assess;
mod cpu;
mod path;
mod pool;
#[cfg(target_arch = "x86_64")]
mod rdrand;
#[cfg(target_arch = "aarch64")]
mod rndr;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

pub use cpu::{CpuInstruction, CpuSource};
pub use path::{FileId, FilePosition, PathSource};
pub use pool::{
    Filled, HwrngStanding, NoSourceOpens, Observe, PoolOptions, RDRAND_ENTROPY_PER_BYTE,
    SourceObserver, SourcePool, Stopped, Unobserved,
};

/// A `--source` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    Path(PathBuf),
    /// `-`: standard input, as `rngtest < file` reads it.
    Stdin,
    Cpu(CpuInstruction),
}

/// Where standard input is opened from, as a path: a new, non-blocking
/// description of the same pipe or file.
const STDIN_PATH: &str = "/dev/stdin";

impl FromStr for SourceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(instruction) = CpuInstruction::from_name(s) {
            return Ok(Self::Cpu(instruction));
        }
        match s {
            "-" => Ok(Self::Stdin),
            "" => Err(
                "expected a path (/dev/hwrng), `-`, `rdseed`, `rdrand`, `rndrrs` or `rndr`".into(),
            ),
            // Any other word is a path: a file named like a keyword is
            // reached as ./rdrand.
            p => Ok(Self::Path(p.into())),
        }
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(p) => write!(f, "{}", p.display()),
            Self::Stdin => f.write_str("-"),
            Self::Cpu(i) => f.write_str(i.name()),
        }
    }
}

/// Why a source could not deliver. `kind()` is the metric label.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: no such file or device")]
    NotFound { path: PathBuf },
    #[error("{path}: permission denied (reading a device needs root or the device's group)")]
    PermissionDenied { path: PathBuf },
    #[error("{path}: cannot open: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: end of data (the file ended or the FIFO's writer went away)")]
    Eof { path: PathBuf },
    #[error("{path}: device gone ({source})")]
    DeviceGone {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: read error: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{name}: no data within {timeout:?}")]
    Timeout { name: String, timeout: Duration },
    #[error("{name}: {}", stopped_by())]
    Stopped { name: String },
    #[error("{name}: {reason}")]
    Unsupported { name: &'static str, reason: String },
    #[error("{0}: the instruction kept returning no data")]
    CpuExhausted(&'static str),
}

named_enum! {
    /// The kinds of [`SourceError`], as metric labels.
    pub enum ErrorKind {
        NotFound => "not_found",
        PermissionDenied => "permission_denied",
        Open => "open",
        Eof => "eof",
        DeviceGone => "device_gone",
        Io => "io",
        Timeout => "timeout",
        Stopped => "stopped",
        Unsupported => "unsupported",
        CpuExhausted => "cpu_exhausted",
    }
}

impl SourceError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            Self::Open { .. } => ErrorKind::Open,
            Self::Eof { .. } => ErrorKind::Eof,
            Self::DeviceGone { .. } => ErrorKind::DeviceGone,
            Self::Io { .. } => ErrorKind::Io,
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::Stopped { .. } => ErrorKind::Stopped,
            Self::Unsupported { .. } => ErrorKind::Unsupported,
            Self::CpuExhausted(_) => ErrorKind::CpuExhausted,
        }
    }

    /// The source is closed and opened again before its next read: the
    /// file or device behind it may have been replaced.
    pub fn closes_source(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::NotFound | ErrorKind::DeviceGone | ErrorKind::Io
        )
    }
}

/// Where a source's bytes come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provenance {
    /// A character device or a CPU instruction: credited by its claim.
    Device,
    /// A FIFO, a pipe, a socket, standard input from either: whoever writes
    /// into it chooses the bytes, a replayed capture included, so it is
    /// credited only when the operator names it (`--credit-stream`).
    Stream,
    /// A regular file (or a block device): a capture that may have been read
    /// before, by this run or an earlier one; never credited.
    Replayable,
}

/// What the kernel sink credits per byte of a source.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Credit {
    /// This many bits per byte, whatever the source.
    Bits(f64),
    /// The source's default claim, but never more than its newest
    /// min-entropy estimate, and nothing before it has one.
    Auto,
}

impl Credit {
    /// `bits` per byte, checked: 0 to 8. The one rule, for the command
    /// line and for a configuration built in code.
    pub fn bits(bits: f64) -> Result<Self, String> {
        match (0.0..=8.0).contains(&bits) {
            true => Ok(Self::Bits(bits)),
            false => Err(format!("{bits} is outside 0 to 8 bits per byte")),
        }
    }
}

/// What every source is given: when to give up on a read, and the flag that
/// ends a read early at shutdown.
#[derive(Clone, Debug)]
pub struct ReadLimits {
    pub timeout: Duration,
    pub stop: Arc<AtomicBool>,
    /// Told of every read that brings bytes, for the liveness check.
    pub progress: Option<Arc<dyn Heartbeat>>,
}

/// The loop's one sign of life: beaten by every read that brings bytes,
/// whichever source and layer it is in.
pub trait Heartbeat: Send + Sync + std::fmt::Debug {
    fn beat(&self);
}

/// The signal that asked the process to stop (0: none yet). Signals are
/// the process's, so one record serves every stop flag.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Records the signal that asks the process to stop, for [`stopped_by`];
/// called before the stop flag is set.
pub fn note_stop_signal(signal: i32) {
    STOP_SIGNAL.store(signal, Ordering::Relaxed);
}

/// Why a read ended early: "stopped by a signal (SIGINT)", naming the
/// signal when one was recorded.
pub fn stopped_by() -> String {
    match signal_hook::low_level::signal_name(STOP_SIGNAL.load(Ordering::Relaxed)) {
        Some(name) => format!("stopped by a signal ({name})"),
        None => "stopped by a signal".into(),
    }
}

/// An opened source.
#[derive(Debug)]
pub enum Source {
    Path(PathSource),
    Cpu(CpuSource),
    /// Test-only: replays scripted reads and errno values, for the faults
    /// the kernel offers no real way to cause (EIO, ENODEV).
    #[cfg(test)]
    Scripted(std::collections::VecDeque<Result<Vec<u8>, i32>>),
}

impl Source {
    /// Opens a source; a regular file opened before continues at `resume`,
    /// so that its bytes are never read (and delivered) twice.
    pub fn open(
        spec: &SourceSpec,
        limits: &ReadLimits,
        resume: Option<FilePosition>,
    ) -> Result<Self, SourceError> {
        Ok(match spec {
            SourceSpec::Path(p) => Self::Path(PathSource::open(p, limits.clone(), resume)?),
            // Where this process left it, else where it was handed over.
            SourceSpec::Stdin => Self::Path(PathSource::open(
                std::path::Path::new(STDIN_PATH),
                limits.clone(),
                resume.or_else(FilePosition::of_stdin),
            )?),
            SourceSpec::Cpu(i) => Self::Cpu(CpuSource::new(*i)?),
        })
    }

    /// Where a regular file was left, to continue there after a reopen.
    pub fn position(&self) -> Option<FilePosition> {
        match self {
            Self::Path(p) => p.position(),
            _ => None,
        }
    }

    /// Which file or device this is; None for CPU instructions.
    pub fn id(&self) -> Option<FileId> {
        match self {
            Self::Path(p) => Some(p.id()),
            _ => None,
        }
    }

    /// Where the bytes come from, for what the kernel sink may credit.
    pub fn provenance(&self) -> Provenance {
        match self {
            Self::Path(p) if p.is_char_device() => Provenance::Device,
            Self::Path(p) if p.position().is_some() => Provenance::Replayable,
            Self::Path(_) => Provenance::Stream,
            Self::Cpu(_) => Provenance::Device,
            #[cfg(test)]
            Self::Scripted(_) => Provenance::Device,
        }
    }
}

impl Source {
    /// Fills `dst`; on failure `filled` tells how many bytes arrived first.
    pub fn fill(&mut self, dst: &mut [u8], filled: &mut usize) -> Result<(), SourceError> {
        match self {
            Self::Path(s) => s.fill(dst, filled),
            Self::Cpu(s) => {
                s.try_fill_bytes(dst)?;
                *filled = dst.len();
                Ok(())
            }
            #[cfg(test)]
            Self::Scripted(script) => match script.pop_front() {
                Some(Ok(bytes)) => {
                    dst.copy_from_slice(&bytes[..dst.len()]);
                    *filled = dst.len();
                    Ok(())
                }
                Some(Err(errno)) => Err(path::classify(
                    std::path::Path::new("scripted"),
                    std::io::Error::from_raw_os_error(errno),
                )),
                None => Err(SourceError::Eof {
                    path: "scripted".into(),
                }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!(
            "rdrand".parse(),
            Ok(SourceSpec::Cpu(CpuInstruction::RdRand))
        );
        assert_eq!(
            "rdseed".parse(),
            Ok(SourceSpec::Cpu(CpuInstruction::RdSeed))
        );
        assert_eq!(
            "/dev/hwrng".parse(),
            Ok(SourceSpec::Path("/dev/hwrng".into()))
        );
        assert_eq!("big.bin".parse(), Ok(SourceSpec::Path("big.bin".into())));
        assert_eq!("./rdrand".parse(), Ok(SourceSpec::Path("./rdrand".into())));
        assert_eq!("-".parse(), Ok(SourceSpec::Stdin));
        assert!("".parse::<SourceSpec>().is_err());
    }
}
