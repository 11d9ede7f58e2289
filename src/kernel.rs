//! Readings of the kernel's random subsystem from procfs and sysfs.
//!
//! The roots are parameters because in a pod the host's `/proc` and `/sys`
//! are mounted elsewhere. Every reading is optional: a missing file is a
//! kernel without the feature, not an error.

use std::path::{Path, PathBuf};

/// The kernel's view of its pool and its hardware RNG at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelReadings {
    pub entropy_avail_bits: Option<u64>,
    pub poolsize_bits: Option<u64>,
    pub rng_current: Option<String>,
    pub rng_available: Vec<String>,
    pub rng_quality: Option<u32>,
}

/// Where to find the kernel's files.
#[derive(Clone, Debug)]
pub struct KernelPaths {
    pub proc_root: PathBuf,
    pub sys_root: PathBuf,
}

impl KernelPaths {
    pub fn new(proc_root: &Path, sys_root: &Path) -> Self {
        Self {
            proc_root: proc_root.into(),
            sys_root: sys_root.into(),
        }
    }

    pub fn hw_random_dir(&self) -> PathBuf {
        self.sys_root.join("class/misc/hw_random")
    }

    pub fn rng_quality_path(&self) -> PathBuf {
        self.hw_random_dir().join("rng_quality")
    }

