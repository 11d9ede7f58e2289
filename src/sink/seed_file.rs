//! A seed file, replaced atomically (see [`crate::atomic_file`]): killed at
//! any instant, the path holds the whole old seed or the whole new one.

use std::path::{Path, PathBuf};

use super::SinkError;

#[derive(Debug)]
pub struct SeedFile {
    path: PathBuf,
    temp_prefix: String,
    creditable: bool,
}

/// The extended attribute by which systemd-random-seed (since systemd 250)
/// knows a seed file may be credited: without it the seed is mixed in
/// uncredited, unless `SYSTEMD_RANDOM_SEED_CREDIT=force`.
const CREDITABLE: &std::ffi::CStr = c"user.random-seed-creditable";

impl SeedFile {
    /// Checks that the folder exists and clears temporary files a killed
    /// earlier run left behind. `creditable`: mark each new seed for
    /// systemd-random-seed to credit.
    pub fn open(path: &Path, creditable: bool) -> Result<Self, SinkError> {
        let err = |source| SinkError::SeedFile {
            path: path.into(),
            source,
        };
        refuse_other_than_a_file(path).map_err(err)?;
        let name = path
            .file_name()
            .ok_or_else(|| err(std::io::Error::other("the path names no file")))?
            .to_string_lossy();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let temp_prefix = format!(".{name}.tmp.");
        for entry in std::fs::read_dir(&dir).map_err(err)? {
            let entry = entry.map_err(err)?;
            let ours = crate::atomic_file::is_temp_name(
                &entry.file_name().to_string_lossy(),
                &temp_prefix,
            ) && entry.file_type().is_ok_and(|t| t.is_file());
            if ours {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Self {
            path: path.into(),
            temp_prefix,
            creditable,
        })
    }

    /// The attribute goes on the temporary file, before the rename: the
    /// seed appears at its path already marked, or not at all.
    pub fn replace(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        let mark = |f: &std::fs::File| match self.creditable {
            true => mark_creditable(f),
            false => Ok(()),
        };
        refuse_other_than_a_file(&self.path)
            .and_then(|()| {
                crate::atomic_file::replace_with(&self.path, &self.temp_prefix, bytes, mark)
            })
            .map_err(|source| SinkError::SeedFile {
                path: self.path.clone(),
                source,
            })
    }
}

/// The rename would replace whatever is at the path: a device node such as
/// /dev/null, a FIFO, a folder's link. Only a regular file (or nothing) is a
/// seed to renew. Checked at start (exit 2) and before every replacement.
fn refuse_other_than_a_file(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_file() => Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "exists and is not a regular file (a device, FIFO, folder or link); a seed file only replaces a regular file",
        )),
        _ => Ok(()),
    }
}

fn mark_creditable(f: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor, a NUL-terminated name, and a one-byte
    // value that outlives the call.
    let rc = unsafe {
        libc::fsetxattr(
            f.as_raw_fd(),
            CREDITABLE.as_ptr(),
            c"1".as_ptr().cast(),
            1,
            0,
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::other(format!(
            "cannot mark it creditable (setting the extended attribute {}): {}; the file system must support user extended attributes",
            CREDITABLE.to_string_lossy(),
            std::io::Error::last_os_error()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creditable(path: &Path) -> Option<Vec<u8>> {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        let mut value = [0u8; 8];
        // SAFETY: NUL-terminated strings and a buffer of the size given.
        let n = unsafe {
            libc::getxattr(
                name.as_ptr(),
                CREDITABLE.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        (n >= 0).then(|| value[..n as usize].to_vec())
    }

    #[test]
    fn a_creditable_seed_carries_the_attribute_systemd_reads_and_a_plain_one_does_not() {
        // The test folder's file system must take user attributes (ext4,
        // tmpfs since 6.6, btrfs, xfs); the target folder usually does.
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let (marked, plain) = (dir.path().join("marked"), dir.path().join("plain"));
        SeedFile::open(&marked, true)
            .unwrap()
            .replace(b"seed")
            .unwrap();
        SeedFile::open(&plain, false)
            .unwrap()
            .replace(b"seed")
            .unwrap();
        assert_eq!(creditable(&marked).as_deref(), Some(&b"1"[..]));
        assert_eq!(creditable(&plain), None);
        assert_eq!(std::fs::read(&marked).unwrap(), b"seed");
    }

    #[test]
    fn a_path_that_is_not_a_regular_file_is_refused_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
        for path in [Path::new("/dev/null"), &fifo, dir.path(), &link] {
            let e = SeedFile::open(path, false).unwrap_err().to_string();
            assert!(e.contains("not a regular file"), "{path:?}: {e}");
        }
        // A regular file, or nothing yet, is a seed to renew.
        std::fs::write(dir.path().join("seed"), b"old").unwrap();
        let mut seed = SeedFile::open(&dir.path().join("seed"), false).unwrap();
        seed.replace(b"new").unwrap();
        SeedFile::open(&dir.path().join("absent"), false).unwrap();
        // Something put at the path later is not replaced either.
        std::fs::remove_file(dir.path().join("seed")).unwrap();
        std::fs::create_dir(dir.path().join("seed")).unwrap();
        assert!(seed.replace(b"newer").is_err());
        assert!(dir.path().join("seed").is_dir());
    }

    #[test]
    fn the_start_sweep_removes_only_temporary_files_of_our_own_shape() {
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join(".seed.tmp.4242.0000abcd.0");
        let theirs = dir.path().join(".seed.tmp.something-else");
        let fifo_shaped = dir.path().join(".seed.tmp.1.00000000.1");
        std::fs::write(&ours, b"x").unwrap();
        std::fs::write(&theirs, b"x").unwrap();
        std::fs::create_dir(&fifo_shaped).unwrap();
        SeedFile::open(&dir.path().join("seed"), false).unwrap();
        assert!(!ours.exists(), "a leftover of a killed run is cleared");
        assert!(theirs.exists(), "another program's file is left alone");
        assert!(fifo_shaped.exists(), "only regular files are removed");
    }
}
