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
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(&temp_prefix)
            {
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
        crate::atomic_file::replace_with(&self.path, &self.temp_prefix, bytes, mark).map_err(
            |source| SinkError::SeedFile {
                path: self.path.clone(),
                source,
            },
        )
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
}
