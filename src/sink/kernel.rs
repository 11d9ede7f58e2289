//! The kernel sink: RNDADDENTROPY with a credit, then RNDRESEEDCRNG.
//!
//! Since Linux 5.18 a plain write to /dev/random mixes bytes in but they are
//! only used at the CRNG's next scheduled reseed (up to a minute later), and
//! credit matters only before the CRNG is first ready. Forcing the reseed is
//! what makes fresh hardware bytes reach every reader at once.

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
        self.check(rc, "RNDRESEEDCRNG")?;
        Ok(Delivered {
            bytes: len,
            credited_bits,
            reseeded: true,
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
