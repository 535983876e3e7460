//! Decoding one image file robustly, for datasets scraped from anywhere.
//!
//! A training folder can hold anything: truncated downloads, HTML error pages saved as `.jpg`,
//! 16-bit scans, CMYK print files, transparent logos, and the occasional decompression bomb (a
//! few kilobytes that declare a 100000×100000 image). [`decode_image`] turns one such file into
//! either pixels the model can use or a [`SkipReason`] a person can act on, and it never panics
//! and never allocates more than [`DecodeOptions::max_pixels`] allow.
//!
//! - The format comes from the content, not the name: a JPEG saved as `.png` still loads, and a
//!   text file named `.png` is reported as such.
//! - The size is read from the header and checked before any pixel buffer exists; `image`'s
//!   own [`Limits`] back that check up inside the decoder.
//! - EXIF orientation is applied, so phone photos are upright.
//! - Alpha is composited onto a background colour: the model has no alpha channel. Colour comes
//!   out as 32-bit float RGB, grayscale as 16-bit luma, so 16-bit sources keep their precision.

use std::fmt;
use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use image::metadata::Orientation;
use image::{
    DynamicImage, ImageBuffer, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, Luma,
    Rgb,
};

use crate::png::PngHeader;

/// How far [`decode_image`] trusts a file.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DecodeOptions {
    /// The most pixels (width × height) a file may declare. A compressed file a few kilobytes
    /// long can declare gigapixels; checking the header against this before decoding keeps one
    /// hostile or broken file from exhausting memory. The default, 64 megapixels, is above any
    /// camera photo yet far below what would hurt a training machine.
    pub max_pixels: u64,
    /// The sRGB colour transparent pixels are composited onto. The model has no alpha channel,
    /// and dropping alpha instead would expose whatever colour happens to sit under transparent
    /// pixels (often black), which is not what the image shows.
    pub background: [u8; 3],
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            max_pixels: 64 * 1024 * 1024,
            // Transparent images are nearly always made to be shown on a white page.
            background: [255, 255, 255],
        }
    }
}

/// Why a file was skipped, worded for a "skipped FILE: REASON" line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipReason(pub String);

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SkipReason {}

/// The largest output pixel `image` decoders produce (RGBA, 32-bit float), in bytes: the
/// allocation budget handed to the decoders is derived from it so that every image within
/// `max_pixels` fits whatever its pixel type.
const MAX_BYTES_PER_PIXEL: u64 = 16;

/// Room for decoders' working buffers (rows, Huffman tables, palettes) besides the output.
const DECODER_SLACK_BYTES: u64 = 64 * 1024 * 1024;

/// Decodes `path` upright and without alpha, or says why it cannot: colour sources come back as
/// `ImageRgb32F` in [0, 1], grayscale ones as `ImageLuma16` (`image` 0.25 has no float luma, and
/// no gray source is deeper than 16 bits). `to_luma32f()` / `to_rgb32f()` on the result lose
/// nothing.
///
/// GIF and animated images give their first frame.
pub fn decode_image(path: &Path, options: &DecodeOptions) -> Result<DynamicImage, SkipReason> {
    // `image` decoders are meant never to panic, but this runs on arbitrary files from disk, and
    // one hostile file must cost one skipped image, not the training run.
    catch_unwind(AssertUnwindSafe(|| decode_unguarded(path, options))).unwrap_or_else(|_| {
        Err(SkipReason(
            "the image decoder panicked on this file".to_string(),
        ))
    })
}

