//! Pixel conversions shared by every source: square crop, resize, colour layout, scaling to
//! [-1, 1]. Private for now; the augmentation pipeline will grow here.

use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageBuffer, Luma, Pixel};

/// The centred square of side min(width, height): the model wants square images, and cropping
/// keeps the aspect ratio where a plain resize would stretch the content.
pub(crate) fn center_square(img: &DynamicImage) -> DynamicImage {
    let (w, h) = (img.width(), img.height());
    if w == h {
        return img.clone();
    }
    let side = w.min(h);
    img.crop_imm((w - side) / 2, (h - side) / 2, side, side)
}

/// Resizes an image buffer to `size`×`size` (no-op when it already is).
pub(crate) fn resize_square<P>(
    buf: ImageBuffer<P, Vec<P::Subpixel>>,
    size: u32,
    filter: FilterType,
) -> ImageBuffer<P, Vec<P::Subpixel>>
where
    P: Pixel + 'static,
    P::Subpixel: 'static,
{
    if buf.width() == size && buf.height() == size {
        buf
    } else {
        imageops::resize(&buf, size, size, filter)
    }
}

/// Maps a value in [0, 1] to the model's range [-1, 1].
#[inline]
pub(crate) fn to_signed(v: f32) -> f32 {
    v * 2.0 - 1.0
}

/// Converts any decoded image to the model layout: centre-cropped to a square, resized to
/// `size`×`size`, `channels` (1 = luma, 3 = RGB) planes, values in [-1, 1]. Alpha is dropped.
///
/// # Shapes
/// - returns: `[channels, size, size]`, flattened row-major (channel planes one after another)
pub(crate) fn dynamic_to_chw(
    img: &DynamicImage,
    size: usize,
    channels: usize,
    filter: FilterType,
) -> Vec<f32> {
    let square = center_square(img);
    let side = size as u32;
    // Resizing in the source's own pixel type first keeps a 12-megapixel photo from being blown
    // up to 32-bit floats before it is shrunk to a few thousand pixels.
    let small = if square.width() == side {
        square
    } else {
        square.resize_exact(side, side, filter)
    };
    let plane = size * size;
    let mut out = vec![0.0f32; channels * plane];
    if channels == 1 {
        for (o, p) in out.iter_mut().zip(small.to_luma32f().pixels()) {
            *o = to_signed(p.0[0]);
        }
    } else {
        let rgb = small.to_rgb32f();
        for (i, p) in rgb.pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + i] = to_signed(p.0[c]);
            }
        }
    }
    out
}

/// Converts one grayscale plane with values in [0, 1] to the model layout (resized, replicated
/// to `channels`, values in [-1, 1]).
///
/// # Shapes
/// - `plane`: `[side, side]`, row-major
/// - returns: `[channels, size, size]`, flattened
pub(crate) fn gray_plane_to_chw(
    plane: &[f32],
    side: usize,
    size: usize,
    channels: usize,
    filter: FilterType,
) -> Vec<f32> {
    let resized: Vec<f32> = if side == size {
        plane.to_vec()
    } else {
        let buf: ImageBuffer<Luma<f32>, Vec<f32>> =
            ImageBuffer::from_raw(side as u32, side as u32, plane.to_vec())
                .expect("plane length is side*side by construction");
        resize_square(buf, size as u32, filter).into_raw()
    };
    let mut out = Vec::with_capacity(channels * size * size);
    for _ in 0..channels {
        out.extend(resized.iter().map(|&v| to_signed(v)));
    }
    out
}
