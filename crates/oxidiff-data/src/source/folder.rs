//! A folder of image files searched recursively (`source = "folder"`); the files are read as
//! [`super::image_files`] says.
//!
//! - Files are taken in sorted path order, so the same folder always gives the same dataset.
//! - Labels (`data.folder_labels`):
//!   - `"subfolders"` (default): when the folder has sub-folders, each first-level sub-folder is
//!     a class (sorted names → indices 0, 1, …) and files directly in the folder are skipped
//!     (they belong to no class); with no sub-folders every image has label 0.
//!   - `"none"`: every image under the folder, at any depth and directly in it, has label 0; the
//!     one class is named after the folder. For unlabelled collections that happen to be
//!     organised in sub-folders (by date, by source), which must not turn into classes.
//! - Entries whose name starts with `.` are ignored (`.git`, `.ipynb_checkpoints`, … would
//!   otherwise become classes). Files with other extensions are ignored silently (README, CSV).
//! - Keys (an image's identity in a validation split) are paths relative to the folder,
//!   `/`-separated.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use image::imageops::FilterType;

use super::image_files::{FolderImages, ImageEntry, decode_all, files_dataset, gather};
use crate::captions::{FileOrigin, file_captions};
use crate::config::{DataConfig, FolderLabels};
use crate::decode::DecodeOptions;
use crate::{DataError, Dataset};

/// File extensions (lower case) read as images.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "webp", "tif", "tiff", "gif"];

/// The result of scanning a folder: what to decode, the class names, what was skipped already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderScan {
    pub entries: Vec<ImageEntry>,
    pub class_names: Vec<String>,
    pub skipped: Vec<(PathBuf, String)>,
}

/// Finds the image files under `root` and their labels without decoding them, labelled by
/// first-level sub-folder (the default, `data.folder_labels = "subfolders"`).
pub fn scan_folder(root: &Path) -> Result<FolderScan, DataError> {
    scan_folder_with(root, FolderLabels::Subfolders)
}

