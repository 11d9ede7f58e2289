//! Where tested bytes go: the kernel pool with credit and a forced reseed, a
//! plain mix-in, a seed file, or standard output.

mod batch;
pub(crate) mod kernel;
mod quarantine;
mod seed_file;
mod set;

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use batch::Batch;
pub use kernel::{KernelSink, has_sys_admin};
pub use quarantine::{QuarantinePolicy, Rules as QuarantineRules};
pub use seed_file::SeedFile;
pub use set::SinkSet;

/// A `--sink` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkSpec {
    Kernel,
    Mix,
    File(PathBuf),
    /// A seed file for systemd-random-seed: marked creditable (the extended
    /// attribute `user.random-seed-creditable`), which is what makes systemd
    /// credit it at the next boot.
    CreditableFile(PathBuf),
    Stdout,
}

impl FromStr for SinkSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "kernel" => Ok(Self::Kernel),
            "mix" => Ok(Self::Mix),
            "stdout" => Ok(Self::Stdout),
            _ => {
                if let Some(p) = s.strip_prefix("creditable-file:") {
                    return match p {
                        "" => Err("`creditable-file:` needs a path, as in creditable-file:/var/lib/systemd/random-seed".into()),
                        p => Ok(Self::CreditableFile(p.into())),
                    };
                }
                match s.strip_prefix("file:") {
                    Some("") => Err("`file:` needs a path, as in file:/var/lib/random-seed".into()),
                    Some(p) => Ok(Self::File(p.into())),
                    None => Err(format!(
                        "`{s}` is not a sink: expected kernel, mix, file:PATH, creditable-file:PATH or stdout"
                    )),
                }
            }
        }
    }
}

impl fmt::Display for SinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kernel => f.write_str("kernel"),
            Self::Mix => f.write_str("mix"),
            Self::File(p) => write!(f, "file:{}", p.display()),
            Self::CreditableFile(p) => write!(f, "creditable-file:{}", p.display()),
            Self::Stdout => f.write_str("stdout"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(
        "the kernel sink needs CAP_SYS_ADMIN to credit entropy and force a reseed \
         (run as root or add the capability, e.g. `docker run --cap-add SYS_ADMIN`); \
         `--sink mix` mixes bytes in without credit and needs no capability"
    )]
    NoCapability,
    #[error("--random-device {path}: cannot open the random device: {source}")]
    OpenRandomDevice {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "--random-device {path}: not the kernel's random device (a character device 1:8 or 1:9, not a link)"
    )]
    NotRandomDevice { path: PathBuf },
    #[error("{op} on {path} failed: {source}")]
    Kernel {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing to {path} failed: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("seed file {path}: {source}")]
    SeedFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("standard output: {0}")]
    Stdout(std::io::Error),
    #[error("standard output is closed: nothing can be delivered to `--sink stdout`")]
    StdoutClosed,
}

/// What one delivery did, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    pub bytes: usize,
    pub credited_bits: u64,
    pub reseeded: bool,
    /// The kernel sink found the CRNG not ready yet (RNDRESEEDCRNG said
    /// ENODATA): the bytes were added and credited, the reseed skipped.
    pub crng_not_ready: bool,
}

/// An opened sink.
#[derive(Debug)]
pub enum Sink {
    Kernel(KernelSink),
    Mix { device: File, path: PathBuf },
    File(SeedFile),
    Stdout(StdoutSink),
}

/// Standard output, written through a duplicate of its descriptor, since
/// Rust's `Stdout` takes a closed descriptor (EBADF) for success and a
/// write that did not happen must fail.
///
/// A process started with descriptor 1 closed finds it open on /dev/null:
/// the Rust runtime reopens closed standard descriptors there, read-write,
/// before `main`. That /dev/null is recognised (a shell's `>/dev/null`
/// opens it write-only) and refused like a closed descriptor.
#[derive(Debug)]
pub struct StdoutSink(File);

