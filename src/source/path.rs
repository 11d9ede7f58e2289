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
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{ReadLimits, SourceError};

/// Longest single read. A non-blocking read returns what is there, so this
/// only bounds the copy; large reads keep `check` on a file cheap.
const MAX_READ: usize = 256 * 1024;
const FIRST_WAIT: Duration = Duration::from_millis(1);
const LONGEST_WAIT: Duration = Duration::from_millis(20);

/// What a path is, for telling whether two paths are the same source: a
/// character device by its device number (a node made elsewhere with the
/// same number is the same device), anything else by device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileId {
    Device(u64),
    Inode(u64, u64),
}

impl FileId {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        if meta.file_type().is_char_device() {
            Self::Device(meta.rdev())
        } else {
            Self::Inode(meta.dev(), meta.ino())
        }
    }

    pub fn of_path(path: &Path) -> std::io::Result<Self> {
        std::fs::metadata(path).map(|m| Self::of(&m))
    }
}

/// How far a regular file has been read: which file (device and inode)
/// and the offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilePosition {
    dev: u64,
    ino: u64,
    offset: u64,
}

impl FilePosition {
    /// Where standard input stands, when it is a regular file: opening
    /// `/dev/stdin` anew starts at byte 0, so without this a file given as
    /// `< capture.bin` would be read again from its start (after SIGHUP, or
    /// after a shell already read part of it).
    pub fn of_stdin() -> Option<Self> {
        let meta = std::fs::metadata("/proc/self/fd/0").ok()?;
        if !meta.is_file() {
            return None;
        }
        // The offset of the descriptor itself, as the kernel shows it.
        let info = std::fs::read_to_string("/proc/self/fdinfo/0").ok()?;
        let offset = info
            .lines()
            .find_map(|l| l.strip_prefix("pos:"))?
            .trim()
            .parse()
            .ok()?;
        Some(Self {
            dev: meta.dev(),
            ino: meta.ino(),
            offset,
        })
    }
}

#[derive(Debug)]
pub struct PathSource {
    path: PathBuf,
    file: File,
    is_fifo: bool,
    /// A character device: the only kind of path credited by default.
    is_char_device: bool,
    /// Set for regular files only.
    position: Option<FilePosition>,
    id: FileId,
    limits: ReadLimits,
}

impl PathSource {
    /// Opens `path`; if it is the regular file `resume` was taken from,
    /// reading continues where it stopped.
    pub fn open(
        path: &Path,
        limits: ReadLimits,
        resume: Option<FilePosition>,
    ) -> Result<Self, SourceError> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| match e.kind() {
                ErrorKind::NotFound => SourceError::NotFound { path: path.into() },
                ErrorKind::PermissionDenied => SourceError::PermissionDenied { path: path.into() },
                _ => classify(path, e),
            })?;
        let meta = file.metadata().map_err(|e| classify(path, e))?;
        let mut position = meta.is_file().then_some(FilePosition {
            dev: meta.dev(),
            ino: meta.ino(),
            offset: 0,
        });
        if let (Some(p), Some(r)) = (position.as_mut(), resume)
            && (p.dev, p.ino) == (r.dev, r.ino)
        {
            let mut f = &file;
            f.seek(SeekFrom::Start(r.offset))
                .map_err(|e| classify(path, e))?;
            p.offset = r.offset;
        }
        Ok(Self {
            path: path.into(),
            file,
            is_fifo: meta.file_type().is_fifo(),
            is_char_device: meta.file_type().is_char_device(),
            position,
            id: FileId::of(&meta),
            limits,
        })
    }

    pub fn id(&self) -> FileId {
        self.id
    }

    pub fn is_char_device(&self) -> bool {
        self.is_char_device
    }

    /// Where reading stands, for a regular file.
    pub fn position(&self) -> Option<FilePosition> {
        self.position
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
                    // Progress, not whole blocks, keeps a slow source alive.
                    if let Some(p) = &self.limits.progress {
                        p.beat();
                    }
                    if let Some(p) = self.position.as_mut() {
                        p.offset += n as u64;
                    }
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
            progress: None,
        }
    }

    #[test]
    fn reads_a_file_then_reports_eof() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("data");
        std::fs::write(&p, [7u8; 10]).unwrap();
        let mut s = PathSource::open(&p, limits(), None).unwrap();
        let mut buf = [0u8; 6];
        s.try_fill_bytes(&mut buf).unwrap();
        assert_eq!(buf, [7u8; 6]);
        let err = s.try_fill_bytes(&mut buf).unwrap_err();
        assert_eq!(err.kind().name(), "eof");
    }

    #[test]
    fn a_reopened_file_continues_where_it_stopped_and_a_new_file_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("data");
        std::fs::write(&p, (0..10u8).collect::<Vec<_>>()).unwrap();
        let mut s = PathSource::open(&p, limits(), None).unwrap();
        let mut buf = [0u8; 4];
        s.try_fill_bytes(&mut buf).unwrap();
        let at = s.position();
        let mut s = PathSource::open(&p, limits(), at).unwrap();
        s.try_fill_bytes(&mut buf).unwrap();
        assert_eq!(buf, [4, 5, 6, 7]);
        let at = s.position();
        // Written beside it while the old one exists, so the inode differs.
        let new = dir.path().join("new");
        std::fs::write(&new, [9u8; 10]).unwrap();
        std::fs::rename(&new, &p).unwrap();
        let mut s = PathSource::open(&p, limits(), at).unwrap();
        s.try_fill_bytes(&mut buf).unwrap();
        assert_eq!(buf, [9; 4], "another file (inode) is read from its start");
    }

    #[test]
    fn missing_path_is_not_found() {
        let err = PathSource::open(Path::new("/nonexistent/hwrng"), limits(), None).unwrap_err();
        assert_eq!(err.kind().name(), "not_found");
    }
}
