//! Private files: mode 0600, written atomically (temporary file, fsync, rename).

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Creates `dir` (and parents) and makes it mode 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Writes `contents` to `path` atomically with mode 0600.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    // A file left at the temporary name (a crash, or someone else's in a shared directory)
    // goes first, and the new one is created afresh: opening what is there would keep its
    // owner and mode, or follow it if it is a link, and the secret would land there.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    fs::File::open(parent_dir(path))?.sync_all()
}

/// The directory holding `path` (`.` for a bare file name, whose parent is empty).
fn parent_dir(path: &Path) -> &Path {
    path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).map(|m| m.permissions().mode() & 0o777).unwrap_or_default()
    }

    #[test]
    fn a_file_left_at_the_temporary_name_is_replaced_not_reused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("token");
        let tmp = dir.path().join(".token.tmp");
        fs::write(&tmp, "old").unwrap_or_else(|e| panic!("{e}"));
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap_or_else(|e| panic!("{e}"));
        write_private(&path, b"secret").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((fs::read_to_string(&path).ok().as_deref(), mode(&path)), (Some("secret"), 0o600));

        // A link there is not followed: its target keeps what it held.
        let elsewhere = dir.path().join("elsewhere");
        fs::write(&elsewhere, "theirs").unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(&elsewhere, &tmp).unwrap_or_else(|e| panic!("{e}"));
        write_private(&path, b"again").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fs::read_to_string(&elsewhere).ok().as_deref(), Some("theirs"));
        assert_eq!((fs::read_to_string(&path).ok().as_deref(), mode(&path)), (Some("again"), 0o600));
    }

    #[test]
    fn a_bare_file_name_is_in_the_current_directory() {
        assert_eq!(parent_dir(Path::new("token")), Path::new("."));
        assert_eq!(parent_dir(Path::new("/run/token")), Path::new("/run"));
        assert_eq!(parent_dir(Path::new("a/token")), Path::new("a"));
    }
}
