//! A path source: a character device (`/dev/hwrng`), a FIFO or a regular file.
//!
//! The file is opened non-blocking and read in a loop that waits between
//! empty reads, so that a read can be abandoned when shutdown is asked for or
//! when no byte has come for the read timeout. `/dev/hwrng` has no poll
//! method (it always looks readable), so a short sleep on EAGAIN is the wait.
//!
//! A FIFO reads as ended whenever no writer has it open, which is also the
//! case before its writer first connects. So for a FIFO an empty read is
//! waited out like EAGAIN, and only a FIFO that stays writerless for the
//! read timeout counts as ended.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{ReadLimits, SourceError};

/// Longest single read. A non-blocking read returns what is there, so this
/// only bounds the copy; large reads keep `check` on a file cheap.
const MAX_READ: usize = 256 * 1024;
const FIRST_WAIT: Duration = Duration::from_millis(1);
const LONGEST_WAIT: Duration = Duration::from_millis(20);

#[derive(Debug)]
pub struct PathSource {
    path: PathBuf,
    file: File,
    is_fifo: bool,
    limits: ReadLimits,
}

impl PathSource {
    pub fn open(path: &Path, limits: ReadLimits) -> Result<Self, SourceError> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| match e.kind() {
                ErrorKind::NotFound => SourceError::NotFound { path: path.into() },
                ErrorKind::PermissionDenied => SourceError::PermissionDenied { path: path.into() },
                _ => classify(path, e),
            })?;
        let is_fifo = file.metadata().is_ok_and(|m| m.file_type().is_fifo());
        Ok(Self {
            path: path.into(),
            file,
            is_fifo,
            limits,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fills `dst` completely, or fails: a short read is continued, EINTR and
    /// EAGAIN are waited out, and a stall longer than the timeout fails.
    pub fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), SourceError> {
        self.fill(dst, &mut 0)
    }

    /// As `try_fill_bytes`, and `filled` tells how much of `dst` holds data
    /// when it fails (a file that ends mid-way still gave its bytes).
    pub fn fill(&mut self, dst: &mut [u8], filled: &mut usize) -> Result<(), SourceError> {
        let mut wait = FIRST_WAIT;
        let mut last_progress = Instant::now();
        while *filled < dst.len() {
            if self.limits.stop.load(Ordering::Relaxed) {
                return Err(SourceError::Stopped {
                    name: self.path.display().to_string(),
                });
            }
            let end = dst.len().min(*filled + MAX_READ);
            let writerless = match self.file.read(&mut dst[*filled..end]) {
                Ok(0) if !self.is_fifo => {
                    return Err(SourceError::Eof {
                        path: self.path.clone(),
                    });
                }
                Ok(0) => true,
                Ok(n) => {
                    *filled += n;
                    wait = FIRST_WAIT;
                    last_progress = Instant::now();
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => false,
                Err(e) => return Err(classify(&self.path, e)),
            };
            if last_progress.elapsed() >= self.limits.timeout {
                if writerless {
                    return Err(SourceError::Eof {
                        path: self.path.clone(),
                    });
                }
                return Err(SourceError::Timeout {
                    name: self.path.display().to_string(),
                    timeout: self.limits.timeout,
                });
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(LONGEST_WAIT);
        }
        Ok(())
    }
}

pub(super) fn classify(path: &Path, e: std::io::Error) -> SourceError {
    match e.raw_os_error() {
        Some(libc::ENODEV | libc::ENXIO) => SourceError::DeviceGone {
            path: path.into(),
            source: e,
        },
        _ => SourceError::Io {
            path: path.into(),
            source: e,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    fn limits() -> ReadLimits {
        ReadLimits {
            timeout: Duration::from_millis(200),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    #[test]
    fn reads_a_file_then_reports_eof() {
        let dir = std::env::temp_dir().join(format!("rr-path-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("data");
        std::fs::write(&p, [7u8; 10]).unwrap();
        let mut s = PathSource::open(&p, limits()).unwrap();
        let mut buf = [0u8; 6];
        s.try_fill_bytes(&mut buf).unwrap();
        assert_eq!(buf, [7u8; 6]);
        let err = s.try_fill_bytes(&mut buf).unwrap_err();
        assert_eq!(err.kind(), "eof");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_path_is_not_found() {
        let err = PathSource::open(Path::new("/nonexistent/hwrng"), limits()).unwrap_err();
        assert_eq!(err.kind(), "not_found");
    }
}
