//! `SHA256SUMS` of a checkpoint: the SHA-256 of every file, recorded when the checkpoint is
//! written and checked when a file is read, so a flipped byte on disk is refused instead of
//! sampled from. The format is coreutils' (`<hex>  <name>` per line): `sha256sum -c SHA256SUMS`
//! checks a checkpoint by hand.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::TrainError;
use crate::run_dir::CHECKSUMS_FILE;

/// File name → SHA-256 (lower-case hex), in the order added.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Checksums(Vec<(String, String)>);

impl Checksums {
    pub fn add(&mut self, name: &str, bytes: &[u8]) {
        self.0.push((name.to_string(), sha256_hex(bytes)));
    }

    pub fn to_text(&self) -> String {
        self.0
            .iter()
            .map(|(name, hex)| format!("{hex}  {name}\n"))
            .collect()
    }

    /// The `SHA256SUMS` of checkpoint directory `dir`; `None` for a checkpoint written before
    /// checksums existed.
    pub fn read(dir: &Path) -> Result<Option<Self>, TrainError> {
        let path = dir.join(CHECKSUMS_FILE);
        let text = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(TrainError::io(&path, e)),
        };
        let bad = |message: String| TrainError::Checkpoint {
            path: path.clone(),
            message,
        };
        let text = String::from_utf8(text).map_err(|_| bad("not text".into()))?;
        let mut sums = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let parsed = line.split_once("  ").filter(|(hex, name)| {
                hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && !name.is_empty()
            });
            let Some((hex, name)) = parsed else {
                return Err(bad(format!(
                    "line {} is not `<sha256>  <file>`: {line:?}",
                    i + 1
                )));
            };
            sums.push((name.to_string(), hex.to_ascii_lowercase()));
        }
        Ok(Some(Self(sums)))
    }

    /// Checks the bytes read from `path` against its recorded sum. A file the list does not
    /// name is refused: every file a checkpoint is read from is listed when it is written.
    pub fn verify(&self, path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bad = |message: String| TrainError::Checkpoint {
            path: path.to_path_buf(),
            message,
        };
        let Some((_, expected)) = self.0.iter().find(|(n, _)| *n == name) else {
            return Err(bad(format!("not listed in {CHECKSUMS_FILE}")));
        };
        let actual = sha256_hex(bytes);
        if actual != *expected {
            return Err(bad(format!(
                "SHA-256 {actual} differs from {expected} recorded in {CHECKSUMS_FILE} when the \
                 checkpoint was written: the file was corrupted or changed since (settings \
                 change with --set, not by editing a checkpoint)"
            )));
        }
        Ok(())
    }
}

/// Reads a file of checkpoint `dir` and checks it against the checkpoint's `SHA256SUMS` (when it
/// has one).
pub(crate) fn read_verified(path: &Path) -> Result<Vec<u8>, TrainError> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    if let Some(sums) = Checksums::read(dir)? {
        sums.verify(path, &bytes)?;
    }
    Ok(bytes)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sum_of_known_bytes() {
        // `printf abc | sha256sum`
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_changed_byte_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut sums = Checksums::default();
        sums.add("model.bpk", b"weights");
        std::fs::write(dir.path().join(CHECKSUMS_FILE), sums.to_text()).unwrap();
        let path = dir.path().join("model.bpk");
        std::fs::write(&path, b"weights").unwrap();
        assert_eq!(read_verified(&path).unwrap(), b"weights");
        std::fs::write(&path, b"weightz").unwrap();
        let err = read_verified(&path).unwrap_err().to_string();
        assert!(
            err.contains("model.bpk") && err.contains("SHA-256"),
            "{err}"
        );
        let other = dir.path().join("ema.bpk");
        std::fs::write(&other, b"x").unwrap();
        assert!(
            read_verified(&other)
                .unwrap_err()
                .to_string()
                .contains("not listed")
        );
    }
}