fn decode_unguarded(path: &Path, options: &DecodeOptions) -> Result<DynamicImage, SkipReason> {
    let bytes = std::fs::read(path).map_err(|e| SkipReason(format!("cannot read: {e}")))?;
    if bytes.is_empty() {
        return Err(SkipReason("empty file (0 bytes)".to_string()));
    }

    // The content decides the format: a JPEG saved as .png still loads, and an HTML error page
    // saved as .jpg is reported as what it is.
    let guessed = ImageReader::new(Cursor::new(&bytes[..]))
        .with_guessed_format()
        .map_err(|e| SkipReason(format!("cannot read: {e}")))?
        .format();
    let Some(format) = guessed else {
        return Err(SkipReason(not_an_image(path)));
    };

    let (width, height) = declared_dimensions(&bytes, format, options)
        .map_err(|e| SkipReason(describe_error(format, &e)))?;
    check_size(width, height, options)?;

    if format == ImageFormat::Jpeg && !jpeg_has_end(&bytes) {
        return Err(SkipReason(
            "corrupt or truncated JPEG: no end-of-image marker after the image data (the file \
             was cut short)"
                .to_string(),
        ));
    }

    let limits = decoder_limits(options);
    let mut reader = ImageReader::with_format(Cursor::new(&bytes[..]), format);
    reader.limits(limits.clone());
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| SkipReason(describe_error(format, &e)))?;
    // The decoder is the authority on what it is about to allocate; the header probe above only
    // gave a friendlier message.
    let (width, height) = decoder.dimensions();
    check_size(width, height, options)?;
    // `DynamicImage::from_decoder` allocates the whole output without consulting the limits
    // (only `ImageReader::decode` does), so the output buffer is charged here.
    let mut budget = limits;
    budget
        .reserve(decoder.total_bytes())
        .map_err(|e| SkipReason(describe_error(format, &e)))?;
    // A broken EXIF block is no reason to lose the pixels.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img =
        DynamicImage::from_decoder(decoder).map_err(|e| SkipReason(describe_error(format, &e)))?;
    img.apply_orientation(orientation);
    Ok(flatten(img, options.background))
}

/// "not an image", naming the extension when the name promises an image, since then the file
/// is most likely a failed download or an error page saved under an image name.
fn not_an_image(path: &Path) -> String {
    let claimed = path
        .extension()
        .and_then(|e| e.to_str())
        .filter(|e| ImageFormat::from_extension(e).is_some());
    match claimed {
        Some(ext) => format!("named .{ext} but not an image: unrecognised content"),
        None => "not an image: unrecognised content".to_string(),
    }
}

/// The size the file declares, read without decoding any pixels.
///
/// PNG is read by hand ([`PngHeader::dimensions`]): `image`'s PNG decoder reports the size only
/// once it has reached the image data, so a header-only or truncated bomb would be reported as
/// "corrupt" rather than as too big. Other formats report their size as soon as their header is
/// parsed.
fn declared_dimensions(
    bytes: &[u8],
    format: ImageFormat,
    options: &DecodeOptions,
) -> Result<(u32, u32), ImageError> {
    if format == ImageFormat::Png
        && let Some(dims) = PngHeader::dimensions(bytes)
    {
        return Ok(dims);
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    // Only the allocation budget here: strict width/height limits would fail without saying
    // what size was declared, which is what the caller reports.
    let mut limits = Limits::default();
    limits.max_alloc = Some(alloc_budget(options));
    reader.limits(limits);
    reader.into_dimensions()
}

/// Whether a JPEG's image data is followed by its end-of-image marker.
///
/// The JPEG decoder forgives a file that stops mid-scan and fills the missing rows with gray; a
/// half-downloaded photo would then train the model on a gray band. Inside entropy-coded data a
/// 0xFF byte is always followed by 0x00 or a restart marker, so an `FF D9` after the first scan
/// header can only be the end marker. Header segments are skipped by their lengths, since an
/// EXIF thumbnail carries its own `FF D9`. Anything this walk does not understand is left for
/// the decoder to judge (`true`).
fn jpeg_has_end(bytes: &[u8]) -> bool {
    let mut pos = 2; // after SOI
    loop {
        if pos >= bytes.len() {
            return false;
        }
        if bytes[pos] != 0xff {
            return true;
        }
        while pos < bytes.len() && bytes[pos] == 0xff {
            pos += 1; // fill bytes
        }
        let Some(&marker) = bytes.get(pos) else {
            return false;
        };
        pos += 1;
        match marker {
            0x01 | 0xd0..=0xd7 => continue, // no length field
            0xd9 => return true,            // an end before any scan: the decoder's call
            _ => {}
        }
        let Some(len) = bytes.get(pos..pos + 2) else {
            return false;
        };
        pos += usize::from(u16::from_be_bytes([len[0], len[1]]));
        if pos > bytes.len() {
            return false;
        }
        if marker == 0xda {
            return bytes[pos..].windows(2).any(|w| w == [0xff, 0xd9]);
        }
    }
}

fn check_size(width: u32, height: u32, options: &DecodeOptions) -> Result<(), SkipReason> {
    if width == 0 || height == 0 {
        return Err(SkipReason(format!("zero-sized image ({width}×{height})")));
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > options.max_pixels {
        return Err(SkipReason(format!(
            "declares {width}×{height} = {pixels} pixels, over the limit of {} (data.max_pixels)",
            options.max_pixels
        )));
    }
    Ok(())
}

fn alloc_budget(options: &DecodeOptions) -> u64 {
    options
        .max_pixels
        .saturating_mul(MAX_BYTES_PER_PIXEL)
        .saturating_add(DECODER_SLACK_BYTES)
}

/// `image`'s own guard, in case a decoder discovers a larger size or allocation than its header
/// suggested (e.g. a TIFF whose strips disagree with its tags).
fn decoder_limits(options: &DecodeOptions) -> Limits {
    let side = u32::try_from(options.max_pixels).unwrap_or(u32::MAX);
    let mut limits = Limits::default();
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    limits.max_alloc = Some(alloc_budget(options));
    limits
}

fn format_name(format: ImageFormat) -> String {
    match format {
        ImageFormat::Png => "PNG".to_string(),
        ImageFormat::Jpeg => "JPEG".to_string(),
        ImageFormat::Gif => "GIF".to_string(),
        ImageFormat::WebP => "WebP".to_string(),
        ImageFormat::Tiff => "TIFF".to_string(),
        ImageFormat::Bmp => "BMP".to_string(),
        other => format!("{other:?}").to_uppercase(),
    }
}

fn describe_error(format: ImageFormat, error: &ImageError) -> String {
    let format = format_name(format);
    match error {
        ImageError::Limits(e) => format!("{format} over the decoding limits: {e}"),
        ImageError::Unsupported(e) => format!("unsupported {format}: {e}"),
        other => format!("corrupt or truncated {format}: {other}"),
    }
}

/// Straight-alpha "over" onto an opaque background: `a·c + (1 − a)·bg`, all in [0, 1] and in
/// the image's own (sRGB-encoded) values, which is how browsers show a transparent image.
#[inline]
fn composite(c: f32, a: f32, bg: f32) -> f32 {
    let a = unit(a);
    unit(a * unit(c) + (1.0 - a) * bg)
}

/// Clamps to [0, 1]; NaN (possible in float TIFFs) becomes 0. Integer sources are in range
/// already; float ones need not be.
#[inline]
fn unit(v: f32) -> f32 {
    if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) }
}

