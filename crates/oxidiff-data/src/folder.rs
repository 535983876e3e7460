//! Image files on disk (PNG, JPEG, BMP, WebP, TIFF, GIF): a folder searched recursively
//! (`source = "folder"`) or the files listed in a CSV manifest (`source = "manifest"`). Both
//! decode the same way, so switching from one to the other never changes an image's pixels.
//!
//! Folders:
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
//!
//! Manifests (see [`read_manifest`]):
//! - Rows `path,label`, with an optional header row `path,label`; blank lines are ignored and
//!   fields may be double-quoted. Image paths are relative to the manifest's folder unless
//!   absolute. Labels are class names: sorted names → indices 0, 1, …
//! - Images are taken in the manifest's row order; keys are the paths as written.
//! - A malformed row or a path listed twice stops the load with an error naming the manifest
//!   and the line: the manifest is something a person wrote, and guessing what a broken row
//!   meant would train on the wrong labels. A listed file that is missing is skipped like a
//!   corrupt one.
//!
//! Both:
//! - A file that cannot be decoded (see [`crate::decode`]: corrupt, truncated, zero-sized, over
//!   `data.max_pixels`) is skipped and reported with its reason; it never stops the load unless
//!   `data.on_error = "fail"`. A folder that cannot be read does stop it, naming the folder.
//! - Images are centre-cropped to a square, resized to `size`×`size` and converted to the wanted
//!   channel count (see the crate docs); JPEG EXIF orientation is applied first.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Component, Path, PathBuf};

use image::imageops::FilterType;

use crate::DataError;
use crate::config::FolderLabels;
use crate::decode::{DecodeOptions, decode_image};
use crate::parallel::parallel_map;
use crate::transform::dynamic_to_chw;

/// File extensions (lower case) read as images.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "webp", "tif", "tiff", "gif"];

/// The decoded contents of an image folder or of the files a manifest lists.
#[derive(Debug, Clone, PartialEq)]
pub struct FolderImages {
    /// `[N, channels, size, size]`, flattened, values in [-1, 1].
    pub images: Vec<f32>,
    /// `[N]`, indices into `class_names`.
    pub labels: Vec<usize>,
    /// Sorted class names: sub-folder names or manifest labels; a single entry (the folder's own
    /// name) for a folder without classes.
    pub class_names: Vec<String>,
    /// Files that were skipped, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// `[N]`: each image's path relative to the root folder, or as written in the manifest,
    /// `/`-separated (its identity in a validation split).
    pub keys: Vec<String>,
    /// `[N]`: each image's file.
    pub paths: Vec<PathBuf>,
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
    let capacity = if keep_pixels {
        entries.len() * channels * size * size
    } else {
        0
    };
    let results = entries.into_iter().zip(decoded).map(|(entry, result)| {
        let key = relative_key(root, &entry.path);
        (entry, key, result)
    });
    let mut loaded = gather(results, class_names, skipped, capacity);
    loaded.skipped.sort();
    Ok(loaded)
}

