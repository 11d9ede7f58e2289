//! The kernel sink: RNDADDENTROPY with a credit, then RNDRESEEDCRNG.
//!
//! Since Linux 5.18 a plain write to /dev/random mixes bytes in but they are
//! only used at the CRNG's next scheduled reseed (up to a minute later), and
//! credit matters only before the CRNG is first ready. Forcing the reseed is
//! what makes fresh hardware bytes reach every reader at once.
//!
//! Before the CRNG is first ready, RNDRESEEDCRNG answers ENODATA
//! (drivers/char/random.c): there is nothing to reseed yet. The bytes went
//! in and were credited, which is what counts at that moment (enough credit
//! is what makes the CRNG ready), so that delivery succeeds without a
//! reseed.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::{Batch, Delivered, SinkError, open_random_device};

/// `_IOW('R', 0x03, int[2])`
const RNDADDENTROPY: libc::Ioctl = 0x4008_5203;
/// `_IO('R', 0x07)`
const RNDRESEEDCRNG: libc::Ioctl = 0x5207;
const CAP_SYS_ADMIN: u32 = 21;

#[derive(Debug)]
pub struct KernelSink {
    device: File,
    path: PathBuf,
}

impl KernelSink {
    pub fn open(path: &Path) -> Result<Self, SinkError> {
        if !has_sys_admin() {
            return Err(SinkError::NoCapability);
        }
        Ok(Self {
            device: open_random_device(path)?,
            path: path.into(),
        })
    }

    /// Adds the batch's bytes crediting `credit_bits` (capped at 8 per
    /// byte), then forces the reseed. The request is built in the batch's
    /// own buffer.
    pub fn deliver(&mut self, batch: &mut Batch, credit_bits: f64) -> Result<Delivered, SinkError> {
        let len = batch.len();
        let credited_bits = credit_bits.clamp(0.0, len as f64 * 8.0).floor() as u64;
        let count = libc::c_int::try_from(credited_bits).unwrap_or(libc::c_int::MAX);
        let Some(request) = batch.pool_info(count) else {
            return Err(SinkError::Kernel {
                op: "RNDADDENTROPY",
                path: self.path.clone(),
                source: std::io::Error::from_raw_os_error(libc::E2BIG),
            });
        };
        let fd = self.device.as_raw_fd();
        // SAFETY: `request` is a complete `struct rand_pool_info` (two ints and
        // `buf_size` bytes) that outlives the call; the kernel only reads it.
        let rc = unsafe { libc::ioctl(fd, RNDADDENTROPY, request.as_ptr()) };
        self.check(rc, "RNDADDENTROPY")?;
        // SAFETY: RNDRESEEDCRNG takes no argument.
        let rc = unsafe { libc::ioctl(fd, RNDRESEEDCRNG) };
        let reseeded = match self.check(rc, "RNDRESEEDCRNG") {
            Ok(()) => true,
            Err(SinkError::Kernel { source, .. })
                if source.raw_os_error() == Some(libc::ENODATA) =>
            {
                false
            }
            Err(e) => return Err(e),
        };
        Ok(Delivered {
            bytes: len,
            credited_bits,
            reseeded,
            crng_not_ready: !reseeded,
        })
    }

    fn check(&self, rc: libc::c_int, op: &'static str) -> Result<(), SinkError> {
        if rc == 0 {
            return Ok(());
        }
        let source = std::io::Error::last_os_error();
        if source.raw_os_error() == Some(libc::EPERM) {
            return Err(SinkError::NoCapability);
        }
        Err(SinkError::Kernel {
            op,
            path: self.path.clone(),
            source,
        })
    }
}

/// Whether this process holds CAP_SYS_ADMIN in its effective set.
pub fn has_sys_admin() -> bool {
    crate::kernel::own_capabilities()
        .map(|c| c.effective & (1 << CAP_SYS_ADMIN) != 0)
        .unwrap_or(false)
}

/// Whether the kernel's CRNG is ready: `getrandom(GRND_NONBLOCK)` gives a
/// byte only then (EAGAIN before). None where the call itself fails (a
/// seccomp filter, a kernel before 3.17).
pub fn crng_ready() -> Option<bool> {
    let mut byte = 0u8;
    // SAFETY: one writable byte, as the length says.
    let rc = unsafe { libc::getrandom((&raw mut byte).cast(), 1, libc::GRND_NONBLOCK) };
    match rc {
        1 => Some(true),
        _ if std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) => Some(false),
        _ => None,
    }
}

/// Seconds since boot on CLOCK_BOOTTIME (which counts suspend too, as the
/// kernel log's clock does not).
pub fn seconds_since_boot() -> Option<f64> {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the kernel to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &raw mut t) };
    (rc == 0).then(|| t.tv_sec as f64 + t.tv_nsec as f64 / 1e9)
}
