//! NumPy `.npy` arrays as an image source.
//!
//! Datasets prepared in Python usually end up as one `np.save`d array, so reading that file
//! directly spares users an export step to PNG folders or IDX. This reader follows the NPY format
//! specification (`numpy.lib.format`) by hand, so it needs no Python and no extra crate:
//!
//! * the magic `\x93NUMPY`, a major and a minor version byte;
//! * the header length, a little-endian u16 (version 1.0) or u32 (versions 2.0 and 3.0);
//! * the header, a Python dict literal with the keys `'descr'`, `'fortran_order'` and `'shape'`,
//!   padded with spaces and ended by `'\n'` (Latin-1 text up to 2.0, UTF-8 in 3.0);
//! * the elements, row-major unless `fortran_order` is `True`.
//!
//! Only the element types image data comes in are read (unsigned bytes and little-endian floats);
//! everything else is refused with a message saying how to convert the array, rather than being
//! guessed at. Images may be `[N, H, W]` or 4-D in either channel layout ([`NpyLayout`]), and
//! float arrays with NaN/±Inf are handled by an explicit policy ([`MissingValues`]).

use std::fmt;
use std::path::Path;

use crate::DataError;

/// The magic string every `.npy` file starts with.
const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// How far outside [0, 1] a float may stray (rounding in the producer) before it is refused.
const RANGE_TOLERANCE: f32 = 1e-6;

/// A decoded `.npy` file, in one of the element types images come in.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// The dimensions, outermost first; empty for a 0-d (scalar) array.
    pub shape: Vec<usize>,
    /// The elements, row-major; `shape.iter().product()` of them.
    pub data: NpyData,
}

/// The elements of an [`NpyArray`].
///
/// Doubles are narrowed to `f32` on reading because training runs in `f32` anyway; keeping one
/// float type spares every consumer a second code path.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    /// `|u1`: 0–255 pixel values.
    U8(Vec<u8>),
    /// `<f4`, or `<f8` narrowed to `f32`.
    F32(Vec<f32>),
}

impl NpyData {
    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::U8(v) => v.len(),
            Self::F32(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads the `.npy` file at `path`.
///
/// # Errors
/// [`DataError::Io`] when the file cannot be read; [`DataError::Format`] when it is not a `.npy`
/// file, its header is malformed, its dtype is not `|u1`, `<f4` or `<f8`, it is stored in Fortran
/// order, or its payload is shorter or longer than the header declares.
pub fn read_npy(path: &Path) -> Result<NpyArray, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_npy(&bytes, path)
}

/// Parses `.npy` bytes; `path` only names the source in errors.
///
/// # Errors
/// As [`read_npy`], without the I/O errors.
pub fn parse_npy(bytes: &[u8], path: &Path) -> Result<NpyArray, DataError> {
    let bad = |message: String| DataError::format(path, message);
    if !bytes.starts_with(MAGIC) {
        let start = &bytes[..bytes.len().min(8)];
        return Err(bad(format!(
            "not a .npy file: it must start with the magic bytes \\x93NUMPY, it starts with \
             b\"{}\" ({} bytes in all)",
            start.escape_ascii(),
            bytes.len()
        )));
    }
    let (Some(&major), Some(&minor)) = (bytes.get(6), bytes.get(7)) else {
        return Err(bad(format!(
            "truncated .npy prelude: {} bytes, the version alone needs 8",
            bytes.len()
        )));
    };
    let len_bytes = match (major, minor) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        _ => {
            return Err(bad(format!(
                ".npy format version {major}.{minor} is not supported; versions 1.0, 2.0 and 3.0 \
                 are"
            )));
        }
    };
    let prelude = 8 + len_bytes;
    let Some(len_field) = bytes.get(8..prelude) else {
        return Err(bad(format!(
            "truncated .npy prelude: version {major}.{minor} needs {prelude} bytes before the \
             header, the file has {}",
            bytes.len()
        )));
    };
    let header_len = if len_bytes == 2 {
        usize::from(u16::from_le_bytes([len_field[0], len_field[1]]))
    } else {
        u32::from_le_bytes([len_field[0], len_field[1], len_field[2], len_field[3]]) as usize
    };
    let data_start = prelude.saturating_add(header_len);
    let Some(header_bytes) = bytes.get(prelude..data_start) else {
        return Err(bad(format!(
            "truncated header: the prelude declares {header_len} bytes of header, the file holds \
             {} after the prelude",
            bytes.len() - prelude
        )));
    };
    let header_text: String = if major == 3 {
        std::str::from_utf8(header_bytes)
            .map_err(|e| bad(format!("the version 3.0 header is not valid UTF-8: {e}")))?
            .to_owned()
    } else {
        // Versions 1.0 and 2.0 store the header as Latin-1, where every byte is one code point.
        header_bytes.iter().map(|&b| char::from(b)).collect()
    };
    let header = parse_header(&header_text).map_err(bad)?;
    if header.fortran_order {
        return Err(bad(format!(
            "the array (shape {}) is stored in Fortran (column-major) order; save it in C order \
             instead, e.g. np.save(path, np.ascontiguousarray(arr))",
            shape_str(&header.shape)
        )));
    }
    let count = header
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("shape {} overflows", shape_str(&header.shape))))?;
    let itemsize = header.dtype.itemsize();
    let expected = count
        .checked_mul(itemsize)
        .ok_or_else(|| bad(format!("shape {} overflows", shape_str(&header.shape))))?;
    let payload = &bytes[data_start..];
    if payload.len() != expected {
        let what = if payload.len() < expected {
            "truncated payload"
        } else {
            "trailing bytes"
        };
        return Err(bad(format!(
            "{what}: header declares shape {} = {expected} bytes of data, the file holds {} \
             (dtype '{}', {itemsize} bytes per value)",
            shape_str(&header.shape),
            payload.len(),
            header.descr
        )));
    }
    let data = match header.dtype {
        Dtype::U8 => NpyData::U8(payload.to_vec()),
        Dtype::F32 => NpyData::F32(
            payload
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        Dtype::F64 => NpyData::F32(
            payload
                .chunks_exact(8)
                .map(|b| {
                    f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                })
                .collect(),
        ),
    };
    Ok(NpyArray {
        shape: header.shape,
        data,
    })
}

