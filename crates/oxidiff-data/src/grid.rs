//! Sample grids: a batch of images tiled into one PNG.

use std::path::Path;

use image::{DynamicImage, GrayImage, ImageFormat, Luma, Rgb, RgbImage};

use crate::DataError;

/// Pixels between tiles and around the border.
pub const GRID_PADDING: u32 = 2;
/// Padding grey level: mid-grey stays visible against both dark (digits) and light samples,
/// where torchvision's black padding vanishes against black digit backgrounds.
const PAD_VALUE: u8 = 128;

/// Tiles `n` images into a grid of `nrow` images per row (torchvision's `make_grid` layout: the
/// last row may be short), each tile enlarged `scale`× by pixel repetition so 8×8 samples are
/// visible, with [`GRID_PADDING`] grey pixels between tiles and around the edge.
///
/// Values are mapped from [-1, 1] to 0..=255 and clipped (NaN becomes 0). `nrow` and `scale`
/// of 0 are treated as 1.
///
/// Width = cols·(size·scale + 2) + 2, height = rows·(size·scale + 2) + 2, with
/// cols = min(nrow, n) and rows = ⌈n / nrow⌉.
///
/// # Shapes
/// - `images`: `[n, channels, size, size]` flattened, row-major
/// - returns: a Luma8 image for 1 channel, Rgb8 for 3
///
/// # Panics
/// If `channels` is not 1 or 3 or `images` holds fewer than n·channels·size² values.
/// [`save_grid`] checks both and returns an error instead.
pub fn tensor_to_grid_image(
    images: &[f32],
    n: usize,
    channels: usize,
    size: usize,
    nrow: usize,
    scale: u32,
) -> DynamicImage {
    assert!(
        channels == 1 || channels == 3,
        "tensor_to_grid_image: channels must be 1 or 3, got {channels}"
    );
    let per_image = channels * size * size;
    assert!(
        images.len() >= n * per_image,
        "tensor_to_grid_image: {} values for {n} images of {per_image}",
        images.len()
    );
    let nrow = nrow.max(1);
    let scale = scale.max(1);
    let cols = nrow.min(n).max(1) as u32;
    let rows = n.div_ceil(nrow).max(1) as u32;
    let tile = size as u32 * scale;
    let width = cols * (tile + GRID_PADDING) + GRID_PADDING;
    let height = rows * (tile + GRID_PADDING) + GRID_PADDING;
    let plane = size * size;

    // The pixel at (x, y) of image k, channel c, as a byte.
    let byte = |k: usize, c: usize, x: u32, y: u32| -> u8 {
        let v = images[k * per_image + c * plane + y as usize * size + x as usize];
        // [-1, 1] → [0, 255]; `as u8` saturates and sends NaN to 0.
        ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
    };
    let origin = |k: usize| -> (u32, u32) {
        let (col, row) = ((k % nrow) as u32, (k / nrow) as u32);
        (
            GRID_PADDING + col * (tile + GRID_PADDING),
            GRID_PADDING + row * (tile + GRID_PADDING),
        )
    };

    if channels == 1 {
        let mut out = GrayImage::from_pixel(width, height, Luma([PAD_VALUE]));
        for k in 0..n {
            let (ox, oy) = origin(k);
            for ty in 0..tile {
                for tx in 0..tile {
                    let v = byte(k, 0, tx / scale, ty / scale);
                    out.put_pixel(ox + tx, oy + ty, Luma([v]));
                }
            }
        }
        DynamicImage::ImageLuma8(out)
    } else {
        let mut out = RgbImage::from_pixel(width, height, Rgb([PAD_VALUE; 3]));
        for k in 0..n {
            let (ox, oy) = origin(k);
            for ty in 0..tile {
                for tx in 0..tile {
                    let (x, y) = (tx / scale, ty / scale);
                    let px = [byte(k, 0, x, y), byte(k, 1, x, y), byte(k, 2, x, y)];
                    out.put_pixel(ox + tx, oy + ty, Rgb(px));
                }
            }
        }
        DynamicImage::ImageRgb8(out)
    }
}

/// Writes [`tensor_to_grid_image`]'s grid to `path` as PNG, atomically: the bytes go to a
/// temporary file in the same folder, which is fsynced and then renamed over `path`, so a crash
/// leaves either the old file or the new one, never half a PNG.
///
/// # Shapes
/// - `images`: `[n, channels, size, size]` flattened
///
/// # Errors
/// [`DataError::InvalidArgument`] for inconsistent arguments (n, size or nrow 0, channels not 1
/// or 3, wrong buffer length); [`DataError::Io`] / [`DataError::Image`] naming the file when
/// encoding or writing fails.
pub fn save_grid(
    path: &Path,
    images: &[f32],
    n: usize,
    channels: usize,
    size: usize,
    nrow: usize,
    scale: u32,
) -> Result<(), DataError> {
    let bad = |message: String| DataError::InvalidArgument {
        what: format!("sample grid {}", path.display()),
        message,
    };
    if channels != 1 && channels != 3 {
        return Err(bad(format!("channels is {channels}; must be 1 or 3")));
    }
    if n == 0 || size == 0 || nrow == 0 || scale == 0 {
        return Err(bad(format!(
            "n, size, nrow and scale must all be at least 1 (got n={n}, size={size}, \
             nrow={nrow}, scale={scale})"
        )));
    }
    let expected = n * channels * size * size;
    if images.len() != expected {
        return Err(bad(format!(
            "{} values given, {n}×{channels}×{size}×{size} = {expected} expected",
            images.len()
        )));
    }
    // PNG's limit and a sanity bound: a mistaken scale should not allocate gigabytes.
    let side = |count: usize| (count as u64) * (size as u64 * scale as u64 + 2) + 2;
    let (w, h) = (side(nrow.min(n)), side(n.div_ceil(nrow)));
    if w.saturating_mul(h) > (1 << 28) {
        return Err(bad(format!(
            "the grid would be {w}×{h} pixels; lower scale or n"
        )));
    }

    let grid = tensor_to_grid_image(images, n, channels, size, nrow, scale);
    write_png(path, &grid)
}

/// Writes one image at its own size (no padding, no scaling) as PNG, atomically.
///
/// # Shapes
/// - `image`: `[channels, size, size]` flattened, values in [-1, 1]
///
/// # Errors
/// As [`save_grid`].
pub fn save_png(path: &Path, image: &[f32], channels: usize, size: usize) -> Result<(), DataError> {
    // Validated by save_grid's rules: one tile of a one-image grid, cut out of its padding.
    if channels != 1 && channels != 3 || size == 0 || image.len() != channels * size * size {
        return Err(DataError::InvalidArgument {
            what: format!("image {}", path.display()),
            message: format!(
                "{} values for a {channels}×{size}×{size} image (channels must be 1 or 3)",
                image.len()
            ),
        });
    }
    let tile = tensor_to_grid_image(image, 1, channels, size, 1, 1).crop_imm(
        GRID_PADDING,
        GRID_PADDING,
        size as u32,
        size as u32,
    );
    write_png(path, &tile)
}

fn write_png(path: &Path, image: &DynamicImage) -> Result<(), DataError> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut bytes), ImageFormat::Png)
        .map_err(|e| DataError::Image {
            path: path.to_path_buf(),
            message: format!("PNG encoding failed: {e}"),
        })?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` atomically ([`replace_file`](crate::replace_file)).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    crate::replace_file(path, bytes).map_err(|e| DataError::io(path, e))
}
