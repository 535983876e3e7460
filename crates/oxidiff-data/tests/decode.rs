//! The bad-input corpus for `decode_image`: every file a scraped dataset can throw at it, built
//! in a temporary folder, each with the reason it must give (or the pixels it must return).
//!
//! `CMYK_JPEG` below was generated with Pillow; regenerate it from the repository root with
//!
//!     /opt/refenv/bin/python tools/reference/cmyk_jpeg.py
//!
//! Everything else is written here with `image`'s encoders or byte by byte.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use image::codecs::gif::GifEncoder;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::webp::WebPEncoder;
use image::{
    DynamicImage, Frame, ImageBuffer, ImageEncoder, ImageFormat, Luma, Rgb, RgbImage, Rgba,
    RgbaImage,
};
use oxidiff_data::{DecodeOptions, SkipReason, decode_image};

/// Records the largest single allocation each thread makes, so that the bomb test can show that
/// nothing near the declared size was ever requested (tests run on parallel threads; a global
/// peak would mix them up).
struct LargestAllocation;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the allocator is also called while thread-locals are being torn down.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

const CMYK_JPEG: [u8; 389] = [
    0xff, 0xd8, 0xff, 0xee, 0x00, 0x0e, 0x41, 0x64, 0x6f, 0x62, 0x65, 0x00, 0x64, 0x00, 0x00, 0x00,
    0x00, 0x00, 0xff, 0xdb, 0x00, 0x43, 0x00, 0x02, 0x01, 0x01, 0x01, 0x01, 0x01, 0x02, 0x01, 0x01,
    0x01, 0x02, 0x02, 0x02, 0x02, 0x02, 0x04, 0x03, 0x02, 0x02, 0x02, 0x02, 0x05, 0x04, 0x04, 0x03,
    0x04, 0x06, 0x05, 0x06, 0x06, 0x06, 0x05, 0x06, 0x06, 0x06, 0x07, 0x09, 0x08, 0x06, 0x07, 0x09,
    0x07, 0x06, 0x06, 0x08, 0x0b, 0x08, 0x09, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x06, 0x08, 0x0b, 0x0c,
    0x0b, 0x0a, 0x0c, 0x09, 0x0a, 0x0a, 0x0a, 0xff, 0xc0, 0x00, 0x14, 0x08, 0x00, 0x02, 0x00, 0x04,
    0x04, 0x43, 0x11, 0x00, 0x4d, 0x11, 0x00, 0x59, 0x11, 0x00, 0x4b, 0x11, 0x00, 0xff, 0xc4, 0x00,
    0x1f, 0x00, 0x00, 0x01, 0x05, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0xff, 0xc4,
    0x00, 0xb5, 0x10, 0x00, 0x02, 0x01, 0x03, 0x03, 0x02, 0x04, 0x03, 0x05, 0x05, 0x04, 0x04, 0x00,
    0x00, 0x01, 0x7d, 0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13,
    0x51, 0x61, 0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15,
    0x52, 0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25,
    0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46,
    0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66,
    0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86,
    0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4,
    0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2,
    0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9,
    0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5,
    0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xff, 0xda, 0x00, 0x0e, 0x04, 0x43, 0x00, 0x4d, 0x00, 0x59, 0x00,
    0x4b, 0x00, 0x00, 0x3f, 0x00, 0xfb, 0xf7, 0xfe, 0x0d, 0x71, 0xff, 0x00, 0x94, 0x14, 0x7c, 0x0c,
    0xff, 0x00, 0xb9, 0x9b, 0xff, 0x00, 0x52, 0x7d, 0x5a, 0xbf, 0x7f, 0x2b, 0xf3, 0xfb, 0xfe, 0x0e,
    0x8e, 0xff, 0x00, 0x94, 0xeb, 0xfc, 0x73, 0xff, 0x00, 0xb9, 0x67, 0xff, 0x00, 0x51, 0x8d, 0x26,
    0xbf, 0x7f, 0x2b, 0xff, 0xd9,
];

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn reason(path: &Path) -> String {
    reason_with(path, &DecodeOptions::default())
}

fn reason_with(path: &Path, options: &DecodeOptions) -> String {
    match decode_image(path, options) {
        Ok(img) => panic!(
            "{} decoded ({}×{} {:?}) but should have been skipped",
            path.display(),
            img.width(),
            img.height(),
            img.color()
        ),
        Err(SkipReason(r)) => r,
    }
}

fn decode(path: &Path) -> DynamicImage {
    decode_image(path, &DecodeOptions::default())
        .unwrap_or_else(|r| panic!("{} skipped: {r}", path.display()))
}

