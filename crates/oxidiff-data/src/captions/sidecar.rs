//! kohya's sd-scripts' sidecar captions: `image.png` captioned by `image.txt` next to it (the
//! image's path without its extension, plus `caption_extension`).
//!
//! Each non-blank line of the file is one caption of the image, drawn per step: what kohya does
//! with `enable_wildcard`; without it kohya reads the first line only, so a one-line file means
//! the same in both.

use std::ffi::OsString;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The caption file of `image`: `a/b.png` → `a/b.txt` for `extension = ".txt"` (kohya's
/// `os.path.splitext(path)[0] + caption_extension`).
pub fn sidecar_path(image: &Path, extension: &str) -> PathBuf {
    let mut path: OsString = image.with_extension("").into_os_string();
    path.push(extension);
    PathBuf::from(path)
}

/// The captions in the sidecar file `path`: its non-blank lines, trimmed; none when there is
/// no such file (the image is then uncaptioned, not unusable).
///
/// # Errors
/// The reason the file cannot be used, naming it, for a "skipped IMAGE: REASON" line: it
/// cannot be read, or it is not UTF-8 text (with the line).
pub fn read_sidecar(path: &Path) -> Result<Vec<String>, String> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("caption file {}: cannot read: {e}", path.display())),
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        format!(
            "caption file {}: line {line}: not UTF-8 text",
            path.display()
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_names() {
        assert_eq!(
            sidecar_path(Path::new("d/a.b.png"), ".txt"),
            Path::new("d/a.b.txt")
        );
        assert_eq!(
            sidecar_path(Path::new("a.JPG"), ".caption"),
            Path::new("a.caption")
        );
    }
}
