//! The header of a PNG file, read by hand without decoding anything: the decoder needs a PNG's
//! declared size before `image` will say it (to refuse decompression bombs by name), and the
//! trainer's monitor and report only want the size and channel count of a PNG they wrote.

/// The 8 bytes every PNG file starts with (PNG specification, section 5.2).
const SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

/// What a PNG's IHDR chunk declares. The specification fixes IHDR as the first chunk, so its
/// fields sit at fixed offsets: width at bytes 16..20, height at 20..24 (big-endian), bit depth
/// at 24 and colour type at 25.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PngHeader {
    pub width: u32,
    pub height: u32,
    /// Channels of the image as shown, from the colour type: 1 (gray), 2 (gray + alpha),
    /// 3 (RGB, and palette images, which are shown as RGB), 4 (RGBA).
    pub channels: u32,
}

impl PngHeader {
    /// The header of the PNG `bytes` start with, or `None` when they do not start with the
    /// PNG signature and an IHDR chunk up to its colour type, or the colour type is not one of
    /// the five the specification defines. Nothing after the colour type is checked.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let (width, height) = Self::dimensions(bytes)?;
        let channels = match *bytes.get(25)? {
            0 => 1,
            2 | 3 => 3,
            4 => 2,
            6 => 4,
            _ => return None,
        };
        Some(Self {
            width,
            height,
            channels,
        })
    }

    /// Width and height alone, for readers that need no more: `None` only when `bytes` do not
    /// start with the PNG signature and an IHDR chunk up to its height. A width or height of 0
    /// is returned as declared (it is the caller's to refuse).
    pub fn dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
        if bytes.len() < 24 || !bytes.starts_with(SIGNATURE) || &bytes[12..16] != b"IHDR" {
            return None;
        }
        let word = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        Some((word(16), word(20)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Signature, IHDR length and type, width, height, bit depth 8, `color_type`.
    fn header(width: u32, height: u32, color_type: u8) -> Vec<u8> {
        let mut bytes = SIGNATURE.to_vec();
        bytes.extend(13u32.to_be_bytes());
        bytes.extend(b"IHDR");
        bytes.extend(width.to_be_bytes());
        bytes.extend(height.to_be_bytes());
        bytes.extend([8, color_type]);
        bytes
    }

    #[test]
    fn channels_follow_the_colour_type() {
        for (color_type, channels) in [(0, 1), (2, 3), (3, 3), (4, 2), (6, 4)] {
            assert_eq!(
                PngHeader::parse(&header(7, 2, color_type)),
                Some(PngHeader {
                    width: 7,
                    height: 2,
                    channels
                })
            );
        }
        assert_eq!(PngHeader::parse(&header(7, 2, 5)), None);
        assert_eq!(PngHeader::dimensions(&header(7, 2, 5)), Some((7, 2)));
    }

    #[test]
    fn anything_but_a_png_header_is_refused() {
        let good = header(3, 4, 6);
        assert_eq!(
            PngHeader::parse(&good[..25]),
            None,
            "cut before the colour type"
        );
        assert_eq!(PngHeader::dimensions(&good[..24]), Some((3, 4)));
        assert_eq!(PngHeader::dimensions(&good[..23]), None);
        let mut no_signature = good.clone();
        no_signature[1] = b'X';
        assert_eq!(PngHeader::dimensions(&no_signature), None);
        let mut no_ihdr = good;
        no_ihdr[12..16].copy_from_slice(b"IDAT");
        assert_eq!(PngHeader::dimensions(&no_ihdr), None);
        assert_eq!(PngHeader::parse(b"GIF89a"), None);
    }
}
