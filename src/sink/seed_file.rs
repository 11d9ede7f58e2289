//! A seed file, replaced atomically (see [`crate::atomic_file`]): killed at
//! any instant, the path holds the whole old seed or the whole new one.

use std::path::{Path, PathBuf};

use super::SinkError;

#[derive(Debug)]
pub struct SeedFile {
    path: PathBuf,
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
            temp_prefix,
        })
    }

    pub fn replace(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        crate::atomic_file::replace(&self.path, &self.temp_prefix, bytes).map_err(|source| {
            SinkError::SeedFile {
                path: self.path.clone(),
                source,
            }
        })
    }
}