impl StdoutSink {
    fn open() -> Result<Self, SinkError> {
        use std::os::fd::AsFd;
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let fd = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|_| SinkError::StdoutClosed)?;
        let file = File::from(fd);
        let dev_null = file
            .metadata()
            .is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == libc::makedev(1, 3));
        if dev_null && stdout_opened_read_write() {
            return Err(SinkError::StdoutClosed);
        }
        Ok(Self(file))
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        self.0.write_all(bytes).map_err(SinkError::Stdout)
    }
}

impl Sink {
    /// Opens a sink. The random device is opened here, once, so that the
    /// daemon can drop its privileges afterwards.
    pub fn open(spec: &SinkSpec, random_device: &Path) -> Result<Self, SinkError> {
        Ok(match spec {
            SinkSpec::Kernel => Self::Kernel(KernelSink::open(random_device)?),
            SinkSpec::Mix => Self::Mix {
                device: open_random_device(random_device)?,
                path: random_device.into(),
            },
            SinkSpec::File(p) => Self::File(SeedFile::open(p, false)?),
            SinkSpec::CreditableFile(p) => Self::File(SeedFile::open(p, true)?),
            SinkSpec::Stdout => Self::Stdout(StdoutSink::open()?),
        })
    }

    /// Delivers tested bytes; `credit_bits` is the entropy they carry, which
    /// only the kernel sink passes on.
    pub fn deliver(&mut self, batch: &mut Batch, credit_bits: f64) -> Result<Delivered, SinkError> {
        let bytes = batch.bytes();
        let plain = Delivered {
            bytes: bytes.len(),
            ..Delivered::default()
        };
        match self {
            Self::Kernel(k) => k.deliver(batch, credit_bits),
            Self::Mix { device, path } => {
                device.write_all(bytes).map_err(|source| SinkError::Write {
                    path: path.clone(),
                    source,
                })?;
                Ok(plain)
            }
            Self::File(f) => f.replace(bytes).map(|()| plain),
            Self::Stdout(out) => out.write(bytes).map(|()| plain),
        }
    }
}

/// Whether descriptor 1 was opened read-write, from its `flags:` line in
/// procfs (octal open flags).
fn stdout_opened_read_write() -> bool {
    std::fs::read_to_string("/proc/self/fdinfo/1")
        .ok()
        .and_then(|s| {
            let flags = s.lines().find_map(|l| l.strip_prefix("flags:"))?;
            u32::from_str_radix(flags.trim(), 8).ok()
        })
        .is_some_and(|f| f & libc::O_ACCMODE as u32 == libc::O_RDWR as u32)
}

/// Opens the kernel's random device for writing: a character device with
/// the number of /dev/random (1:8) or /dev/urandom (1:9), reached without
/// following a symlink. Anything else (a regular file, a link planted at
/// the path) is refused before a byte is written to it as root.
fn open_random_device(path: &Path) -> Result<File, SinkError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
    let open_err = |source| SinkError::OpenRandomDevice {
        path: path.into(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(open_err)?;
    let meta = file.metadata().map_err(open_err)?;
    let random = [libc::makedev(1, 8), libc::makedev(1, 9)];
    if !(meta.file_type().is_char_device() && random.contains(&meta.rdev())) {
        return Err(SinkError::NotRandomDevice { path: path.into() });
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        for s in [
            "kernel",
            "mix",
            "stdout",
            "file:/var/lib/seed",
            "creditable-file:/var/lib/systemd/random-seed",
        ] {
            assert_eq!(s.parse::<SinkSpec>().unwrap().to_string(), s);
        }
        assert!("file:".parse::<SinkSpec>().is_err());
        assert!("creditable-file:".parse::<SinkSpec>().is_err());
        assert_eq!(
            "creditable-file:/s".parse::<SinkSpec>().unwrap(),
            SinkSpec::CreditableFile("/s".into())
        );
        assert!(
            "pool"
                .parse::<SinkSpec>()
                .unwrap_err()
                .contains("kernel, mix, file:PATH, creditable-file:PATH or stdout")
        );
    }
}
