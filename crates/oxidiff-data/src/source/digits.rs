//! The embedded default dataset: the 8×8 handwritten digits (UCI "Optical Recognition of
//! Handwritten Digits", Alpaydin & Kaynak, CC BY 4.0; see `data/README.md`).

use std::io::Read;

use flate2::read::GzDecoder;
use image::imageops::FilterType;

use super::index_keys;
use crate::transform::gray_plane_to_chw;
use crate::{DataError, Dataset, Images};

/// Side of a digit image.
pub const DIGITS_SIZE: usize = 8;
/// Number of images in the embedded set.
pub const DIGITS_LEN: usize = 1797;
/// Number of classes (the digits 0..9).
pub const DIGITS_CLASSES: usize = 10;
/// Largest pixel value: each pixel counts the "on" pixels of a 4×4 block.
const MAX_VALUE: f32 = 16.0;

static DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");

/// Decodes the embedded digits.
///
/// Pixels v ∈ 0..=16 become v/16·2 − 1 ∈ [-1, 1], so background is -1 and full ink is 1.
///
/// # Shapes
/// - returns: images `[1797, 1, 8, 8]` flattened row-major, labels `[1797]` in 0..10
pub fn load_digits() -> Result<(Vec<f32>, Vec<usize>), DataError> {
    let mut text = String::new();
    GzDecoder::new(DIGITS_CSV_GZ)
        .read_to_string(&mut text)
        .map_err(|e| DataError::Embedded {
            message: format!("gzip/UTF-8 decoding failed: {e}"),
        })?;
    parse_digits_csv(&text)
}

/// The embedded digits in the model layout: each resized to `size`×`size` with `filter` and
/// replicated to `channels` planes, values in [-1, 1]; keys `#0`…, classes "0".."9".
///
/// # Shapes
/// - returns: images `[1797, channels, size, size]`, labels and keys `[1797]`
pub(crate) fn digits_dataset(
    size: usize,
    channels: usize,
    filter: FilterType,
) -> Result<Dataset, DataError> {
    let (raw, labels) = load_digits()?;
    let plane = DIGITS_SIZE * DIGITS_SIZE;
    let mut images = Vec::with_capacity(labels.len() * channels * size * size);
    for img in raw.chunks_exact(plane) {
        // Back to [0, 1] so the resize clamps to the true range, then out to [-1, 1].
        let unit: Vec<f32> = img.iter().map(|v| (v + 1.0) * 0.5).collect();
        images.extend(gray_plane_to_chw(
            &unit,
            DIGITS_SIZE,
            size,
            channels,
            filter,
        ));
    }
    let keys = index_keys(labels.len());
    let class_names = (0..DIGITS_CLASSES).map(|d| d.to_string()).collect();
    Ok(Dataset::new(
        Images::Cached(images),
        channels,
        size,
        labels,
        class_names,
        keys,
    ))
}

/// Parses rows of 64 pixel values then the label. Separate from [`load_digits`] so the checks
/// can be tested on broken input.
fn parse_digits_csv(text: &str) -> Result<(Vec<f32>, Vec<usize>), DataError> {
    let pixels = DIGITS_SIZE * DIGITS_SIZE;
    let mut images = Vec::with_capacity(DIGITS_LEN * pixels);
    let mut labels = Vec::with_capacity(DIGITS_LEN);
    let bad = |line: usize, message: String| DataError::Embedded {
        message: format!("line {line}: {message}"),
    };
    for (i, row) in text.lines().enumerate() {
        let line = i + 1;
        if row.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = row.split(',').map(str::trim).collect();
        if fields.len() != pixels + 1 {
            return Err(bad(
                line,
                format!("{} columns, expected {}", fields.len(), pixels + 1),
            ));
        }
        for field in &fields[..pixels] {
            // Parsed as float: some copies of this file write "0.0" rather than "0".
            let v: f32 = field
                .parse()
                .map_err(|_| bad(line, format!("pixel value {field:?} is not a number")))?;
            if !(0.0..=MAX_VALUE).contains(&v) {
                return Err(bad(line, format!("pixel value {v} outside 0..=16")));
            }
            images.push(v / MAX_VALUE * 2.0 - 1.0);
        }
        let label_field = fields[pixels];
        let label = label_field
            .parse::<f32>()
            .ok()
            .filter(|l| l.fract() == 0.0 && (0.0..DIGITS_CLASSES as f32).contains(l))
            .ok_or_else(|| bad(line, format!("label {label_field:?} is not a digit 0..9")))?;
        labels.push(label as usize);
    }
    if labels.is_empty() {
        return Err(DataError::Embedded {
            message: "no rows".to_string(),
        });
    }
    Ok((images, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_malformed_rows() {
        let row = |v: &str, label: &str| {
            let mut r = vec![v; 64].join(",");
            r.push(',');
            r.push_str(label);
            r
        };
        assert!(parse_digits_csv(&row("3", "7")).is_ok());
        let e = parse_digits_csv(&row("17", "7")).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("outside"), "{e}");
        let e = parse_digits_csv(&row("x", "7")).unwrap_err().to_string();
        assert!(e.contains("not a number"), "{e}");
        let e = parse_digits_csv(&row("3", "10")).unwrap_err().to_string();
        assert!(e.contains("label"), "{e}");
        let e = parse_digits_csv("1,2,3").unwrap_err().to_string();
        assert!(e.contains("3 columns"), "{e}");
        assert!(parse_digits_csv("").is_err());
    }
}
