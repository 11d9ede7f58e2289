//! Readings of the kernel's random subsystem from procfs and sysfs.
//!
//! The roots are parameters because in a pod the host's `/proc` and `/sys`
//! are mounted elsewhere. Every reading is optional: a missing file is a
//! kernel without the feature, not an error.

use std::os::unix::fs::OpenOptionsExt;
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

/// Whether this process runs in a container (Docker, Podman, a Kubernetes
/// Pod): only there is "pass the device in" the advice to give.
pub fn in_container() -> bool {
    Path::new("/.dockerenv").exists()
        || Path::new("/run/.containerenv").exists()
        || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        || std::fs::read_to_string("/proc/1/cgroup").is_ok_and(|c| {
            ["docker", "kubepods", "containerd", "libpod"]
                .iter()
                .any(|k| c.contains(k))
        })
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

/// The kernel's credit for its hardware RNGs, `rng_quality` (0 to 1024),
/// held at 0 for a device that fails its health tests, so that the
/// kernel's own `[hwrng]` thread stops crediting it.
///
/// `rng_quality` always means the *current* device's quality, and writing
/// it makes the kernel pick the best device again, which may switch
/// `rng_current`. So `rng_current` is read before every write, and a write
/// happens only while the device it is meant for is current.
///
/// The file is opened once, at start, so that writing it later needs no
/// privilege. A marker in the state folder records each held device with
/// the quality it had: the quarantine outlives the process (a crash, a
/// restart, an exit while the device still fails) and is lifted only when
/// that device passes again, or by hand (`random-refresher quarantine
/// --release`).
#[derive(Debug)]
pub struct Quarantine {
    quality: std::fs::File,
    quality_path: PathBuf,
    current_path: PathBuf,
    marker: Option<PathBuf>,
    /// Held devices and the quality to give back to each.
    held: std::collections::BTreeMap<String, u32>,
}

/// What [`Quarantine::hold`] did.
#[derive(Debug)]
pub enum Hold {
    /// Held now; `found` is the quality it had. `marker` is why the marker
    /// could not be written, if it could not: the hold then does not
    /// outlive this process.
    Now {
        found: u32,
        marker: Option<QuarantineError>,
    },
    /// Held already, but its quality had been raised to `found` from
    /// outside: put back to 0.
    Again { found: u32 },
    /// Held already, at 0.
    Already,
}

#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("{path}: {source} (quarantine needs the host's hw_random folder in /sys writable)")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: no hardware RNG is current")]
    NoRng(PathBuf),
    #[error(
        "{wanted} is no longer the current hardware RNG ({current}); its rng_quality cannot be written until it is current again"
    )]
    NotCurrent { wanted: String, current: String },
    #[error("quarantine marker {path}: {source}")]
    Marker {
        path: PathBuf,
        source: std::io::Error,
    },
}

const MARKER: &str = "hwrng-quarantine";

