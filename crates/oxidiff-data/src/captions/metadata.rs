//! diffusers' (Hugging Face `datasets`' imagefolder) captions: `metadata.jsonl` at the top of
//! the image folder, one JSON object a line, `{"file_name": "cats/a.png", "text": "a cat"}`;
//! `text` may be a list of strings (several captions of one image). Other fields are ignored,
//! as imagefolder keeps them as extra columns nobody asked for here.
//!
//! A broken line stops the load with the file and the line, like a broken manifest row: the
//! file is something a person (or a script) wrote, and guessing what it meant would train on
//! the wrong captions. Only the top-level `metadata.jsonl` is read (imagefolder also accepts
//! one per sub-folder, and `metadata.csv`: not yet).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::DataError;

/// The file name diffusers' imagefolder reads.
pub const METADATA_FILE: &str = "metadata.jsonl";

/// The captions of `metadata`, by `file_name` normalised like a folder key (`/`-separated,
/// `./` dropped), with the 1-based line each came from; an image listed with an empty caption
/// list (or `null`, or no `column` field) maps to no captions.
///
/// # Errors
/// - [`DataError::Io`] when the file cannot be read (a folder asked to have
///   `captions = "metadata"` without one included);
/// - [`DataError::Format`] naming the file and the line for text that is not UTF-8, a line that
///   is not a JSON object, a `file_name` that is missing or not a string, a caption field that is
///   neither a string nor a list of strings, or an image listed twice (naming both lines).
pub fn read_metadata(
    metadata: &Path,
    column: &str,
) -> Result<HashMap<String, (usize, Vec<String>)>, DataError> {
    let bytes = fs::read(metadata).map_err(|e| DataError::io(metadata, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        at_line(metadata, line, "not UTF-8 text".into())
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut captions = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let (file_name, texts) = parse_line(raw, column).map_err(|m| at_line(metadata, line, m))?;
        let key = normalise_key(&file_name);
        if let Some((first, _)) = captions.get(&key) {
            return Err(at_line(
                metadata,
                line,
                format!(
                    "{file_name} is listed again (first on line {first}); list each image once"
                ),
            ));
        }
        captions.insert(key, (line, texts));
    }
    Ok(captions)
}

/// The path of the metadata file of the folder `root`.
pub(crate) fn metadata_path(root: &Path) -> PathBuf {
    root.join(METADATA_FILE)
}

/// One line's `file_name` and captions (blank ones left out), or what is wrong with it.
fn parse_line(raw: &str, column: &str) -> Result<(String, Vec<String>), String> {
    let value: Value = serde_json::from_str(raw).map_err(|e| format!("not a JSON object: {e}"))?;
    let Value::Object(object) = value else {
        return Err(format!("expected a JSON object, found {}", excerpt(raw)));
    };
    let file_name = match object.get("file_name") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) => return Err("file_name is empty".into()),
        Some(other) => return Err(format!("file_name must be a string, found {other}")),
        None => return Err(format!("no \"file_name\" field: {}", excerpt(raw))),
    };
    let texts = match object.get(column) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!(
                    "\"{column}\" of {file_name}: a list of captions holds only strings, found {other}"
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(format!(
                "\"{column}\" of {file_name} must be a string or a list of strings, found {other}"
            ));
        }
    };
    let texts = texts
        .into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    Ok((file_name, texts))
}

/// `file_name` as a folder key: `/`-separated, without `.` components or doubled slashes.
fn normalise_key(file_name: &str) -> String {
    file_name
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

fn at_line(path: &Path, line: usize, message: String) -> DataError {
    DataError::format(path, format!("line {line}: {message}"))
}

/// The start of a line, for a message.
fn excerpt(raw: &str) -> String {
    const MAX: usize = 80;
    match raw.char_indices().nth(MAX) {
        None => format!("{raw:?}"),
        Some((at, _)) => format!("{:?}…", &raw[..at]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_keys() {
        let (name, texts) =
            parse_line(r#"{"file_name": "./a//b.png", "text": " x "}"#, "text").unwrap();
        assert_eq!(
            (normalise_key(&name), texts),
            ("a/b.png".into(), vec!["x".into()])
        );
        let (_, texts) =
            parse_line(r#"{"file_name": "a.png", "text": ["x", "", "y"]}"#, "text").unwrap();
        assert_eq!(texts, ["x", "y"]);
        let (_, texts) = parse_line(r#"{"file_name": "a.png", "caption": "x"}"#, "text").unwrap();
        assert!(texts.is_empty());
        for bad in [
            "[1]",
            "{",
            r#"{"text": "x"}"#,
            r#"{"file_name": 3}"#,
            r#"{"file_name": "a.png", "text": 3}"#,
            r#"{"file_name": "a.png", "text": ["x", 3]}"#,
        ] {
            assert!(parse_line(bad, "text").is_err(), "{bad}");
        }
    }
}