/// Keeps the decoded images of `results` in order, with their labels and keys; the files that
/// failed are appended to `skipped` with their reason.
fn gather(
    results: impl IntoIterator<Item = (ImageEntry, String, Result<Vec<f32>, String>)>,
    class_names: Vec<String>,
    mut skipped: Vec<(PathBuf, String)>,
    capacity: usize,
) -> FolderImages {
    let mut images = Vec::with_capacity(capacity);
    let mut labels = Vec::new();
    let mut keys = Vec::new();
    let mut paths = Vec::new();
    for (entry, key, result) in results {
        match result {
            Ok(pixels) => {
                images.extend_from_slice(&pixels);
                labels.push(entry.label);
                keys.push(key);
                paths.push(entry.path);
            }
            Err(reason) => skipped.push((entry.path, reason)),
        }
    }
    FolderImages {
        images,
        labels,
        class_names,
        skipped,
        keys,
        paths,
    }
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

/// Reads one image that must already be `size`×`size` (an image to inpaint or denoise, whose
/// pixels must line up with a mask or be compared to the result: resizing it silently would
/// change what the user asked for), as `channels` planes in [-1, 1].
///
/// # Shapes
/// - returns: `[channels, size, size]` flattened
///
/// # Errors
/// [`DataError::Format`] naming the file when it cannot be decoded, or when its size is not
/// `size`×`size` (both sizes in the message).
pub fn read_image_exact(
    path: &Path,
    size: usize,
    channels: usize,
    options: &DecodeOptions,
) -> Result<Vec<f32>, DataError> {
    let unusable = |message: String| DataError::Format {
        path: path.to_path_buf(),
        message,
    };
    let img = decode_image(path, options).map_err(|reason| unusable(reason.0))?;
    if (img.width() as usize, img.height() as usize) != (size, size) {
        return Err(unusable(format!(
            "is {}×{} but the model works on {size}×{size} images; resize or crop it first",
            img.width(),
            img.height()
        )));
    }
    Ok(dynamic_to_chw(&img, size, channels, FilterType::Triangle))
}

/// Decodes `entries` in parallel, keeping their order. With `keep_pixels = false` only the
/// outcome is kept (an empty vector for a usable file), so checking a collection larger than
/// memory holds one image per thread at a time.
fn decode_all(
    entries: &[ImageEntry],
    size: usize,
    channels: usize,
    options: &DecodeOptions,
    filter: FilterType,
    keep_pixels: bool,
) -> Vec<Result<Vec<f32>, String>> {
    parallel_map(
        entries,
        |e| {
            load_image(&e.path, size, channels, options, filter)
                .map(|pixels| if keep_pixels { pixels } else { Vec::new() })
        },
        || Err("decoding thread panicked".to_string()),
    )
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

/// One data row of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRow {
    /// 1-based line of the manifest, for messages that send a person back to the row.
    pub line: usize,
    /// The path as written, `/`-separated: the image's key.
    pub key: String,
    /// The path resolved against the manifest's folder (unchanged when absolute).
    pub path: PathBuf,
    /// Index into [`ManifestScan::class_names`].
    pub label: usize,
}

/// A parsed manifest, before any image is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestScan {
    /// The data rows in manifest order (header and blank lines left out).
    pub rows: Vec<ManifestRow>,
    /// The distinct labels, sorted: label `i` is `class_names[i]`.
    pub class_names: Vec<String>,
}