/// [`scan_folder`] with the label rule `labels` (`data.folder_labels`): with
/// [`FolderLabels::None`] every image at any depth, files directly in `root` included, is
/// class 0, named after `root`.
pub fn scan_folder_with(root: &Path, labels: FolderLabels) -> Result<FolderScan, DataError> {
    let meta = fs::metadata(root).map_err(|e| DataError::io(root, e))?;
    if !meta.is_dir() {
        return Err(DataError::io(
            root,
            std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    if labels == FolderLabels::None {
        let mut files = Vec::new();
        let mut skipped = Vec::new();
        collect_images(root, &mut files, &mut HashSet::new(), &mut skipped)?;
        files.sort();
        skipped.sort();
        return Ok(FolderScan {
            entries: files
                .into_iter()
                .map(|path| ImageEntry { path, label: 0 })
                .collect(),
            class_names: vec![folder_name(root)],
            skipped,
        });
    }

    let mut class_dirs = Vec::new();
    let mut top_files = Vec::new();
    let mut skipped = Vec::new();
    for (path, kind) in list_dir(root, &mut skipped)? {
        match kind {
            EntryKind::Dir => class_dirs.push(path),
            EntryKind::Image => top_files.push(path),
        }
    }

    let mut entries = Vec::new();
    let class_names: Vec<String>;
    if class_dirs.is_empty() {
        let mut files = top_files;
        // Flat folder: one class. Nested folders are impossible here (there are no sub-folders).
        files.sort();
        entries.extend(files.into_iter().map(|path| ImageEntry { path, label: 0 }));
        class_names = vec![folder_name(root)];
    } else {
        class_names = class_dirs
            .iter()
            .map(|d| {
                d.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect();
        for path in top_files {
            skipped.push((
                path,
                "not inside a class sub-folder (this folder has class sub-folders, so loose \
                 files have no label)"
                    .to_string(),
            ));
        }
        let mut visited = HashSet::new();
        if let Ok(canon) = fs::canonicalize(root) {
            visited.insert(canon);
        }
        for (label, dir) in class_dirs.iter().enumerate() {
            let mut files = Vec::new();
            collect_images(dir, &mut files, &mut visited, &mut skipped)?;
            files.sort();
            entries.extend(files.into_iter().map(|path| ImageEntry { path, label }));
        }
    }
    skipped.sort();
    Ok(FolderScan {
        entries,
        class_names,
        skipped,
    })
}

/// The folder's own name, the class name of a folder without classes.
fn folder_name(root: &Path) -> String {
    root.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| root.display().to_string())
}

/// Scans `root` with the label rule `labels` (`data.folder_labels`) and decodes every image to
/// `[channels, size, size]` in [-1, 1].
///
/// Decoding runs on all cores; the result does not depend on the thread count. With
/// `keep_pixels = false` every file is still decoded (to find the unusable ones) but `images`
/// stays empty: the caller streams the files listed in `paths`.
///
/// # Shapes
/// - returns `images`: `[N, channels, size, size]` flattened (or empty), `labels`, `keys`,
///   `paths`: `[N]`
pub fn load_folder(
    root: &Path,
    labels: FolderLabels,
    size: usize,
    channels: usize,
    options: &DecodeOptions,
    filter: FilterType,
    keep_pixels: bool,
) -> Result<FolderImages, DataError> {
    let FolderScan {
        entries,
        class_names,
        skipped,
    } = scan_folder_with(root, labels)?;

    let decoded = decode_all(&entries, size, channels, options, filter, keep_pixels);
    let results = entries.into_iter().zip(decoded).map(|(entry, result)| {
        let key = relative_key(root, &entry.path);
        (entry, key, result)
    });
    let mut loaded = gather(results, class_names, skipped);
    loaded.skipped.sort();
    Ok(loaded)
}

/// The folder `root` as a dataset (`data.folder_labels`, `data.cache`, `data.on_error`), with
/// the captions `data.captions` finds in it.
///
/// # Errors
/// As [`load_folder`] and [`files_dataset`]; a missing or broken `metadata.jsonl`.
pub(crate) fn folder_dataset(
    config: &DataConfig,
    root: &Path,
    size: usize,
    channels: usize,
    filter: FilterType,
) -> Result<Dataset, DataError> {
    let loaded = load_folder(
        root,
        config.folder_labels,
        size,
        channels,
        &config.decode_options(),
        filter,
        config.cache,
    )?;
    let (loaded, captions) = file_captions(config, loaded, FileOrigin::Folder(root))?;
    Ok(files_dataset(config, loaded, size, channels)?.with_captions(captions))
}

/// `path` relative to `root`, components joined by `/` whatever the platform.
fn relative_key(root: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(root).unwrap_or(path);
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

enum EntryKind {
    Dir,
    Image,
}

/// Lists the non-hidden sub-folders and image files of `dir`, sorted by name. Entries that
/// cannot be inspected (e.g. dangling links) are recorded in `skipped`.
fn list_dir(
    dir: &Path,
    skipped: &mut Vec<(PathBuf, String)>,
) -> Result<Vec<(PathBuf, EntryKind)>, DataError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // fs::metadata follows links, so a linked folder or image counts like a real one.
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                skipped.push((path, format!("cannot inspect (dangling link?): {e}")));
                continue;
            }
        };
        if meta.is_dir() {
            out.push((path, EntryKind::Dir));
        } else if meta.is_file() && has_image_extension(&path) {
            out.push((path, EntryKind::Image));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Collects image files under `dir`, recursively. `visited` holds canonical folder paths so
/// that a link cycle is walked once instead of forever.
fn collect_images(
    dir: &Path,
    files: &mut Vec<PathBuf>,
    visited: &mut HashSet<PathBuf>,
    skipped: &mut Vec<(PathBuf, String)>,
) -> Result<(), DataError> {
    let canon = fs::canonicalize(dir).map_err(|e| DataError::io(dir, e))?;
    if !visited.insert(canon) {
        return Ok(());
    }
    for (path, kind) in list_dir(dir, skipped)? {
        match kind {
            EntryKind::Dir => collect_images(&path, files, visited, skipped)?,
            EntryKind::Image => files.push(path),
        }
    }
    Ok(())
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}