impl Quarantine {
    pub fn open(paths: &KernelPaths, state_dir: Option<&Path>) -> Result<Self, QuarantineError> {
        let quality_path = paths.rng_quality_path();
        let quality = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&quality_path)
            .map_err(|source| QuarantineError::Io {
                path: quality_path.clone(),
                source,
            })?;
        let mut q = Self {
            quality,
            quality_path,
            current_path: paths.hw_random_dir().join("rng_current"),
            marker: state_dir.map(|d| d.join(MARKER)),
            held: Default::default(),
        };
        let current = q
            .current()
            .ok_or_else(|| QuarantineError::NoRng(q.current_path.clone()))?;
        q.held = q.read_marker();
        // A record for the current device whose quality is no longer 0 was
        // lifted by someone else: an administrator's word wins.
        if q.held.contains_key(&current) && q.read_quality()? != 0 {
            q.held.remove(&current);
            q.save_marker()?;
        }
        Ok(q)
    }

    /// The device `rng_quality` speaks for now, if any.
    pub fn current(&self) -> Option<String> {
        read_trimmed(&self.current_path).filter(|s| s != "none")
    }

    /// Held devices and the quality each gets back.
    pub fn held(&self) -> impl Iterator<Item = (&str, u32)> {
        self.held.iter().map(|(k, v)| (k.as_str(), *v))
    }

    pub fn is_held(&self, rng: &str) -> bool {
        self.held.contains_key(rng)
    }

    fn read_marker(&self) -> std::collections::BTreeMap<String, u32> {
        let Some(text) = self
            .marker
            .as_deref()
            .and_then(|m| crate::atomic_file::read_no_follow(m).ok())
        else {
            return Default::default();
        };
        text.lines()
            .filter_map(|l| {
                let (rng, quality) = l.split_once(' ')?;
                Some((rng.to_string(), quality.trim().parse().ok()?))
            })
            .collect()
    }

    fn save_marker(&self) -> Result<(), QuarantineError> {
        let Some(m) = &self.marker else {
            return Ok(());
        };
        let err = |source| QuarantineError::Marker {
            path: m.clone(),
            source,
        };
        if self.held.is_empty() {
            return match std::fs::remove_file(m) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(err(e)),
                _ => Ok(()),
            };
        }
        let text: String = self
            .held
            .iter()
            .map(|(r, q)| format!("{r} {q}\n"))
            .collect();
        if let Some(dir) = m.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        crate::atomic_file::replace(m, ".hwrng-quarantine.tmp.", text.as_bytes()).map_err(err)
    }

    fn read_quality(&self) -> Result<u32, QuarantineError> {
        let mut buf = [0u8; 16];
        let n =
            std::os::unix::fs::FileExt::read_at(&self.quality, &mut buf, 0).map_err(|source| {
                QuarantineError::Io {
                    path: self.quality_path.clone(),
                    source,
                }
            })?;
        Ok(std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0))
    }

    /// Writes `rng`'s quality, only while `rng` is the current device.
    fn write_quality(&self, rng: &str, quality: u32) -> Result<(), QuarantineError> {
        let current = self.current().unwrap_or_else(|| "none".into());
        if current != rng {
            return Err(QuarantineError::NotCurrent {
                wanted: rng.into(),
                current,
            });
        }
        let text = format!("{quality}\n");
        std::os::unix::fs::FileExt::write_at(&self.quality, text.as_bytes(), 0).map_err(
            |source| QuarantineError::Io {
                path: self.quality_path.clone(),
                source,
            },
        )?;
        // sysfs takes each write whole; a plain file (a sysfs tree copied for
        // a test or a chroot) keeps what was longer, so cut it to size.
        let _ = self.quality.set_len(text.len() as u64);
        Ok(())
    }

    /// Holds `rng`'s quality at 0, failing closed: the device's credit is
    /// cut even when the marker cannot be written (then the quarantine
    /// holds only while this process runs, and the outcome says why). A
    /// device held already whose quality was raised from outside (a driver
    /// rebind, an operator) while it still fails is put back to 0. The
    /// marker is written before the quality, so that a crash between the
    /// two writes still knows what to give back.
    pub fn hold(&mut self, rng: &str) -> Result<Hold, QuarantineError> {
        let current = self.current().unwrap_or_default();
        if current != rng {
            return Err(QuarantineError::NotCurrent {
                wanted: rng.into(),
                current,
            });
        }
        let found = self.read_quality()?;
        if self.held.contains_key(rng) {
            if found == 0 {
                return Ok(Hold::Already);
            }
            self.write_quality(rng, 0)?;
            return Ok(Hold::Again { found });
        }
        self.held.insert(rng.into(), found);
        let marker = self.save_marker().err();
        if let Err(e) = self.write_quality(rng, 0) {
            self.held.remove(rng);
            let _ = self.save_marker();
            return Err(e);
        }
        Ok(Hold::Now { found, marker })
    }

    /// Whether the marker can be written where it would go: created and
    /// removed once, at start, so that a read-only or occupied state folder
    /// is said before a quarantine depends on it.
    pub fn marker_usable(&self) -> Result<(), QuarantineError> {
        let Some(m) = &self.marker else {
            return Ok(());
        };
        let err = |source| QuarantineError::Marker {
            path: m.clone(),
            source,
        };
        let dir = m.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(err)?;
        if std::fs::symlink_metadata(m).is_ok_and(|md| !md.is_file()) {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "something other than a regular file is in its place",
            )));
        }
        let probe = dir.join(format!(".hwrng-quarantine.probe.{}", std::process::id()));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&probe)
            .map_err(err)?;
        std::fs::remove_file(&probe).map_err(err)
    }

    /// Gives `rng` back the quality recorded for it; returns it, or None if
    /// `rng` was not held.
    pub fn release(&mut self, rng: &str) -> Result<Option<u32>, QuarantineError> {
        let Some(&quality) = self.held.get(rng) else {
            return Ok(None);
        };
        self.write_quality(rng, quality)?;
        self.held.remove(rng);
        self.save_marker()?;
        Ok(Some(quality))
    }
}
