//! Where entropy comes from: a path (character device, FIFO or regular file)
//! or the CPU's RDSEED/RDRAND instructions.
//!
//! Every source is a `rand_core::TryRng` whose error is [`SourceError`]: the
//! refresher only ever asks for bytes with `try_fill_bytes`, and a source
//! either fills the whole buffer or says why it could not.

mod cpu;
mod path;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

pub use cpu::{CpuInstruction, CpuSource};
pub use path::PathSource;
use rand_core::TryRng;

/// A `--source` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    Path(PathBuf),
    Cpu(CpuInstruction),
}

impl FromStr for SourceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rdseed" => Ok(Self::Cpu(CpuInstruction::RdSeed)),
            "rdrand" => Ok(Self::Cpu(CpuInstruction::RdRand)),
            "" => Err("expected a path (/dev/hwrng), `rdseed` or `rdrand`".into()),
            p if p.starts_with('/') || p.starts_with('.') => Ok(Self::Path(p.into())),
            other => Err(format!(
                "`{other}` is not a source: expected an absolute or ./relative path, `rdseed` or `rdrand`"
            )),
        }
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(p) => write!(f, "{}", p.display()),
            Self::Cpu(i) => f.write_str(i.name()),
        }
    }
}

impl SourceSpec {
    /// Whether this names the kernel's hardware RNG character device, the one
    /// source whose kernel-side crediting the daemon can switch off.
    pub fn is_hwrng(&self) -> bool {
        matches!(self, Self::Path(p) if p.file_name().is_some_and(|n| n == "hwrng"))
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
    #[error("{name}: stopped by shutdown")]
    Stopped { name: String },
    #[error("{0}: this CPU does not have the instruction")]
    Unsupported(&'static str),
    #[error("{0}: the instruction kept returning no data")]
    CpuExhausted(&'static str),
}

impl SourceError {
    /// Every `kind()`, for series that should exist before the first error.
    pub const KINDS: [&'static str; 10] = [
        "not_found",
        "permission_denied",
        "open",
        "eof",
        "device_gone",
        "io",
        "timeout",
        "stopped",
        "unsupported",
        "cpu_exhausted",
    ];

    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "not_found",
            Self::PermissionDenied { .. } => "permission_denied",
            Self::Open { .. } => "open",
            Self::Eof { .. } => "eof",
            Self::DeviceGone { .. } => "device_gone",
            Self::Io { .. } => "io",
            Self::Timeout { .. } => "timeout",
            Self::Stopped { .. } => "stopped",
            Self::Unsupported(_) => "unsupported",
            Self::CpuExhausted(_) => "cpu_exhausted",
        }
    }
}

/// What every source is given: when to give up on a read, and the flag that
/// ends a read early at shutdown.
#[derive(Clone, Debug)]
pub struct ReadLimits {
    pub timeout: Duration,
    pub stop: Arc<AtomicBool>,
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
    pub fn open(spec: &SourceSpec, limits: &ReadLimits) -> Result<Self, SourceError> {
        Ok(match spec {
            SourceSpec::Path(p) => Self::Path(PathSource::open(p, limits.clone())?),
            SourceSpec::Cpu(i) => Self::Cpu(CpuSource::new(*i)?),
        })
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

impl TryRng for Source {
    type Error = SourceError;

    fn try_next_u32(&mut self) -> Result<u32, SourceError> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, SourceError> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), SourceError> {
        self.fill(dst, &mut 0)
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
        assert!("hwrng".parse::<SourceSpec>().is_err());
        assert!("".parse::<SourceSpec>().is_err());
        assert!(SourceSpec::Path("/host/dev/hwrng".into()).is_hwrng());
        assert!(!SourceSpec::Path("/dev/random".into()).is_hwrng());
    }
}
