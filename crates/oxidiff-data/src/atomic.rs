//! Files replaced atomically — a temporary file in the same folder, fsync, rename, fsync of the
//! folder — so a reader (a resumed run, a browser reloading a report) sees the old file or the
//! new one, never part of one; and the clean-up of temporaries a killed process left behind.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Every temporary file ends so: `.{name}.{pid}.{n}.tmp`.
const TEMP_SUFFIX: &str = ".tmp";

/// Replaces `path` with `bytes` atomically. The temporary name is unique per process and call,
/// so two writers of one path never share a temporary file; on failure it is removed, and the
/// error names `path`'s folder or `path` itself, never the temporary.
pub fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    if !dir.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("the folder {} does not exist", dir.display()),
        ));
    }
    let tmp = dir.join(format!(
        ".{}.{}.{}{TEMP_SUFFIX}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // Make the rename itself durable. Not possible on every platform (Windows cannot open a
    // folder as a file), and the data is already safe, so failure here is ignored.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Removes the temporaries of [`replace_file`] in `dir` whose writer is no longer running
/// (killed mid-write); returns what it removed. A missing folder has none.
pub fn remove_stale_temporaries(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = temporary_writer(&name)
            && !process_alive(pid)
            && entry.file_type()?.is_file()
        {
            fs::remove_file(entry.path())?;
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

/// The writer's pid of a temporary name `.{name}.{pid}.{n}.tmp`.
fn temporary_writer(name: &str) -> Option<u32> {
    let inner = name.strip_prefix('.')?.strip_suffix(TEMP_SUFFIX)?;
    let mut parts = inner.rsplitn(3, '.');
    let _counter: u64 = parts.next()?.parse().ok()?;
    let pid = parts.next()?.parse().ok()?;
    parts.next().filter(|stem| !stem.is_empty())?;
    Some(pid)
}

/// Whether a process with this pid runs (Linux: `/proc/PID`). Where that cannot be told, every
/// writer counts as running, so nothing is removed that may still be written.
fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc_root = Path::new("/proc/self");
    if !proc_root.exists() {
        return true;
    }
    Path::new("/proc").join(pid.to_string()).exists()
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_name_their_writer() {
        assert_eq!(temporary_writer(".step-0000400.png.4242.0.tmp"), Some(4242));
        assert_eq!(temporary_writer(".metrics.jsonl.7.12.tmp"), Some(7));
        assert_eq!(temporary_writer("step-0000400.png"), None);
        assert_eq!(temporary_writer("..1.2.tmp"), None);
        assert_eq!(temporary_writer(".a.b.tmp"), None);
    }

    #[test]
    fn stale_temporaries_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        replace_file(&dir.path().join("a.png"), b"png").unwrap();
        // No process has pid u32::MAX - 1 (Linux caps pids far below it).
        let stale = dir.path().join(format!(".a.png.{}.0.tmp", u32::MAX - 1));
        let live = dir
            .path()
            .join(format!(".a.png.{}.9.tmp", std::process::id()));
        fs::write(&stale, b"half").unwrap();
        fs::write(&live, b"half").unwrap();
        assert_eq!(
            remove_stale_temporaries(dir.path()).unwrap(),
            vec![stale.clone()]
        );
        assert!(!stale.exists() && live.exists());
        assert_eq!(fs::read(dir.path().join("a.png")).unwrap(), b"png");
    }

    #[test]
    fn a_missing_folder_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = replace_file(&dir.path().join("none/a.png"), b"x").unwrap_err();
        assert!(err.to_string().contains("none"), "{err}");
        // Not the hidden temporary (`.a.png.<pid>.<n>.tmp`).
        assert!(!err.to_string().contains(".a.png."), "{err}");
    }
}
