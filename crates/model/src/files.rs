//! Writing files so that no reader ever sees half of one: the one implementation of the
//! workspace's atomic write (results, checkpoints, the served model's response cache).

use std::path::Path;

/// Refuses an output path that exists and is not a regular file (a device, a named pipe, a
/// socket, a directory): a rename over it would replace it — run as root, `-o /dev/full`
/// replaced the device with a regular file (issue 34). A symbolic link is followed: what it
/// names must be a regular file.
pub fn check_replaceable(path: &Path) -> std::io::Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => Err(std::io::Error::other(
            "exists and is not a regular file: refused as an output",
        )),
        _ => Ok(()),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename;
/// only ever replaces a regular file (`check_replaceable`).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    check_replaceable(path)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{:?}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id(),
        std::thread::current().id()
    ));
    let res = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}
