//! A CSV manifest of image files and their labels (`source = "manifest"`, see
//! [`read_manifest`]); the files are read as [`super::image_files`] says.
//!
//! - Rows `path,label`, with an optional header row `path,label`; blank lines are ignored and
//!   fields may be double-quoted. Image paths are relative to the manifest's folder unless
//!   absolute. Labels are class names: sorted names → indices 0, 1, …
//! - With `data.captions = "manifest"` a row may hold a third field, the image's caption
//!   (`path,label,caption`, header `path,label,caption` or `path,label,text`); a row without one,
//!   or with an empty one, leaves the image uncaptioned.
//! - Images are taken in the manifest's row order; keys are the paths as written.
//! - A malformed row or a path listed twice stops the load with an error naming the manifest
//!   and the line: the manifest is something a person wrote, and guessing what a broken row
//!   meant would train on the wrong labels. A listed file that is missing is skipped like a
//!   corrupt one.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Component, Path, PathBuf};

use image::imageops::FilterType;

use super::image_files::{FolderImages, ImageEntry, decode_all, files_dataset, gather};
use crate::captions::config::CaptionSource;
use crate::captions::{FileOrigin, file_captions};
use crate::config::DataConfig;
use crate::decode::DecodeOptions;
use crate::{DataError, Dataset};

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
    /// The caption column (only read by [`read_manifest_with`] asked for captions); `None`
    /// when the row has none or it is blank.
    pub caption: Option<String>,
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
    read_manifest_with(manifest, false)
}

/// [`read_manifest`], with `captions = true` also accepting rows `path,label,caption` (and the
/// header `path,label,caption` or `path,label,text`). Without captions a third field stays an
/// error: it is far more often a path with an unquoted comma than a caption nobody asked for.
///
/// # Errors
/// As [`read_manifest`]; with captions, a row of more than three fields (a caption with an
/// unquoted comma) is one.
pub fn read_manifest_with(manifest: &Path, captions: bool) -> Result<ManifestScan, DataError> {
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

    // (line, key, resolved path, label name, caption)
    let mut parsed: Vec<(usize, String, PathBuf, String, Option<String>)> = Vec::new();
    let mut first_line_of: HashMap<PathBuf, usize> = HashMap::new();
    let mut first_row = true;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let fields = split_csv_row(raw).map_err(|m| at_line(manifest, line, m))?;
        if std::mem::take(&mut first_row) && is_manifest_header(&fields, captions) {
            continue;
        }
        let (wanted, hint) = if captions {
            (
                "2 or 3 fields (path,label[,caption])",
                " (a path, label or caption containing a comma must be double-quoted)",
            )
        } else {
            (
                "2 fields (path,label)",
                " (a path or label containing a comma must be double-quoted; a caption column \
                 is read with data.captions = \"manifest\")",
            )
        };
        let most = if captions { 3 } else { 2 };
        if fields.len() < 2 || fields.len() > most {
            let hint = if fields.len() > 2 { hint } else { "" };
            return Err(at_line(
                manifest,
                line,
                format!(
                    "expected {wanted}, found {}{hint}: {}",
                    fields.len(),
                    excerpt(raw)
                ),
            ));
        }
        let mut fields = fields.into_iter();
        let (path, label) = (
            fields.next().unwrap_or_default(),
            fields.next().unwrap_or_default(),
        );
        let caption = fields
            .next()
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty());
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
        parsed.push((line, key, resolved, label, caption));
    }

    let class_names: Vec<String> = parsed
        .iter()
        .map(|(_, _, _, label, _)| label.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let rows = parsed
        .into_iter()
        .map(|(line, key, path, label, caption)| ManifestRow {
            line,
            key,
            path,
            caption,
            label: class_names
                .binary_search(&label)
                .expect("every label is in class_names"),
        })
        .collect();
    Ok(ManifestScan { rows, class_names })
}

/// Reads the manifest `manifest` (see [`read_manifest`]) and decodes the files it lists to
/// `[channels, size, size]` in [-1, 1], exactly as [`crate::load_folder`] decodes a folder's.
///
/// Images stay in manifest order. A listed file that is missing, not a file or unusable is
/// skipped with its reason and its manifest line, in manifest order (so under
/// `data.on_error = "fail"` the first one reported is the first one listed).
///
/// `keep_pixels` as for [`crate::load_folder`].
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
    Ok(load_rows(
        read_manifest(manifest)?,
        size,
        channels,
        options,
        filter,
        keep_pixels,
    ))
}

/// The files of a parsed manifest, decoded as [`load_manifest`] says.
fn load_rows(
    scan: ManifestScan,
    size: usize,
    channels: usize,
    options: &DecodeOptions,
    filter: FilterType,
    keep_pixels: bool,
) -> FolderImages {
    let ManifestScan { rows, class_names } = scan;
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
    gather(results, class_names, Vec::new())
}

/// The files the manifest `manifest` lists, as a dataset (`data.cache`, `data.on_error`),
/// with the captions `data.captions` asks for.
///
/// # Errors
/// As [`load_manifest`] and [`files_dataset`].
pub(crate) fn manifest_dataset(
    config: &DataConfig,
    manifest: &Path,
    size: usize,
    channels: usize,
    filter: FilterType,
) -> Result<Dataset, DataError> {
    let scan = read_manifest_with(manifest, config.captions == CaptionSource::Manifest)?;
    let by_key: HashMap<String, String> = scan
        .rows
        .iter()
        .filter_map(|row| Some((row.key.clone(), row.caption.clone()?)))
        .collect();
    let loaded = load_rows(
        scan,
        size,
        channels,
        &config.decode_options(),
        filter,
        config.cache,
    );
    let (loaded, captions) = file_captions(config, loaded, FileOrigin::Manifest(by_key))?;
    Ok(files_dataset(config, loaded, size, channels)?.with_captions(captions))
}

/// A manifest error at `line`, naming the manifest.
fn at_line(manifest: &Path, line: usize, message: String) -> DataError {
    DataError::format(manifest, format!("line {line}: {message}"))
}

/// Whether `fields` is the optional header row `path,label` (with `captions`, also
/// `path,label,caption` or `path,label,text`).
fn is_manifest_header(fields: &[String], captions: bool) -> bool {
    let named = |f: &String, name: &str| f.trim().eq_ignore_ascii_case(name);
    match fields {
        [p, l] => named(p, "path") && named(l, "label"),
        [p, l, c] if captions => {
            named(p, "path") && named(l, "label") && (named(c, "caption") || named(c, "text"))
        }
        _ => false,
    }
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
        assert!(is_manifest_header(&split(" Path , LABEL "), false));
        assert!(is_manifest_header(&split(r#""path","label""#), false));
        assert!(!is_manifest_header(&split("path,label,extra"), true));
        assert!(!is_manifest_header(&split("path,label,caption"), false));
        assert!(is_manifest_header(&split("path,label,Caption"), true));
        assert!(is_manifest_header(&split("path,label,text"), true));
        assert!(!is_manifest_header(&split("file,class"), false));
    }
}