/// How a 4-D array orders its axes. Both are common: NumPy/TensorFlow pipelines and image
/// libraries produce `[N, H, W, C]`, PyTorch tensors `[N, C, H, W]`, and the file cannot say
/// which one it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NpyLayout {
    /// `[N, H, W, C]`: channels last, as `np.stack` of PIL/imageio images gives.
    #[default]
    Nhwc,
    /// `[N, C, H, W]`: channels first, as saved from PyTorch tensors.
    Nchw,
}

impl NpyLayout {
    /// The name used in config files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Nhwc => "nhwc",
            Self::Nchw => "nchw",
        }
    }
}

/// What to do with samples holding NaN or ±Inf. A single non-finite pixel turns every loss it
/// touches into NaN and ruins a run silently, so such samples are never passed on as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissingValues {
    /// Drop samples holding NaN/±Inf (and report which ones were dropped).
    #[default]
    Skip,
    /// Replace each non-finite value by its channel's mean over the finite values of the given
    /// (training) samples, so that held-out samples do not leak into the statistics.
    Fill,
    /// Stop with an error naming the file, the first bad sample index and how many values are
    /// bad, for data that is expected to be clean.
    Fail,
}

impl MissingValues {
    /// The name used in config files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::Fill => "fill",
            Self::Fail => "fail",
        }
    }
}

