//! A seed file, replaced atomically: write a temporary file in the same
//! folder, fsync it, rename it over the old one, fsync the folder. Killed at
//! any instant, the path holds the whole old seed or the whole new one.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::SinkError;

#[derive(Debug)]
pub struct SeedFile {
    path: PathBuf,
    dir: PathBuf,
    temp_prefix: String,
}

impl SeedFile {
    /// Checks that the folder exists and clears temporary files a killed
    /// earlier run left behind.
    pub fn open(path: &Path) -> Result<Self, SinkError> {
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
            dir,
            temp_prefix,
        })
    }

    pub fn replace(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        let err = |source| SinkError::SeedFile {
            path: self.path.clone(),
            source,
        };
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix).map_err(|e| err(std::io::Error::other(e)))?;
        let temp = self.dir.join(format!(
            "{}{:016x}",
            self.temp_prefix,
            u64::from_ne_bytes(suffix)
        ));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::rename(&temp, &self.path)?;
            File::open(&self.dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result.map_err(err)
    }
}