fn rgb32(img: DynamicImage) -> ImageBuffer<Rgb<f32>, Vec<f32>> {
    match img {
        DynamicImage::ImageRgb32F(b) => b,
        other => panic!("expected RGB 32F, got {:?}", other.color()),
    }
}

/// Grayscale comes back single-channel, as 16-bit luma (`image` 0.25 has no float luma).
fn luma32(img: DynamicImage) -> ImageBuffer<Luma<f32>, Vec<f32>> {
    match img {
        DynamicImage::ImageLuma16(_) => img.to_luma32f(),
        other => panic!("expected 16-bit luma, got {:?}", other.color()),
    }
}

/// Pseudo-random RGB content: compresses badly, so that half a file is well inside the data.
fn noise(width: u32, height: u32) -> RgbImage {
    let mut state = 0x2545_f491_u32;
    RgbImage::from_fn(width, height, |_, _| {
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        };
        Rgb([next(), next(), next()])
    })
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];

fn ihdr(width: u32, height: u32, bit_depth: u8, color_type: u8) -> Vec<u8> {
    let mut data = Vec::new();
    data.extend_from_slice(&width.to_be_bytes());
    data.extend_from_slice(&height.to_be_bytes());
    data.extend_from_slice(&[bit_depth, color_type, 0, 0, 0]);
    data
}

#[test]
fn crc32_matches_the_png_specification() {
    // The CRC of the IEND chunk (type, no data) every PNG ends with.
    assert_eq!(crc32(b"IEND"), 0xae42_6082);
}

#[test]
fn a_missing_file_cannot_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let r = reason(&dir.path().join("nope.png"));
    assert!(r.starts_with("cannot read: "), "{r}");
}

#[test]
fn a_zero_byte_file_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "empty.jpg", &[]);
    assert_eq!(reason(&path), "empty file (0 bytes)");
}

#[test]
fn a_text_file_named_png_is_not_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let html = b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n";
    let path = write(dir.path(), "cat.png", html);
    assert_eq!(
        reason(&path),
        "named .png but not an image: unrecognised content"
    );
    let path = write(dir.path(), "notes.txt", html);
    assert_eq!(reason(&path), "not an image: unrecognised content");
}

#[test]
fn a_truncated_png_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = encode(&DynamicImage::ImageRgb8(noise(64, 64)), ImageFormat::Png);
    let path = write(dir.path(), "half.png", &bytes[..bytes.len() / 2]);
    let r = reason(&path);
    assert!(r.starts_with("corrupt or truncated PNG: "), "{r}");
}

#[test]
fn a_truncated_jpeg_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = encode(&DynamicImage::ImageRgb8(noise(64, 64)), ImageFormat::Jpeg);
    let path = write(dir.path(), "half.jpg", &bytes[..bytes.len() / 2]);
    let r = reason(&path);
    assert!(r.starts_with("corrupt or truncated JPEG: "), "{r}");
}

#[test]
fn content_decides_the_format_not_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = encode(&DynamicImage::ImageRgb8(noise(8, 8)), ImageFormat::Png);
    let path = write(dir.path(), "really_a_png.jpg", &bytes);
    assert_eq!(decode(&path).width(), 8);
}

#[test]
fn sixteen_bit_gray_keeps_its_precision() {
    let dir = tempfile::tempdir().unwrap();
    let img = ImageBuffer::from_fn(2, 1, |x, _| Luma([if x == 0 { 65535u16 } else { 32768 }]));
    let path = dir.path().join("deep.png");
    DynamicImage::ImageLuma16(img).save(&path).unwrap();
    let luma = luma32(decode(&path));
    assert!((luma.get_pixel(0, 0).0[0] - 1.0).abs() < 1e-6);
    // 32768/65535 = 0.500007…; through 8 bits it would be 128/255 = 0.50196.
    let half = luma.get_pixel(1, 0).0[0];
    assert!((half - 32768.0 / 65535.0).abs() < 1e-6, "{half}");
}

#[test]
fn a_cmyk_jpeg_decodes_to_plausible_rgb() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "print.jpg", &CMYK_JPEG);
    match decode_image(&path, &DecodeOptions::default()) {
        Ok(img) => {
            assert_eq!((img.width(), img.height()), (4, 2));
            let rgb = rgb32(img);
            let close =
                |p: [f32; 3], want: [f32; 3]| p.iter().zip(want).all(|(a, b)| (a - b).abs() < 0.1);
            let (cyan, yellow) = (rgb.get_pixel(0, 0).0, rgb.get_pixel(3, 1).0);
            assert!(close(cyan, [0.0, 1.0, 1.0]), "cyan came back as {cyan:?}");
            assert!(
                close(yellow, [1.0, 1.0, 0.0]),
                "yellow came back as {yellow:?}"
            );
        }
        // Acceptable too, as long as it says why instead of panicking.
        Err(SkipReason(r)) => assert!(r.contains("JPEG"), "{r}"),
    }
}