/// Images taken from an `.npy` array, in the layout and value range the rest of the crate uses.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyImages {
    /// `[N, C, H, W]`, row-major, in [0, 1] apart from non-finite values that
    /// [`apply_missing_values`] has not dealt with yet.
    pub pixels: Vec<f32>,
    pub count: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl NpyImages {
    /// The number of values in one sample (`C × H × W`).
    pub fn sample_len(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// Turns a decoded array into images: `[N, H, W]` (one channel) or 4-D in `layout` with 1 or 3
/// channels, moved to `[N, C, H, W]`; bytes are divided by 255, floats must already be in [0, 1]
/// (checked over the finite values, so a wrongly scaled file fails instead of training on
/// garbage). Non-finite values are kept for [`apply_missing_values`] to handle. `path` only names
/// the source in errors.
///
/// # Errors
/// [`DataError::Format`] for any other shape, an empty image (a zero dimension other than N),
/// float values outside [0, 1], or data whose length does not match the shape.
pub fn npy_images(array: NpyArray, layout: NpyLayout, path: &Path) -> Result<NpyImages, DataError> {
    let bad = |message: String| DataError::format(path, message);
    let shape = shape_str(&array.shape);
    let expected_layouts = |layout: NpyLayout| {
        let (four_d, other) = match layout {
            NpyLayout::Nhwc => ("[N, H, W, C]", "nchw for [N, C, H, W]"),
            NpyLayout::Nchw => ("[N, C, H, W]", "nhwc for [N, H, W, C]"),
        };
        format!(
            "expected [N, H, W] (one channel) or {four_d} with C = 1 or 3 (layout {}; use layout \
             {other})",
            layout.name()
        )
    };
    let (count, channels, height, width, channels_last) = match (array.shape.as_slice(), layout) {
        (&[n, h, w], _) => (n, 1, h, w, false),
        (&[n, h, w, c], NpyLayout::Nhwc) => (n, c, h, w, true),
        (&[n, c, h, w], NpyLayout::Nchw) => (n, c, h, w, false),
        _ => {
            return Err(bad(format!(
                "an image array must have 3 or 4 dimensions, shape {shape} has {}; {}",
                array.shape.len(),
                expected_layouts(layout)
            )));
        }
    };
    if channels != 1 && channels != 3 {
        return Err(bad(format!(
            "shape {shape} read as {} has {channels} channels; {}",
            layout.name(),
            expected_layouts(layout)
        )));
    }
    if height == 0 || width == 0 {
        return Err(bad(format!(
            "shape {shape} holds empty images ({height}×{width} pixels); {}",
            expected_layouts(layout)
        )));
    }
    let sample_len = channels * height * width;
    let needed = count.checked_mul(sample_len);
    if needed != Some(array.data.len()) {
        return Err(bad(format!(
            "the array holds {} values, shape {shape} needs {}",
            array.data.len(),
            needed.map_or_else(|| "more than fit in memory".to_string(), |n| n.to_string())
        )));
    }
    let values: Vec<f32> = match array.data {
        NpyData::U8(v) => v.into_iter().map(|b| f32::from(b) / 255.0).collect(),
        NpyData::F32(mut v) => {
            let (lo, hi) = v
                .iter()
                .filter(|x| x.is_finite())
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
                    (lo.min(x), hi.max(x))
                });
            if lo < -RANGE_TOLERANCE || hi > 1.0 + RANGE_TOLERANCE {
                return Err(bad(format!(
                    "float values range over [{lo}, {hi}] (finite values), outside [0, 1]; \
                     rescale to [0, 1] first (e.g. x / 255 for 0–255 data, (x + 1) / 2 for \
                     [-1, 1] data)"
                )));
            }
            // Within tolerance: pull rounding strays back so that the range promise holds.
            for x in v.iter_mut().filter(|x| x.is_finite()) {
                *x = x.clamp(0.0, 1.0);
            }
            v
        }
    };
    let pixels = if channels_last && channels > 1 {
        let plane = height * width;
        let mut out = vec![0.0; values.len()];
        for (n, sample) in values.chunks_exact(sample_len).enumerate() {
            let dst = &mut out[n * sample_len..(n + 1) * sample_len];
            for (p, pixel) in sample.chunks_exact(channels).enumerate() {
                for (c, &v) in pixel.iter().enumerate() {
                    dst[c * plane + p] = v;
                }
            }
        }
        out
    } else {
        values
    };
    Ok(NpyImages {
        pixels,
        count,
        channels,
        height,
        width,
    })
}

/// `(sample index, number of non-finite values)` for every sample holding NaN or ±Inf, in index
/// order; what [`apply_missing_values`] acts on, exposed so callers can report before choosing.
pub fn non_finite_samples(images: &NpyImages) -> Vec<(usize, usize)> {
    let sample_len = images.sample_len();
    if sample_len == 0 {
        return Vec::new();
    }
    images
        .pixels
        .chunks_exact(sample_len)
        .enumerate()
        .filter_map(|(i, s)| {
            let bad = s.iter().filter(|x| !x.is_finite()).count();
            (bad > 0).then_some((i, bad))
        })
        .collect()
}