/// Luma of an sRGB colour with Rec. 709 weights, the ones `image` itself uses for RGB → luma,
/// so that a gray+alpha image over a coloured background matches its RGB counterpart's luma.
fn background_luma(bg: [u8; 3]) -> f32 {
    let [r, g, b] = bg.map(|v| f32::from(v) / 255.0);
    0.2126 * r + 0.7152 * g + 0.0722 * b
}

/// Drops alpha by compositing onto `background`; colour comes out as 32-bit float RGB,
/// grayscale as 16-bit luma.
///
/// Grayscale stays single-channel (a third of the memory, and the caller can tell it was gray).
/// `image` 0.25 has no 32-bit float luma variant, and 16 bits is lossless here: no gray format
/// it decodes is deeper than 16 bits, so only a composited gray+alpha pixel is rounded, to the
/// nearest 1/65535 (far below one 8-bit step).
fn flatten(img: DynamicImage, background: [u8; 3]) -> DynamicImage {
    let color = img.color();
    let (width, height) = (img.width(), img.height());
    match (color.has_color(), color.has_alpha()) {
        (true, false) => {
            let mut rgb = img.into_rgb32f();
            rgb.pixels_mut().for_each(|p| p.0 = p.0.map(unit));
            DynamicImage::ImageRgb32F(rgb)
        }
        (false, false) => DynamicImage::ImageLuma16(img.into_luma16()),
        (true, true) => {
            let bg = background.map(|v| f32::from(v) / 255.0);
            let rgba = img.into_rgba32f();
            let out = ImageBuffer::from_fn(width, height, |x, y| {
                let [r, g, b, a] = rgba.get_pixel(x, y).0;
                Rgb([
                    composite(r, a, bg[0]),
                    composite(g, a, bg[1]),
                    composite(b, a, bg[2]),
                ])
            });
            DynamicImage::ImageRgb32F(out)
        }
        (false, true) => {
            let bg = background_luma(background);
            let la = img.into_luma_alpha16();
            let out = ImageBuffer::from_fn(width, height, |x, y| {
                let [l, a] = la.get_pixel(x, y).0.map(|v| f32::from(v) / 65535.0);
                Luma([to_u16(composite(l, a, bg))])
            });
            DynamicImage::ImageLuma16(out)
        }
    }
}