/// Reads the CSV manifest `manifest`: rows `path,label`, an optional first row `path,label`
/// (any case, blanks around the names allowed) taken as a header, blank lines ignored.
///
/// Fields may be double-quoted (`"a, b.png",cat`; `""` is a quote inside one); blanks around
/// unquoted fields are trimmed. Relative paths are resolved against the manifest's folder, so
/// a dataset folder with its manifest can move as a whole. Image files are not opened here.
///
/// # Errors
/// - [`DataError::Io`] when the manifest cannot be read; [`DataError::InvalidConfig`] (key
///   `path`) when it is a folder;
/// - [`DataError::Format`], naming the manifest and the line, for a row without exactly two
///   fields, an empty path or label, an unclosed quote, text that is not UTF-8, or a path listed
///   twice (naming both lines): a row's meaning is not guessed, since a wrong guess trains on
///   wrong labels.
pub fn read_manifest(manifest: &Path) -> Result<ManifestScan, DataError> {
    let meta = fs::metadata(manifest).map_err(|e| DataError::io(manifest, e))?;
    if meta.is_dir() {
        return Err(DataError::invalid(
            "path",
            format!(
                "{} is a folder; source = \"manifest\" reads a CSV file of path,label rows \
                 (source = \"folder\" reads a folder)",
                manifest.display()
            ),
        ));
    }
    let bytes = fs::read(manifest).map_err(|e| DataError::io(manifest, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        at_line(
            manifest,
            line,
            "not UTF-8 text (a manifest is a CSV file of path,label rows)".into(),
        )
    })?;
    // Spreadsheet programs start UTF-8 CSV files with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let base = manifest.parent().unwrap_or(Path::new(""));

    // (line, key, resolved path, label name)
    let mut parsed: Vec<(usize, String, PathBuf, String)> = Vec::new();
    let mut first_line_of: HashMap<PathBuf, usize> = HashMap::new();
    let mut first_row = true;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let fields = split_csv_row(raw).map_err(|m| at_line(manifest, line, m))?;
        if std::mem::take(&mut first_row) && is_manifest_header(&fields) {
            continue;
        }
        let [path, label]: [String; 2] = fields.try_into().map_err(|f: Vec<String>| {
            let hint = if f.len() > 2 {
                " (a path or label containing a comma must be double-quoted)"
            } else {
                ""
            };
            at_line(
                manifest,
                line,
                format!(
                    "expected 2 fields (path,label), found {}{hint}: {}",
                    f.len(),
                    excerpt(raw)
                ),
            )
        })?;
        if path.trim().is_empty() {
            return Err(at_line(manifest, line, "the path is empty".into()));
        }
        if label.trim().is_empty() {
            return Err(at_line(
                manifest,
                line,
                format!("the label of {path} is empty"),
            ));
        }
        let resolved = base.join(&path);
        // `a.png` and `./a.png` are one file; listing it twice would weight it twice and give
        // the validation split two keys for it.
        let identity: PathBuf = resolved
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect();
        if let Some(&first) = first_line_of.get(&identity) {
            return Err(at_line(
                manifest,
                line,
                format!("{path} is listed again (first on line {first}); list each image once"),
            ));
        }
        first_line_of.insert(identity, line);
        let key = if std::path::MAIN_SEPARATOR == '/' {
            path
        } else {
            path.replace(std::path::MAIN_SEPARATOR, "/")
        };
        parsed.push((line, key, resolved, label));
    }

    let class_names: Vec<String> = parsed
        .iter()
        .map(|(.., label)| label.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let rows = parsed
        .into_iter()
        .map(|(line, key, path, label)| ManifestRow {
            line,
            key,
            path,
            label: class_names
                .binary_search(&label)
                .expect("every label is in class_names"),
        })
        .collect();
    Ok(ManifestScan { rows, class_names })
}

/// Reads the manifest `manifest` (see [`read_manifest`]) and decodes the files it lists to
/// `[channels, size, size]` in [-1, 1], exactly as [`load_folder`] decodes a folder's.
///
/// Images stay in manifest order. A listed file that is missing, not a file or unusable is
/// skipped with its reason and its manifest line, in manifest order (so under
/// `data.on_error = "fail"` the first one reported is the first one listed).
///
/// `keep_pixels` as for [`load_folder`].
///
/// # Shapes
/// - returns `images`: `[N, channels, size, size]` flattened (or empty), `labels`, `keys`,
///   `paths`: `[N]`
pub fn load_manifest(
    manifest: &Path,
    size: usize,
    channels: usize,
    options: &DecodeOptions,
    filter: FilterType,
    keep_pixels: bool,
) -> Result<FolderImages, DataError> {
    let ManifestScan { rows, class_names } = read_manifest(manifest)?;
    // Files that cannot even be opened get a clearer reason than the decoder's "cannot read".
    let early: Vec<Option<String>> = rows
        .iter()
        .map(|row| match fs::metadata(&row.path) {
            Ok(m) if m.is_file() => None,
            Ok(_) => Some("not a file".to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Some("missing: no such file".to_string())
            }
            Err(e) => Some(format!("cannot read: {e}")),
        })
        .collect();
    let entries: Vec<ImageEntry> = rows
        .iter()
        .zip(&early)
        .filter(|(_, early)| early.is_none())
        .map(|(row, _)| ImageEntry {
            path: row.path.clone(),
            label: row.label,
        })
        .collect();
    let capacity = if keep_pixels {
        entries.len() * channels * size * size
    } else {
        0
    };
    let mut decoded =
        decode_all(&entries, size, channels, options, filter, keep_pixels).into_iter();
    let results = rows.into_iter().zip(early).map(|(row, early)| {
        let result = match early {
            Some(reason) => Err(reason),
            None => decoded
                .next()
                .unwrap_or_else(|| Err("not decoded".to_string())),
        };
        let result = result.map_err(|reason| format!("{reason} (manifest line {})", row.line));
        let entry = ImageEntry {
            path: row.path,
            label: row.label,
        };
        (entry, row.key, result)
    });
    Ok(gather(results, class_names, Vec::new(), capacity))
}

