//! The NumPy `.npy` file format: bytes to a typed array, knowing nothing of images.
//!
//! This reader follows the NPY format specification (`numpy.lib.format`) by hand, so it needs no
//! Python and no extra crate:
//!
//! * the magic `\x93NUMPY`, a major and a minor version byte;
//! * the header length, a little-endian u16 (version 1.0) or u32 (versions 2.0 and 3.0);
//! * the header, a Python dict literal with the keys `'descr'`, `'fortran_order'` and `'shape'`,
//!   padded with spaces and ended by `'\n'` (Latin-1 text up to 2.0, UTF-8 in 3.0; parsed in
//!   [`super::header`]);
//! * the elements, row-major unless `fortran_order` is `True`.
//!
//! Only the element types image data comes in are read (unsigned bytes and little-endian floats);
//! everything else is refused with a message saying how to convert the array, rather than being
//! guessed at.

use std::path::Path;

use super::header::{Dtype, parse_header};
use crate::DataError;

/// The magic string every `.npy` file starts with.
const MAGIC: &[u8; 6] = b"\x93NUMPY";

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

/// `(10, 28, 28)`, `(10,)`, `()`: shapes as NumPy prints them, so users recognise them.
pub(super) fn shape_str(shape: &[usize]) -> String {
    match shape {
        [d] => format!("({d},)"),
        _ => {
            let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
            format!("({})", dims.join(", "))
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