#[test]
fn palette_transparency_is_composited_onto_the_background() {
    // 2×1, 8-bit palette: index 0 is red and fully transparent, index 1 is blue and opaque.
    let mut png = PNG_SIGNATURE.to_vec();
    png_chunk(&mut png, b"IHDR", &ihdr(2, 1, 8, 3));
    png_chunk(&mut png, b"PLTE", &[255, 0, 0, 0, 0, 255]);
    png_chunk(&mut png, b"tRNS", &[0]); // entries past the end of tRNS are opaque
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&[0, 0, 1]).unwrap(); // filter type 0, then the two indices
    png_chunk(&mut png, b"IDAT", &z.finish().unwrap());
    png_chunk(&mut png, b"IEND", &[]);

    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "logo.png", &png);
    let options = DecodeOptions {
        background: [0, 255, 0],
        ..DecodeOptions::default()
    };
    let rgb = rgb32(decode_image(&path, &options).unwrap());
    assert_eq!(
        rgb.get_pixel(0, 0).0,
        [0.0, 1.0, 0.0],
        "transparent red shows the background"
    );
    assert_eq!(rgb.get_pixel(1, 0).0, [0.0, 0.0, 1.0]);
    // The default background is white.
    let rgb = rgb32(decode(&path));
    assert_eq!(rgb.get_pixel(0, 0).0, [1.0, 1.0, 1.0]);
}

#[test]
fn a_one_pixel_image_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dot.png");
    RgbImage::from_pixel(1, 1, Rgb([0, 51, 255]))
        .save(&path)
        .unwrap();
    let rgb = rgb32(decode(&path));
    assert_eq!(rgb.dimensions(), (1, 1));
    assert!((rgb.get_pixel(0, 0).0[1] - 0.2).abs() < 1e-6);
}

#[test]
fn a_bomb_header_is_rejected_before_any_large_allocation() {
    // Signature and IHDR only: the file is 33 bytes and declares 10 gigapixels.
    let mut png = PNG_SIGNATURE.to_vec();
    png_chunk(&mut png, b"IHDR", &ihdr(100_000, 100_000, 8, 6));
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "bomb.png", &png);

    LARGEST.with(|l| l.set(0));
    let r = reason(&path);
    let largest = LARGEST.with(|l| l.get());
    assert_eq!(
        r,
        "declares 100000×100000 = 10000000000 pixels, over the limit of 67108864 \
         (data.max_pixels)"
    );
    assert!(largest < 1 << 20, "largest allocation was {largest} bytes");
}

#[test]
fn a_bomb_with_image_data_is_rejected_too() {
    // A real (if tiny) compressed stream behind the huge header: the decoder must never see it.
    let mut png = PNG_SIGNATURE.to_vec();
    png_chunk(&mut png, b"IHDR", &ihdr(100_000, 100_000, 8, 0));
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&vec![0u8; 100_001 * 16]).unwrap();
    png_chunk(&mut png, b"IDAT", &z.finish().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "bomb2.png", &png);
    LARGEST.with(|l| l.set(0));
    let r = reason(&path);
    assert!(
        r.starts_with("declares 100000×100000 = 10000000000 pixels"),
        "{r}"
    );
    assert!(LARGEST.with(|l| l.get()) < 1 << 20);
}

#[test]
fn the_pixel_limit_applies_to_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let small = DecodeOptions {
        max_pixels: 100,
        ..DecodeOptions::default()
    };
    for (name, format) in [
        ("big.bmp", ImageFormat::Bmp),
        ("big.jpg", ImageFormat::Jpeg),
        ("big.tif", ImageFormat::Tiff),
        ("big.gif", ImageFormat::Gif),
        ("big.webp", ImageFormat::WebP),
        ("big.png", ImageFormat::Png),
    ] {
        let bytes = encode(&DynamicImage::ImageRgb8(noise(20, 10)), format);
        let path = write(dir.path(), name, &bytes);
        assert_eq!(
            reason_with(&path, &small),
            "declares 20×10 = 200 pixels, over the limit of 100 (data.max_pixels)",
            "{name}"
        );
    }
}

#[test]
fn a_zero_sized_header_is_reported() {
    let mut png = PNG_SIGNATURE.to_vec();
    png_chunk(&mut png, b"IHDR", &ihdr(0, 7, 8, 2));
    png_chunk(&mut png, b"IEND", &[]);
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "nothing.png", &png);
    assert_eq!(reason(&path), "zero-sized image (0×7)");
}