/// Applies `policy` to the samples holding NaN/±Inf and returns the images with what was done to
/// which sample (original index, reason), so the caller can tell the user instead of changing the
/// data silently.
///
/// For [`MissingValues::Fill`], the channel means come only from the samples in `fill_from`
/// (indices into `images`, typically the training split), so that evaluation samples do not
/// influence the training data. `path` names the source in errors.
///
/// # Errors
/// [`DataError::Format`] under [`MissingValues::Fail`] when any sample holds a non-finite value;
/// under [`MissingValues::Fill`] when an index in `fill_from` is out of range or a channel that
/// needs filling has no finite value in the `fill_from` samples.
pub fn apply_missing_values(
    images: NpyImages,
    policy: MissingValues,
    fill_from: &[usize],
    path: &Path,
) -> Result<(NpyImages, Vec<(usize, String)>), DataError> {
    let bad_samples = non_finite_samples(&images);
    if bad_samples.is_empty() {
        return Ok((images, Vec::new()));
    }
    let describe = |n: usize| {
        if n == 1 {
            "1 NaN/Inf value".to_string()
        } else {
            format!("{n} NaN/Inf values")
        }
    };
    let sample_len = images.sample_len();
    match policy {
        MissingValues::Fail => {
            let (first, n) = bad_samples[0];
            let total: usize = bad_samples.iter().map(|&(_, n)| n).sum();
            Err(DataError::format(
                path,
                format!(
                    "sample {first} holds {} ({} in {} of {} samples in all); clean the array \
                     or choose the missing-values policy skip or fill",
                    describe(n),
                    describe(total),
                    bad_samples.len(),
                    images.count
                ),
            ))
        }
        MissingValues::Skip => {
            let mut images = images;
            let mut keep = vec![true; images.count];
            for &(i, _) in &bad_samples {
                keep[i] = false;
            }
            let mut pixels = Vec::with_capacity((images.count - bad_samples.len()) * sample_len);
            for (sample, _) in images
                .pixels
                .chunks_exact(sample_len)
                .zip(&keep)
                .filter(|(_, k)| **k)
            {
                pixels.extend_from_slice(sample);
            }
            images.pixels = pixels;
            images.count -= bad_samples.len();
            let report = bad_samples
                .into_iter()
                .map(|(i, n)| (i, describe(n)))
                .collect();
            Ok((images, report))
        }
        MissingValues::Fill => {
            let mut images = images;
            let plane = images.height * images.width;
            let mut chosen = vec![false; images.count];
            for &i in fill_from {
                let Some(c) = chosen.get_mut(i) else {
                    return Err(DataError::format(
                        path,
                        format!(
                            "cannot fill NaN/Inf values: sample {i} (given to compute the channel \
                             means from) is out of range for {} samples",
                            images.count
                        ),
                    ));
                };
                *c = true;
            }
            // Means in f64: summing 10^5 samples of 10^3 values in f32 loses digits.
            let mut sums = vec![(0.0f64, 0usize); images.channels];
            for (sample, _) in images
                .pixels
                .chunks_exact(sample_len)
                .zip(&chosen)
                .filter(|(_, c)| **c)
            {
                for (channel, values) in sample.chunks_exact(plane).enumerate() {
                    for &v in values.iter().filter(|v| v.is_finite()) {
                        sums[channel].0 += f64::from(v);
                        sums[channel].1 += 1;
                    }
                }
            }
            let used = chosen.iter().filter(|c| **c).count();
            let mut report = Vec::with_capacity(bad_samples.len());
            for (i, n) in bad_samples {
                let sample = &mut images.pixels[i * sample_len..(i + 1) * sample_len];
                for (channel, values) in sample.chunks_exact_mut(plane).enumerate() {
                    for v in values.iter_mut().filter(|v| !v.is_finite()) {
                        let (sum, finite) = sums[channel];
                        if finite == 0 {
                            return Err(DataError::format(
                                path,
                                format!(
                                    "cannot fill the NaN/Inf values of sample {i}: channel \
                                     {channel} has no finite value in the {used} samples given \
                                     to compute the channel means from"
                                ),
                            ));
                        }
                        *v = (sum / finite as f64) as f32;
                    }
                }
                report.push((i, format!("{} filled with the channel mean", describe(n))));
            }
            Ok((images, report))
        }
    }
}

