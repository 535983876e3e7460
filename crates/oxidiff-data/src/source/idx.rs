//! IDX files, the layout of MNIST and Fashion-MNIST, gzipped or not.
//!
//! An IDX file is a 4-byte magic number — two zero bytes, an element-type code, the number of
//! dimensions — then one big-endian u32 per dimension, then the elements in row-major order.
//! Image sets are `[N, rows, cols]` of unsigned bytes (type 0x08), label sets `[N]`.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use image::imageops::FilterType;

use super::index_keys;
use crate::config::DataConfig;
use crate::transform::dynamic_to_chw;
use crate::{DataError, Dataset, Images};

/// Where `apt-get install dataset-fashion-mnist` puts Fashion-MNIST.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Fashion-MNIST's ten classes, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// The IDX element type this reader accepts: unsigned bytes, what image and label sets use.
const TYPE_U8: u8 = 0x08;

/// A decoded IDX file of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// The dimensions, outermost first (`[N, rows, cols]` for images, `[N]` for labels).
    pub dims: Vec<usize>,
    /// The elements, row-major; `dims.iter().product()` of them.
    pub data: Vec<u8>,
}

/// Reads the IDX file at `path`; a gzip stream (by its magic bytes, whatever the file is called)
/// is decompressed first.
///
/// # Errors
/// [`DataError::Io`] when the file cannot be read or its gzip stream is broken;
/// [`DataError::Format`] when the contents are not an IDX file of unsigned bytes, naming what is
/// wrong (magic, element type, sizes, truncation).
pub fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::format(path, format!("broken gzip stream: {e}")))?;
        out
    } else {
        raw
    };
    parse_idx(&bytes, path)
}

/// Parses IDX bytes; `path` only names the source in errors.
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray, DataError> {
    let bad = |message: String| DataError::format(path, message);
    let Some(&[z0, z1, kind, ndims]) = bytes.get(..4).map(|m| <&[u8; 4]>::try_from(m).unwrap())
    else {
        return Err(bad(format!(
            "not an IDX file: {} bytes, shorter than the 4-byte header",
            bytes.len()
        )));
    };
    if (z0, z1) != (0, 0) {
        return Err(bad(format!(
            "not an IDX file: the first two bytes must be zero, found {z0:#04x} {z1:#04x}"
        )));
    }
    if kind != TYPE_U8 {
        return Err(bad(format!(
            "IDX element type {kind:#04x} is not supported; only unsigned bytes (0x08), the \
             type of MNIST-style image and label files"
        )));
    }
    if ndims == 0 {
        return Err(bad("IDX header declares zero dimensions".into()));
    }
    let header = 4 + 4 * usize::from(ndims);
    let Some(dim_bytes) = bytes.get(4..header) else {
        return Err(bad(format!(
            "truncated IDX header: {ndims} dimensions need {header} bytes, the file has {}",
            bytes.len()
        )));
    };
    let dims: Vec<usize> = dim_bytes
        .chunks_exact(4)
        .map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("IDX dimensions {dims:?} overflow")))?;
    let payload = &bytes[header..];
    if payload.len() != expected {
        let what = if payload.len() < expected {
            "truncated"
        } else {
            "trailing bytes"
        };
        return Err(bad(format!(
            "{what}: the header declares dimensions {dims:?} = {expected} bytes of data, the file \
             holds {}",
            payload.len()
        )));
    }
    Ok(IdxArray {
        dims,
        data: payload.to_vec(),
    })
}

/// An image set and its labels read from two IDX files, checked against each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// `[N, rows, cols]`, row-major, 0 = black.
    pub pixels: Vec<u8>,
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    /// `[N]`; all zero when no label file was given.
    pub labels: Vec<usize>,
}

/// Reads an image file (`[N, rows, cols]`) and, when given, its label file (`[N]`).
///
/// # Errors
/// As [`read_idx`], plus [`DataError::Format`] when the image file is not three-dimensional, an
/// image is empty, or the label file is not one-dimensional or holds a different count.
pub fn read_idx_images(images: &Path, labels: Option<&Path>) -> Result<IdxImages, DataError> {
    let array = read_idx(images)?;
    let &[count, rows, cols] = array.dims.as_slice() else {
        return Err(DataError::format(
            images,
            format!(
                "an IDX image file must have 3 dimensions [N, rows, cols], this one has {:?}",
                array.dims
            ),
        ));
    };
    if rows == 0 || cols == 0 {
        return Err(DataError::format(
            images,
            format!("images of {rows}×{cols} pixels are empty"),
        ));
    }
    let labels = match labels {
        None => vec![0; count],
        Some(path) => {
            let l = read_idx(path)?;
            if l.dims != [count] {
                return Err(DataError::format(
                    path,
                    format!(
                        "a label file for {} ({count} images) must have dimensions [{count}], \
                         this one has {:?}",
                        images.display(),
                        l.dims
                    ),
                ));
            }
            l.data.into_iter().map(usize::from).collect()
        }
    };
    Ok(IdxImages {
        pixels: array.data,
        count,
        rows,
        cols,
        labels,
    })
}

/// Which part of a dataset that ships as separate files to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Subset {
    /// The training files (Fashion-MNIST: 60,000 images).
    #[default]
    Train,
    /// The test files (Fashion-MNIST: 10,000 images).
    Test,
}