    pub fn read(&self) -> KernelReadings {
        let random = self.proc_root.join("sys/kernel/random");
        let hw = self.hw_random_dir();
        let rng_current = read_trimmed(&hw.join("rng_current")).filter(|s| s != "none");
        KernelReadings {
            entropy_avail_bits: read_number(&random.join("entropy_avail")),
            poolsize_bits: read_number(&random.join("poolsize")),
            rng_current,
            rng_available: read_trimmed(&hw.join("rng_available"))
                .map(|s| {
                    s.split_whitespace()
                        .filter(|n| *n != "none")
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            rng_quality: read_number(&hw.join("rng_quality")),
        }
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn read_number<T: std::str::FromStr>(path: &Path) -> Option<T> {
    read_trimmed(path)?.parse().ok()
}

/// Capability sets of this process, from `/proc/self/status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub effective: u64,
    pub permitted: u64,
    pub bounding: u64,
}

pub fn own_capabilities() -> Option<Capabilities> {
    parse_capabilities(&std::fs::read_to_string("/proc/self/status").ok()?)
}

pub fn parse_capabilities(status: &str) -> Option<Capabilities> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    };
    Some(Capabilities {
        effective: field("CapEff:")?,
        permitted: field("CapPrm:")?,
        bounding: field("CapBnd:")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_fake_tree_and_tolerates_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let random = root.join("proc/sys/kernel/random");
        let hw = root.join("sys/class/misc/hw_random");
        std::fs::create_dir_all(&random).unwrap();
        std::fs::create_dir_all(&hw).unwrap();
        std::fs::write(random.join("entropy_avail"), "256\n").unwrap();
        std::fs::write(hw.join("rng_current"), "tpm-rng-0\n").unwrap();
        std::fs::write(hw.join("rng_available"), "tpm-rng-0 virtio_rng.0 none\n").unwrap();
        std::fs::write(hw.join("rng_quality"), "512\n").unwrap();
        let r = KernelPaths::new(&root.join("proc"), &root.join("sys")).read();
        assert_eq!(r.entropy_avail_bits, Some(256));
        assert_eq!(r.poolsize_bits, None);
        assert_eq!(r.rng_current.as_deref(), Some("tpm-rng-0"));
        assert_eq!(r.rng_available, ["tpm-rng-0", "virtio_rng.0"]);
        assert_eq!(r.rng_quality, Some(512));
    }

    #[test]
    fn parses_capability_lines() {
        let s = "Name:\tx\nCapPrm:\t0000000000200000\nCapEff:\t0000000000200000\nCapBnd:\t000001ffffffffff\n";
        let c = parse_capabilities(s).unwrap();
        assert_eq!(c.effective, 1 << 21);
        assert_eq!(c.bounding, 0x1ff_ffff_ffff);
    }
}

/// The kernel's credit for its hardware RNG, `rng_quality` (0 to 1024), held
/// at 0 while the device fails its health tests, so that the kernel's own
/// `[hwrng]` thread stops crediting it.
///
/// The file is opened once, at start, so that writing it later needs no
/// privilege. A marker in the state folder records the quality found, so
/// that a quarantine left by a crash is recognised (and not mistaken for an
/// administrator's 0) and lifted once the device passes again.
#[derive(Debug)]
pub struct Quarantine {
    file: std::fs::File,
    path: PathBuf,
    marker: Option<PathBuf>,
    rng: String,
    /// The quality to restore, while the quarantine holds.
    held: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("{path}: {source} (quarantine needs the host's /sys writable: a privileged container)")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: no hardware RNG is current")]
    NoRng(PathBuf),
}

const MARKER: &str = "hwrng-quarantine";

impl Quarantine {
    pub fn open(paths: &KernelPaths, state_dir: Option<&Path>) -> Result<Self, QuarantineError> {
        let path = paths.rng_quality_path();
        let io = |source| QuarantineError::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        let rng = paths
            .read()
            .rng_current
            .ok_or_else(|| QuarantineError::NoRng(path.clone()))?;
        let marker = state_dir.map(|d| d.join(MARKER));
        let mut q = Self {
            file,
            path,
            marker,
            rng,
            held: None,
        };
        // A marker for this device with the quality still at 0 is a
        // quarantine an earlier run did not lift.
        if let Some(m) = &q.marker
            && let Ok(text) = std::fs::read_to_string(m)
        {
            let mut fields = text.split_whitespace();
            let (rng, quality) = (fields.next(), fields.next().and_then(|v| v.parse().ok()));
            if rng == Some(q.rng.as_str()) && q.current()? == 0 {
                q.held = quality;
            } else {
                let _ = std::fs::remove_file(m);
            }
        }
        Ok(q)
    }

    pub fn rng(&self) -> &str {
        &self.rng
    }

    pub fn is_held(&self) -> bool {
        self.held.is_some()
    }

    fn current(&self) -> Result<u32, QuarantineError> {
        let mut buf = [0u8; 16];
        let n = std::os::unix::fs::FileExt::read_at(&self.file, &mut buf, 0).map_err(|source| {
            QuarantineError::Io {
                path: self.path.clone(),
                source,
            }
        })?;
        Ok(std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0))
    }

    fn write(&self, quality: u32) -> Result<(), QuarantineError> {
        let text = format!("{quality}\n");
        std::os::unix::fs::FileExt::write_at(&self.file, text.as_bytes(), 0).map_err(|source| {
            QuarantineError::Io {
                path: self.path.clone(),
                source,
            }
        })?;
        // sysfs takes each write whole; a plain file (a sysfs tree copied for
        // a test or a chroot) keeps what was longer, so cut it to size.
        let _ = self.file.set_len(text.len() as u64);
        Ok(())
    }

    /// Sets the quality to 0; returns the quality found, or None if already held.
    pub fn hold(&mut self) -> Result<Option<u32>, QuarantineError> {
        if self.held.is_some() {
            return Ok(None);
        }
        let found = self.current()?;
        if let Some(m) = &self.marker {
            let _ = std::fs::create_dir_all(m.parent().unwrap_or(Path::new("/")));
            let _ = std::fs::write(m, format!("{} {found}\n", self.rng));
        }
        self.write(0)?;
        self.held = Some(found);
        Ok(Some(found))
    }

    /// Restores the quality found; returns it, or None if nothing was held.
    pub fn release(&mut self) -> Result<Option<u32>, QuarantineError> {
        let Some(found) = self.held else {
            return Ok(None);
        };
        self.write(found)?;
        self.held = None;
        if let Some(m) = &self.marker {
            let _ = std::fs::remove_file(m);
        }
        Ok(Some(found))
    }
}