/// A supported element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dtype {
    U8,
    F32,
    F64,
}

impl Dtype {
    fn itemsize(self) -> usize {
        match self {
            Self::U8 => 1,
            Self::F32 => 4,
            Self::F64 => 8,
        }
    }
}

/// Maps a `'descr'` string to a supported type, or says what to convert the array to.
fn parse_dtype(descr: &str) -> Result<Dtype, String> {
    match descr {
        "|u1" | "u1" | "<u1" => return Ok(Dtype::U8),
        "<f4" => return Ok(Dtype::F32),
        "<f8" => return Ok(Dtype::F64),
        _ => {}
    }
    let supported = "supported are '|u1' (unsigned bytes), '<f4' and '<f8' (little-endian floats)";
    let hint = if descr.contains('O') {
        "object arrays hold pickled Python objects, not numbers; convert with arr.astype(np.float32)"
    } else if descr.starts_with('>') {
        "the array is big-endian; convert with arr.astype(arr.dtype.newbyteorder('<'))"
    } else {
        "convert with arr.astype(np.uint8) or arr.astype(np.float32) before saving"
    };
    Err(format!(
        "dtype '{descr}' is not supported; {supported}: {hint}"
    ))
}

/// What the header dict says, checked.
#[derive(Debug)]
struct Header {
    descr: String,
    dtype: Dtype,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Parses and checks the header dict; errors are messages without the path.
fn parse_header(text: &str) -> Result<Header, String> {
    let shown = || {
        let t = text.trim_end();
        if t.chars().count() > 200 {
            format!("{}…", t.chars().take(200).collect::<String>())
        } else {
            t.to_string()
        }
    };
    let value = Parser::new(text)
        .parse_all()
        .map_err(|e| format!("malformed header {:?}: {e}", shown()))?;
    let Value::Dict(entries) = value else {
        return Err(format!("malformed header {:?}: not a dict", shown()));
    };
    let mut descr = None;
    let mut fortran_order = None;
    let mut shape = None;
    for (key, value) in entries {
        let Value::Str(key) = key else {
            return Err(format!(
                "malformed header {:?}: key {key} is not a string",
                shown()
            ));
        };
        let slot = match key.as_str() {
            "descr" => &mut descr,
            "fortran_order" => &mut fortran_order,
            "shape" => &mut shape,
            _ => continue, // Unknown keys carry nothing this reader needs.
        };
        if slot.replace(value).is_some() {
            return Err(format!(
                "malformed header {:?}: key '{key}' appears twice",
                shown()
            ));
        }
    }
    let missing = |key: &str| format!("header {:?} has no '{key}' key", shown());
    let descr = match descr.ok_or_else(|| missing("descr"))? {
        Value::Str(s) => s,
        v @ Value::List(_) => {
            return Err(format!(
                "structured dtype {v} is not supported; save a plain array of '|u1', '<f4' or \
                 '<f8' values"
            ));
        }
        v => return Err(format!("header 'descr' must be a string, found {v}")),
    };
    let fortran_order = match fortran_order.ok_or_else(|| missing("fortran_order"))? {
        Value::Bool(b) => b,
        v => {
            return Err(format!(
                "header 'fortran_order' must be True or False, found {v}"
            ));
        }
    };
    let shape = match shape.ok_or_else(|| missing("shape"))? {
        Value::Tuple(items) | Value::List(items) => items
            .into_iter()
            .map(|d| match d {
                Value::Int(d) => Ok(d),
                d => Err(format!("header 'shape' must hold integers, found {d}")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        v => return Err(format!("header 'shape' must be a tuple, found {v}")),
    };
    let dtype = parse_dtype(&descr)?;
    Ok(Header {
        descr,
        dtype,
        fortran_order,
        shape,
    })
}

/// `(10, 28, 28)`, `(10,)`, `()`: shapes as NumPy prints them, so users recognise them.
fn shape_str(shape: &[usize]) -> String {
    match shape {
        [d] => format!("({d},)"),
        _ => {
            let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
            format!("({})", dims.join(", "))
        }
    }
}

/// The Python literals an NPY header is made of.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Int(usize),
    Bool(bool),
    None,
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seq = |f: &mut fmt::Formatter<'_>, items: &[Value]| -> fmt::Result {
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{v}")?;
            }
            Ok(())
        };
        match self {
            Self::Str(s) => write!(f, "'{s}'"),
            Self::Int(i) => write!(f, "{i}"),
            Self::Bool(true) => f.write_str("True"),
            Self::Bool(false) => f.write_str("False"),
            Self::None => f.write_str("None"),
            Self::Tuple(items) => {
                f.write_str("(")?;
                seq(f, items)?;
                f.write_str(if items.len() == 1 { ",)" } else { ")" })
            }
            Self::List(items) => {
                f.write_str("[")?;
                seq(f, items)?;
                f.write_str("]")
            }
            Self::Dict(entries) => {
                f.write_str("{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

/// A recursive-descent parser for the Python literals NumPy writes in headers: dicts, tuples,
/// lists, quoted strings, non-negative integers, `True`/`False`/`None`; any whitespace between
/// tokens and trailing commas are accepted. Nesting is bounded so that a hostile header cannot
/// overflow the stack.
struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
}

const MAX_DEPTH: usize = 32;

impl Parser {
    fn new(text: &str) -> Self {
        Self {
            chars: text.chars().collect(),
            pos: 0,
            depth: 0,
        }
    }

    fn parse_all(mut self) -> Result<Value, String> {
        let value = self.value()?;
        self.skip_ws();
        match self.peek() {
            None => Ok(value),
            Some(c) => Err(self.unexpected(c, "the end of the header")),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn unexpected(&self, c: char, wanted: &str) -> String {
        format!(
            "unexpected {c:?} at character {}, expected {wanted}",
            self.pos
        )
    }

    fn value(&mut self) -> Result<Value, String> {
        self.skip_ws();
        let Some(c) = self.peek() else {
            return Err("the header ends where a value was expected".to_string());
        };
        match c {
            '{' | '(' | '[' => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(format!("nested deeper than {MAX_DEPTH} levels"));
                }
                self.pos += 1;
                let value = match c {
                    '{' => self.dict()?,
                    '(' => Value::Tuple(self.sequence(')')?),
                    _ => Value::List(self.sequence(']')?),
                };
                self.depth -= 1;
                Ok(value)
            }
            '\'' | '"' => self.string(c),
            '0'..='9' => self.int(),
            c if c.is_ascii_alphabetic() => self.name(),
            c => Err(self.unexpected(c, "a value")),
        }
    }

    /// Items up to `close` (the opening bracket already consumed).
    fn sequence(&mut self, close: char) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(items);
            }
            items.push(self.value()?);
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(c) if c == close => {}
                Some(c) => return Err(self.unexpected(c, &format!("',' or '{close}'"))),
                None => return Err(format!("the header ends before the closing '{close}'")),
            }
        }
    }