/// [0, 1] → the nearest 16-bit value.
#[inline]
fn to_u16(v: f32) -> u16 {
    (unit(v) * 65535.0).round() as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{LumaA, Rgba, RgbaImage};

    #[test]
    fn opaque_keeps_the_colour_and_transparent_shows_the_background() {
        assert_eq!(composite(0.25, 1.0, 0.9), 0.25);
        assert_eq!(composite(0.25, 0.0, 0.9), 0.9);
    }

    #[test]
    fn half_alpha_is_the_mean_of_colour_and_background() {
        assert!((composite(0.2, 0.5, 1.0) - 0.6).abs() < 1e-7);
        assert!((composite(1.0, 0.5, 0.0) - 0.5).abs() < 1e-7);
    }

    #[test]
    fn out_of_range_and_nan_values_are_clamped() {
        assert_eq!(composite(2.0, 1.0, 0.0), 1.0);
        assert_eq!(composite(-1.0, 1.0, 0.5), 0.0);
        assert_eq!(composite(0.5, 1.5, 0.0), 0.5);
        assert_eq!(composite(f32::NAN, 1.0, 0.3), 0.0);
        assert_eq!(composite(0.5, f32::NAN, 0.3), 0.3);
    }

    #[test]
    fn rgba_is_composited_per_channel_onto_the_background() {
        let mut img = RgbaImage::new(2, 1);
        img.put_pixel(0, 0, Rgba([255, 0, 0, 51])); // alpha 0.2
        img.put_pixel(1, 0, Rgba([10, 20, 30, 255]));
        let out = flatten(DynamicImage::ImageRgba8(img), [0, 255, 0]);
        let DynamicImage::ImageRgb32F(rgb) = out else {
            panic!("expected RGB 32F, got {:?}", out.color());
        };
        let p = rgb.get_pixel(0, 0).0;
        assert!((p[0] - 0.2).abs() < 1e-6, "{p:?}");
        assert!(p[1] - 0.8 < 1e-6 && p[1] - 0.8 > -1e-6, "{p:?}");
        assert!(p[2].abs() < 1e-6, "{p:?}");
        let q = rgb.get_pixel(1, 0).0;
        assert!((q[0] - 10.0 / 255.0).abs() < 1e-6);
        assert!((q[2] - 30.0 / 255.0).abs() < 1e-6);
    }

    #[test]
    fn gray_alpha_uses_the_background_luma() {
        let img = ImageBuffer::from_pixel(1, 1, LumaA([0u8, 0]));
        let out = flatten(DynamicImage::ImageLumaA8(img), [255, 0, 0]);
        let DynamicImage::ImageLuma16(luma) = out else {
            panic!("expected luma 16, got {:?}", out.color());
        };
        assert_eq!(luma.get_pixel(0, 0).0[0], to_u16(0.2126));
        assert!((background_luma([255, 255, 255]) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn sixteen_bit_gray_is_not_rounded_through_eight_bits() {
        let img = ImageBuffer::from_pixel(1, 1, Luma([257u16 * 128 + 1]));
        let DynamicImage::ImageLuma16(luma) = flatten(DynamicImage::ImageLuma16(img), [0; 3])
        else {
            panic!("expected luma 16");
        };
        assert_eq!(luma.get_pixel(0, 0).0[0], 257 * 128 + 1);
    }

    #[test]
    fn jpeg_end_is_found_after_the_scan_and_not_in_a_thumbnail() {
        // SOI, an APP1 whose payload holds FF D9 (like an EXIF thumbnail), SOS, data, EOI.
        let head = [
            0xff, 0xd8, 0xff, 0xe1, 0x00, 0x04, 0xff, 0xd9, 0xff, 0xda, 0x00, 0x02,
        ];
        let mut whole = head.to_vec();
        whole.extend_from_slice(&[0x12, 0xff, 0x00, 0x34, 0xff, 0xd0, 0x56, 0xff, 0xd9]);
        assert!(jpeg_has_end(&whole));
        // Trailing bytes after the end marker (some phones append their own data) are fine.
        let mut trailer = whole.clone();
        trailer.extend_from_slice(b"SEFT trailer");
        assert!(jpeg_has_end(&trailer));
        assert!(!jpeg_has_end(&whole[..whole.len() - 2]));
        assert!(!jpeg_has_end(&head[..7]), "cut inside a header segment");
    }

    #[test]
    fn default_options_guard_against_bombs_and_use_white() {
        let o = DecodeOptions::default();
        assert_eq!(o.max_pixels, 64 * 1024 * 1024);
        assert_eq!(o.background, [255, 255, 255]);
    }
}