#[test]
fn half_alpha_rgba_is_composited_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ghost.png");
    RgbaImage::from_pixel(3, 2, Rgba([255, 0, 100, 128]))
        .save(&path)
        .unwrap();
    let options = DecodeOptions {
        background: [0, 0, 200],
        ..DecodeOptions::default()
    };
    let rgb = rgb32(decode_image(&path, &options).unwrap());
    let a = 128.0 / 255.0;
    let want = [a, 0.0, a * 100.0 / 255.0 + (1.0 - a) * 200.0 / 255.0];
    for p in rgb.pixels() {
        for (got, want) in p.0.iter().zip(want) {
            assert!((got - want).abs() <= 1.0 / 255.0, "{:?} vs {want:?}", p.0);
        }
    }
}

fn assert_round_trip(format: ImageFormat, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let src = noise(5, 3);
    let path = write(
        dir.path(),
        name,
        &encode(&DynamicImage::ImageRgb8(src.clone()), format),
    );
    let rgb = rgb32(decode(&path));
    assert_eq!(rgb.dimensions(), (5, 3), "{name}");
    for (got, want) in rgb.pixels().zip(src.pixels()) {
        for c in 0..3 {
            let want = f32::from(want.0[c]) / 255.0;
            assert!(
                (got.0[c] - want).abs() < 1e-6,
                "{name}: {:?} vs {want}",
                got.0
            );
        }
    }
}

#[test]
fn bmp_round_trips() {
    assert_round_trip(ImageFormat::Bmp, "a.bmp");
}

#[test]
fn tiff_round_trips() {
    assert_round_trip(ImageFormat::Tiff, "a.tiff");
}

#[test]
fn lossless_webp_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let src = noise(5, 3);
    let mut bytes = Vec::new();
    WebPEncoder::new_lossless(&mut bytes)
        .write_image(src.as_raw(), 5, 3, image::ExtendedColorType::Rgb8)
        .unwrap();
    let path = write(dir.path(), "a.webp", &bytes);
    let rgb = rgb32(decode(&path));
    for (got, want) in rgb.pixels().zip(src.pixels()) {
        for c in 0..3 {
            assert!((got.0[c] - f32::from(want.0[c]) / 255.0).abs() < 1e-6);
        }
    }
}

#[test]
fn a_gif_gives_its_first_frame() {
    let dir = tempfile::tempdir().unwrap();
    let red = RgbaImage::from_pixel(4, 3, Rgba([255, 0, 0, 255]));
    let blue = RgbaImage::from_pixel(4, 3, Rgba([0, 0, 255, 255]));
    let mut bytes = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut bytes);
        encoder
            .encode_frames([Frame::new(red), Frame::new(blue)])
            .unwrap();
    }
    let path = write(dir.path(), "anim.gif", &bytes);
    let rgb = rgb32(decode(&path));
    assert_eq!(rgb.dimensions(), (4, 3));
    assert!(rgb.pixels().all(|p| p.0 == [1.0, 0.0, 0.0]));
}

/// An APP1 segment holding a little-endian EXIF block with one tag, Orientation = `value`.
fn exif_orientation_segment(value: u16) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"II");
    tiff.extend_from_slice(&42u16.to_le_bytes());
    tiff.extend_from_slice(&8u32.to_le_bytes()); // offset of the first IFD
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes()); // count
    tiff.extend_from_slice(&value.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]); // value padded to 4 bytes
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(&tiff);
    let mut segment = vec![0xff, 0xe1];
    segment.extend_from_slice(&(payload.len() as u16 + 2).to_be_bytes());
    segment.extend_from_slice(&payload);
    segment
}

#[test]
fn exif_orientation_is_applied() {
    // 16×8, left half black, right half white; Orientation 6 = rotate 90° clockwise to view.
    let img = RgbImage::from_fn(
        16,
        8,
        |x, _| if x < 8 { Rgb([0; 3]) } else { Rgb([255; 3]) },
    );
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, 95)
        .encode_image(&img)
        .unwrap();
    let mut with_exif = jpeg[..2].to_vec(); // SOI
    with_exif.extend_from_slice(&exif_orientation_segment(6));
    with_exif.extend_from_slice(&jpeg[2..]);

    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "phone.jpg", &with_exif);
    let out = rgb32(decode(&path));
    assert_eq!(out.dimensions(), (8, 16), "width and height swapped");
    // Turned clockwise, the left (black) half ends up on top.
    assert!(out.get_pixel(4, 2).0[0] < 0.2, "{:?}", out.get_pixel(4, 2));
    assert!(
        out.get_pixel(4, 13).0[0] > 0.8,
        "{:?}",
        out.get_pixel(4, 13)
    );

    // Without the tag the same pixels stay as they are.
    let path = write(dir.path(), "plain.jpg", &jpeg);
    assert_eq!(decode(&path).width(), 16);
}