    /// Entries up to `}` (the `{` already consumed).
    fn dict(&mut self) -> Result<Value, String> {
        let mut entries = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some('}') {
                self.pos += 1;
                return Ok(Value::Dict(entries));
            }
            let key = self.value()?;
            self.skip_ws();
            match self.peek() {
                Some(':') => self.pos += 1,
                Some(c) => return Err(self.unexpected(c, "':'")),
                None => return Err("the header ends before the closing '}'".to_string()),
            }
            let value = self.value()?;
            entries.push((key, value));
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some('}') => {}
                Some(c) => return Err(self.unexpected(c, "',' or '}'")),
                None => return Err("the header ends before the closing '}'".to_string()),
            }
        }
    }

    fn string(&mut self, quote: char) -> Result<Value, String> {
        let start = self.pos;
        self.pos += 1;
        let mut s = String::new();
        loop {
            match self.peek() {
                None => return Err(format!("string opened at character {start} is not closed")),
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(Value::Str(s));
                }
                Some('\\') => {
                    self.pos += 1;
                    let Some(c) = self.peek() else {
                        return Err(format!("string opened at character {start} is not closed"));
                    };
                    s.push(c);
                    self.pos += 1;
                }
                Some(c) => {
                    s.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn int(&mut self) -> Result<Value, String> {
        let start = self.pos;
        let mut n: usize = 0;
        while let Some(d) = self.peek().and_then(|c| c.to_digit(10)) {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(d as usize))
                .ok_or_else(|| format!("the integer at character {start} is too large"))?;
            self.pos += 1;
        }
        // Python 2 wrote long integers with an `L` suffix (`(10L, 28L)`).
        if matches!(self.peek(), Some('L' | 'l')) {
            self.pos += 1;
        }
        Ok(Value::Int(n))
    }

    fn name(&mut self) -> Result<Value, String> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.pos += 1;
        }
        let name: String = self.chars[start..self.pos].iter().collect();
        match name.as_str() {
            "True" => Ok(Value::Bool(true)),
            "False" => Ok(Value::Bool(false)),
            "None" => Ok(Value::None),
            _ => Err(format!(
                "unknown name '{name}' at character {start}, expected True, False or None"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `.npy` bytes with the header padded as NumPy does (total a multiple of 64, ending '\n').
    fn npy(major: u8, header: &str, payload: &[u8]) -> Vec<u8> {
        let prelude = if major == 1 { 10 } else { 12 };
        let mut h = header.to_string();
        while !(prelude + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend([major, 0]);
        if major == 1 {
            out.extend((h.len() as u16).to_le_bytes());
        } else {
            out.extend((h.len() as u32).to_le_bytes());
        }
        out.extend(h.as_bytes());
        out.extend(payload);
        out
    }

    #[test]
    fn parses_numpy_written_headers() {
        let h =
            parse_header("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3, 4), }    \n")
                .unwrap();
        assert_eq!(h.dtype, Dtype::U8);
        assert!(!h.fortran_order);
        assert_eq!(h.shape, vec![2, 3, 4]);
    }

    #[test]
    fn tolerates_odd_spacing_quotes_and_trailing_commas() {
        let h = parse_header(
            "{ \"shape\" :(5 ,)  ,'fortran_order':True,\n\t'descr':'<f8' , 'extra': [1, (2,), None],}",
        )
        .unwrap();
        assert_eq!(h.shape, vec![5]);
        assert!(h.fortran_order);
        assert_eq!(h.dtype, Dtype::F64);
        let h = parse_header("{'descr':'<f4','fortran_order':False,'shape':()}").unwrap();
        assert_eq!(h.shape, Vec::<usize>::new());
        let h =
            parse_header("{'descr': 'u1', 'fortran_order': False, 'shape': (10L, 3L)}").unwrap();
        assert_eq!(h.shape, vec![10, 3]);
    }

    #[test]
    fn v1_and_v2_files_parse_alike() {
        let header = "{'descr': '<u1', 'fortran_order': False, 'shape': (2, 2), }";
        for major in [1, 2, 3] {
            let bytes = npy(major, header, &[1, 2, 3, 4]);
            assert!(
                (bytes.len() - 4).is_multiple_of(64),
                "header padded to 64 bytes"
            );
            let a = parse_npy(&bytes, Path::new("a.npy")).unwrap();
            assert_eq!(a.shape, vec![2, 2]);
            assert_eq!(a.data, NpyData::U8(vec![1, 2, 3, 4]));
        }
    }

    #[test]
    fn malformed_headers_are_errors_not_panics() {
        let cases = [
            ("", "ends where a value was expected"),
            (
                "{'descr': '|u1', 'fortran_order': False",
                "ends before the closing '}'",
            ),
            ("{'descr' '|u1'}", "expected ':'"),
            ("{'descr': '|u1, 'shape': ()}", "expected ',' or '}'"),
            (
                "{'descr': 'u1', 'fortran_order': Maybe, 'shape': ()}",
                "unknown name 'Maybe'",
            ),
            ("['descr']", "not a dict"),
            ("{'fortran_order': False, 'shape': ()}", "no 'descr' key"),
            ("{'descr': 'u1', 'shape': ()}", "no 'fortran_order' key"),
            ("{'descr': 'u1', 'fortran_order': False}", "no 'shape' key"),
            (
                "{'descr': 'u1', 'fortran_order': 0, 'shape': ()}",
                "True or False",
            ),
            (
                "{'descr': 'u1', 'fortran_order': False, 'shape': ('a',)}",
                "integers",
            ),
            (
                "{'descr': 'u1', 'descr': 'u1', 'fortran_order': False, 'shape': ()}",
                "twice",
            ),
            (
                "{'descr': 'u1', 'fortran_order': False, 'shape': (-1,)}",
                "unexpected '-'",
            ),
            (
                "{'descr': 'u1', 'fortran_order': False, 'shape': (99999999999999999999999,)}",
                "too large",
            ),
            (
                "{'descr': 'u1', 'fortran_order': False, 'shape': ()} x",
                "end of the header",
            ),
            (&"(".repeat(100), "nested deeper"),
        ];
        for (header, want) in cases {
            let err = parse_header(header).unwrap_err();
            assert!(
                err.contains(want),
                "{header:?}: {err} should mention {want}"
            );
        }
    }

    #[test]
    fn dtypes_are_mapped_or_refused_with_a_hint() {
        for d in ["|u1", "u1", "<u1"] {
            assert_eq!(parse_dtype(d), Ok(Dtype::U8));
        }
        assert_eq!(parse_dtype("<f4"), Ok(Dtype::F32));
        assert_eq!(parse_dtype("<f8"), Ok(Dtype::F64));
        let cases = [
            (">f4", "big-endian"),
            (">f8", "big-endian"),
            ("<i8", "astype(np.uint8)"),
            ("<f2", "astype"),
            ("|b1", "astype"),
            ("|O", "object arrays"),
        ];
        for (d, hint) in cases {
            let err = parse_dtype(d).unwrap_err();
            assert!(
                err.starts_with(&format!("dtype '{d}' is not supported; ")),
                "{err}"
            );
            assert!(err.contains(hint), "{err} should mention {hint}");
        }
        let err = parse_header(
            "{'descr': [('a', '<f4'), ('b', '<i8')], 'fortran_order': False, 'shape': (3,)}",
        )
        .unwrap_err();
        assert!(
            err.contains("structured dtype [('a', '<f4'), ('b', '<i8')] is not supported"),
            "{err}"
        );
    }

    #[test]
    fn doubles_are_narrowed_and_bytes_counted_per_dtype() {
        let payload: Vec<u8> = [0.25f64, 1.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let bytes = npy(
            1,
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
            &payload,
        );
        let a = parse_npy(&bytes, Path::new("d.npy")).unwrap();
        assert_eq!(a.data, NpyData::F32(vec![0.25, 1.0]));
        let err = parse_npy(&bytes[..bytes.len() - 1], Path::new("d.npy"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("header declares shape (2,) = 16 bytes of data, the file holds 15"),
            "{err}"
        );
    }

    #[test]
    fn broken_preludes_name_the_problem() {
        let header = "{'descr': '|u1', 'fortran_order': False, 'shape': (1,), }";
        let good = npy(1, header, &[7]);
        let mut v4 = good.clone();
        v4[6] = 4;
        let cases: [(Vec<u8>, &str); 5] = [
            (b"\x93NUMP".to_vec(), "must start with the magic"),
            (b"\x93NUMPY".to_vec(), "truncated .npy prelude"),
            (good[..9].to_vec(), "truncated .npy prelude"),
            (good[..30].to_vec(), "truncated header"),
            (v4, "version 4.0 is not supported"),
        ];
        for (bytes, want) in cases {
            let err = parse_npy(&bytes, Path::new("bad.npy"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("bad.npy: "), "{err}");
            assert!(err.contains(want), "{err} should mention {want}");
        }
    }

    #[test]
    fn shapes_print_as_numpy_does() {
        assert_eq!(shape_str(&[]), "()");
        assert_eq!(shape_str(&[10]), "(10,)");
        assert_eq!(shape_str(&[10, 28, 28]), "(10, 28, 28)");
    }
}
