//! Replacing a small file so that a crash at any instant leaves the old
//! contents or the new, never a mix, and a symlink planted at the path is
//! replaced rather than followed.
//!
//! The bytes go to a temporary file beside the target, created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW` (so nothing that exists already, link or
//! not, is opened), fsynced, renamed over the target (rename replaces a
//! link, it does not write through it), and the folder is fsynced.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `bytes` to `path` atomically, with mode 0600. `temp_prefix`
/// names the temporary file, so that a later start can clear leftovers.
pub fn replace(path: &Path, temp_prefix: &str, bytes: &[u8]) -> std::io::Result<()> {
    replace_with(path, temp_prefix, bytes, |_| Ok(()))
}

/// [`replace`], calling `before_rename` on the written temporary file
/// (to set an attribute the new file must have from its first instant).
pub fn replace_with(
    path: &Path,
    temp_prefix: &str,
    bytes: &[u8],
    before_rename: impl FnOnce(&File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let (temp, mut f) = create_temp(dir, temp_prefix)?;
    let result = (|| {
        f.write_all(bytes)?;
        before_rename(&f)?;
        f.sync_all()?;
        std::fs::rename(&temp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// A new temporary file `PREFIX<pid>.<n>` in `dir`. The name needs to be
/// unique, not secret: `O_EXCL` already refuses anything that exists, so a
/// clash only moves on to the next number. (Not random: before the kernel's
/// CRNG is ready, getrandom() blocks, and this runs at boot.)
fn create_temp(dir: &Path, temp_prefix: &str) -> std::io::Result<(std::path::PathBuf, File)> {
    let pid = std::process::id();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut attempt = 0u32;
    loop {
        let temp = dir.join(format!("{temp_prefix}{pid}.{nanos:08x}.{attempt}"));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temp)
        {
            Ok(f) => return Ok((temp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether `name` has the shape of a temporary file [`replace`] makes with
/// `temp_prefix`: the prefix, a pid, eight hex digits and an attempt number.
/// A start-up sweep removes only those, never another program's files that
/// happen to share the prefix.
pub fn is_temp_name(name: &str, temp_prefix: &str) -> bool {
    let Some(rest) = name.strip_prefix(temp_prefix) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('.').collect();
    let digits = |s: &str, hex: bool| {
        !s.is_empty()
            && s.chars().all(|c| {
                if hex {
                    c.is_ascii_hexdigit()
                } else {
                    c.is_ascii_digit()
                }
            })
    };
    matches!(parts.as_slice(), [pid, nanos, attempt]
        if digits(pid, false) && nanos.len() == 8 && digits(nanos, true) && digits(attempt, false))
}

/// Reads a small file without following a symlink at its path.
pub fn read_no_follow(path: &Path) -> std::io::Result<String> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut s = String::new();
    std::io::Read::read_to_string(&mut f, &mut s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_at_the_path_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let path = dir.path().join("marker");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        assert!(read_no_follow(&path).is_err(), "a link is not read through");
        replace(&path, ".marker.tmp.", b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(read_no_follow(&path).unwrap(), "new");
        assert!(
            !std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
}