impl Subset {
    /// The name used in config files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Test => "test",
        }
    }
}

/// The image and label files of Fashion-MNIST's `subset` in `dir`.
pub fn fashion_mnist_files(dir: &Path, subset: Subset) -> (PathBuf, PathBuf) {
    let prefix = match subset {
        Subset::Train => "train",
        Subset::Test => "t10k",
    };
    (
        dir.join(format!("{prefix}-images-idx3-ubyte.gz")),
        dir.join(format!("{prefix}-labels-idx1-ubyte.gz")),
    )
}

/// The IDX image file `images` (with `data.labels`, when set) in the model layout; classes are
/// the label values, named "0", "1", … up to the largest.
///
/// # Errors
/// As [`read_idx_images`]; [`DataError::Empty`] when the file holds no image.
pub(crate) fn idx_dataset(
    config: &DataConfig,
    images: &Path,
    size: usize,
    channels: usize,
    filter: FilterType,
) -> Result<Dataset, DataError> {
    let set = read_idx_images(images, config.labels.as_deref())?;
    let num_classes = set.labels.iter().max().map_or(1, |&m| m + 1);
    let class_names = (0..num_classes).map(|c| c.to_string()).collect();
    idx_images_to_dataset(config, set, class_names, size, channels, filter)
}

/// Fashion-MNIST's `data.subset` from [`DataConfig::fashion_mnist_dir`] in the model layout,
/// with its ten class names.
///
/// # Errors
/// [`DataError::InvalidConfig`] (key `path`) when a file is missing, saying how to install it;
/// as [`read_idx_images`]; [`DataError::Format`] for a label outside the ten classes.
pub(crate) fn fashion_mnist_dataset(
    config: &DataConfig,
    size: usize,
    channels: usize,
    filter: FilterType,
) -> Result<Dataset, DataError> {
    let dir = config.fashion_mnist_dir();
    let (images, labels) = fashion_mnist_files(&dir, config.subset.unwrap_or_default());
    for file in [&images, &labels] {
        if !file.is_file() {
            return Err(DataError::invalid(
                "path",
                format!(
                    "{} not found: `apt-get install dataset-fashion-mnist` installs \
                     Fashion-MNIST in {FASHION_MNIST_DIR}, or set data.path to the \
                     directory holding its four .gz files",
                    file.display()
                ),
            ));
        }
    }
    let set = read_idx_images(&images, Some(&labels))?;
    if let Some(&bad) = set
        .labels
        .iter()
        .find(|&&l| l >= FASHION_MNIST_CLASSES.len())
    {
        return Err(DataError::format(
            &labels,
            format!("label {bad} is not one of Fashion-MNIST's 10 classes"),
        ));
    }
    let names = FASHION_MNIST_CLASSES
        .iter()
        .map(|c| c.to_string())
        .collect();
    idx_images_to_dataset(config, set, names, size, channels, filter)
}

/// Converts an IDX image set to the model layout (centre-cropped to a square, resized,
/// `channels` planes, values in [-1, 1]; 0 is black).
fn idx_images_to_dataset(
    config: &DataConfig,
    set: IdxImages,
    class_names: Vec<String>,
    size: usize,
    channels: usize,
    filter: FilterType,
) -> Result<Dataset, DataError> {
    if set.count == 0 {
        return Err(DataError::Empty {
            origin: config.describe_source(),
            note: String::new(),
        });
    }
    let plane = set.rows * set.cols;
    let mut images = Vec::with_capacity(set.count * channels * size * size);
    for pixels in set.pixels.chunks_exact(plane) {
        let gray = image::GrayImage::from_raw(set.cols as u32, set.rows as u32, pixels.to_vec())
            .expect("rows·cols bytes by construction");
        images.extend(dynamic_to_chw(
            &image::DynamicImage::ImageLuma8(gray),
            size,
            channels,
            filter,
        ));
    }
    Ok(Dataset::new(
        Images::Cached(images),
        channels,
        size,
        set.labels,
        class_names,
        index_keys(set.count),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(kind: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, kind, dims.len() as u8];
        for d in dims {
            out.extend(d.to_be_bytes());
        }
        out.extend(data);
        out
    }

    #[test]
    fn parses_a_small_image_set() {
        let bytes = idx(0x08, &[2, 2, 3], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
        let a = parse_idx(&bytes, Path::new("x.idx")).unwrap();
        assert_eq!(a.dims, vec![2, 2, 3]);
        assert_eq!(a.data[11], 11);
    }

    #[test]
    fn broken_headers_name_the_file_and_the_problem() {
        let cases: [(Vec<u8>, &str); 6] = [
            (vec![0, 0], "shorter than the 4-byte header"),
            (vec![1, 0, 8, 1, 0, 0, 0, 0], "first two bytes must be zero"),
            (idx(0x0D, &[1], &[0, 0, 0, 0]), "element type 0x0d"),
            (vec![0, 0, 8, 3, 0, 0], "truncated IDX header"),
            (idx(0x08, &[2, 2], &[1, 2, 3]), "truncated"),
            (idx(0x08, &[1], &[1, 2]), "trailing bytes"),
        ];
        for (bytes, want) in cases {
            let err = parse_idx(&bytes, Path::new("bad.idx"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("bad.idx: "), "{err}");
            assert!(err.contains(want), "{err} should mention {want}");
        }
    }
}
