//! A folder of images (PNG, JPEG, BMP, WebP, TIFF, GIF), searched recursively.
//!
//! - Files are taken in sorted path order, so the same folder always gives the same dataset.
//! - Labels: when the folder has sub-folders, each first-level sub-folder is a class (sorted names
//!   → indices 0, 1, …) and files directly in the folder are skipped (they belong to no class);
//!   with no sub-folders every image has label 0.
//! - Entries whose name starts with `.` are ignored (`.git`, `.ipynb_checkpoints`, … would
//!   otherwise become classes). Files with other extensions are ignored silently (README, CSV).
//! - A file that cannot be decoded (see [`crate::decode`]: corrupt, truncated, zero-sized, over
//!   `data.max_pixels`) is skipped and reported with its reason; it never stops the load unless
//!   `data.on_error = "fail"`. A folder that cannot be read does stop it, naming the folder.
//! - Images are centre-cropped to a square, resized to `size`×`size` and converted to the wanted
//!   channel count (see the crate docs); JPEG EXIF orientation is applied first.

use std::collections::HashSet;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use image::imageops::FilterType;

use crate::DataError;
use crate::decode::{DecodeOptions, decode_image};
use crate::transform::dynamic_to_chw;

/// File extensions (lower case) read as images.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "webp", "tif", "tiff", "gif"];

/// The decoded contents of an image folder.
#[derive(Debug, Clone, PartialEq)]
pub struct FolderImages {
    /// `[N, channels, size, size]`, flattened, values in [-1, 1].
    pub images: Vec<f32>,
    /// `[N]`, indices into `class_names`.
    pub labels: Vec<usize>,
    /// Sorted sub-folder names; a single entry (the folder's own name) when there are none.
    pub class_names: Vec<String>,
    /// Files that were skipped, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// `[N]`: each image's path relative to the root folder, `/`-separated (its identity in a
    /// validation split).
    pub keys: Vec<String>,
}

/// An image file found in the folder, before decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEntry {
    pub path: PathBuf,
    pub label: usize,
}

/// The result of scanning a folder: what to decode, the class names, what was skipped already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderScan {
    pub entries: Vec<ImageEntry>,
    pub class_names: Vec<String>,
    pub skipped: Vec<(PathBuf, String)>,
}

/// Finds the image files under `root` and their labels without decoding them.
pub fn scan_folder(root: &Path) -> Result<FolderScan, DataError> {
    let meta = fs::metadata(root).map_err(|e| DataError::io(root, e))?;
    if !meta.is_dir() {
        return Err(DataError::io(
            root,
            std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        ));
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
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| root.display().to_string());
        class_names = vec![name];
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

/// Scans `root` and decodes every image to `[channels, size, size]` in [-1, 1].
///
/// Decoding runs on all cores; the result does not depend on the thread count.
///
/// # Shapes
/// - returns `images`: `[N, channels, size, size]` flattened, `labels`: `[N]`
pub fn load_folder(
    root: &Path,
    size: usize,
    channels: usize,
    options: &DecodeOptions,
    filter: FilterType,
) -> Result<FolderImages, DataError> {
    let FolderScan {
        entries,
        class_names,
        mut skipped,
    } = scan_folder(root)?;

    let decoded = decode_all(&entries, size, channels, options, filter);
    let mut images = Vec::with_capacity(entries.len() * channels * size * size);
    let mut labels = Vec::with_capacity(entries.len());
    let mut keys = Vec::with_capacity(entries.len());
    for (entry, result) in entries.into_iter().zip(decoded) {
        match result {
            Ok(pixels) => {
                images.extend_from_slice(&pixels);
                labels.push(entry.label);
                keys.push(relative_key(root, &entry.path));
            }
            Err(reason) => skipped.push((entry.path, reason)),
        }
    }
    skipped.sort();
    Ok(FolderImages {
        images,
        labels,
        class_names,
        skipped,
        keys,
    })
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

/// Decodes one image file and converts it to the model layout.
///
/// The error is the reason the file is unusable, worded for a "skipped FILE: REASON" line.
///
/// # Shapes
/// - returns: `[channels, size, size]` flattened, values in [-1, 1]
pub fn load_image(
    path: &Path,
    size: usize,
    channels: usize,
    options: &DecodeOptions,
    filter: FilterType,
) -> Result<Vec<f32>, String> {
    let img = decode_image(path, options).map_err(|reason| reason.0)?;
    // `image` decoders are meant never to panic, but this runs on arbitrary files from disk, and
    // one hostile file must cost one skipped image, not the training run.
    catch_unwind(AssertUnwindSafe(|| {
        dynamic_to_chw(&img, size, channels, filter)
    }))
    .map_err(|_| "image conversion panicked".to_string())
}

/// Decodes `entries` in parallel, keeping their order.
fn decode_all(
    entries: &[ImageEntry],
    size: usize,
    channels: usize,
    options: &DecodeOptions,
    filter: FilterType,
) -> Vec<Result<Vec<f32>, String>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(entries.len().max(1));
    if threads <= 1 {
        return entries
            .iter()
            .map(|e| load_image(&e.path, size, channels, options, filter))
            .collect();
    }
    let chunk = entries.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = entries
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|e| load_image(&e.path, size, channels, options, filter))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(entries.chunks(chunk))
            .flat_map(|(h, part)| match h.join() {
                Ok(results) => results,
                // Unreachable in practice (load_image catches panics), but a lost worker must
                // still cost only its files.
                Err(_) => vec![Err("decoding thread panicked".to_string()); part.len()],
            })
            .collect()
    })
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