/// A manifest error at `line`, naming the manifest.
fn at_line(manifest: &Path, line: usize, message: String) -> DataError {
    DataError::format(manifest, format!("line {line}: {message}"))
}

/// Whether `fields` is the optional header row `path,label`.
fn is_manifest_header(fields: &[String]) -> bool {
    matches!(fields, [p, l] if p.trim().eq_ignore_ascii_case("path")
        && l.trim().eq_ignore_ascii_case("label"))
}

/// The start of a row, for a message.
fn excerpt(row: &str) -> String {
    const MAX: usize = 80;
    match row.char_indices().nth(MAX) {
        None => format!("{row:?}"),
        Some((at, _)) => format!("{:?}…", &row[..at]),
    }
}

/// Splits one CSV row into fields: separated by `,`; a field may be enclosed in `"` (then it
/// may hold `,`, and `""` stands for one `"`); blanks around a field outside quotes are dropped.
/// A quoted field cannot span lines (image paths and labels have no line breaks).
fn split_csv_row(row: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = row.chars().peekable();
    loop {
        while chars.next_if(|c| matches!(c, ' ' | '\t')).is_some() {}
        let mut field = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(
                            "a quoted field is not closed (a field cannot span lines)".into()
                        );
                    }
                    Some('"') if chars.next_if_eq(&'"').is_some() => field.push('"'),
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            while chars.next_if(|c| matches!(c, ' ' | '\t')).is_some() {}
            fields.push(field);
            match chars.next() {
                None => return Ok(fields),
                Some(',') => {}
                Some(c) => {
                    return Err(format!(
                        "unexpected {c:?} after a closing quote (inside a quoted field, write a \
                         quote as \"\")"
                    ));
                }
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field.trim_end().to_string());
                        return Ok(fields);
                    }
                    Some(',') => {
                        fields.push(field.trim_end().to_string());
                        break;
                    }
                    Some(c) => field.push(c),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(row: &str) -> Vec<String> {
        split_csv_row(row).unwrap()
    }

    #[test]
    fn csv_fields() {
        assert_eq!(split("a.png,cat"), ["a.png", "cat"]);
        assert_eq!(split(" a.png , cat "), ["a.png", "cat"]);
        assert_eq!(split(r#""a, b.png",cat"#), ["a, b.png", "cat"]);
        assert_eq!(
            split(r#""say ""hi"".png" , "x""""#),
            [r#"say "hi".png"#, r#"x""#]
        );
        assert_eq!(split(r#""",cat"#), ["", "cat"]);
        assert_eq!(split("a.png,cat,"), ["a.png", "cat", ""]);
        assert_eq!(split("a.png"), ["a.png"]);
        assert!(
            split_csv_row(r#""a.png,cat"#)
                .unwrap_err()
                .contains("not closed")
        );
        assert!(
            split_csv_row(r#""a"b,cat"#)
                .unwrap_err()
                .contains("after a closing quote")
        );
    }

    #[test]
    fn header_detection() {
        assert!(is_manifest_header(&split(" Path , LABEL ")));
        assert!(is_manifest_header(&split(r#""path","label""#)));
        assert!(!is_manifest_header(&split("path,label,extra")));
        assert!(!is_manifest_header(&split("file,class")));
    }
}
