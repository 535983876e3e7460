//! A TensorBoard event-file writer (scalars and PNG images), written with `std` only.
//!
//! TensorBoard reads TFRecord files of serialized `tensorflow.Event` protobufs. Only the handful
//! of messages and fields needed here are encoded by hand, so training does not pull in protobuf
//! or TensorFlow crates. Field numbers follow `tensorflow/core/util/event.proto` and
//! `tensorflow/core/framework/summary.proto` (mirrored in `tensorboard/compat/proto`):
//!
//! ```text
//! Event         { double wall_time = 1; int64 step = 2;
//!                 oneof what { string file_version = 3; Summary summary = 5; } }
//! Summary       { repeated Value value = 1; }
//! Summary.Value { string tag = 1; oneof value { float simple_value = 2; Image image = 4; } }
//! Summary.Image { int32 height = 1; int32 width = 2; int32 colorspace = 3;
//!                 bytes encoded_image_string = 4; }
//! ```
//!
//! Each record is framed as in `tensorflow/core/lib/io/record_writer.cc`: the data length as a
//! little-endian `u64`, the masked CRC-32C of those 8 bytes, the data, the masked CRC-32C of the
//! data.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The version string TensorBoard expects in the first event; version 2 means it only purges
/// orphaned steps on an explicit session restart, never on a step that goes backwards.
const FILE_VERSION: &str = "brain.Event:2";

/// Appends TensorBoard events (scalars and PNG images) to `DIR/events.out.tfevents.<secs>.<host>.oxidiff`.
///
/// A resumed run gets a new file next to the old ones rather than appending to them, because
/// TensorBoard merges every event file in a directory and a half-written record at the end of
/// an old file (from a crash) must not swallow the new events.
pub struct TensorBoardWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl TensorBoardWriter {
    /// Creates the directory if needed and a new event file in it, writing the initial `file_version: "brain.Event:2"` event.
    ///
    /// The file is opened with `create_new`, so an existing event file is never truncated; if
    /// the name is taken (two writers in the same second) a numeric suffix is added, which sorts
    /// after the first name as TensorBoard's directory loader expects.
    pub fn create(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let wall_time = now_secs();
        // Truncation is intended: the name carries whole seconds, like TensorFlow's writer.
        let base = format!(
            "events.out.tfevents.{}.{}.oxidiff",
            wall_time as u64,
            host_name()
        );
        let mut attempt = 0u32;
        let (path, file) = loop {
            let name = if attempt == 0 {
                base.clone()
            } else {
                format!("{base}.{attempt}")
            };
            let path = dir.join(name);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 1000 => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let mut writer = Self {
            path,
            out: BufWriter::new(file),
        };
        let mut event = Vec::with_capacity(32);
        put_double(&mut event, 1, wall_time);
        put_bytes(&mut event, 3, FILE_VERSION.as_bytes());
        writer.write_record(&event)?;
        // TensorBoard identifies the run as soon as the header is on disk.
        writer.flush()?;
        Ok(writer)
    }

    /// The path of the event file.
    ///
    /// Callers name it in their own errors, since the I/O errors returned here carry no path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One scalar summary value (`simple_value`, f32) under `tag` at `step`.
    ///
    /// The value is narrowed to `f32` because that is the only width `simple_value` has.
    pub fn scalar(&mut self, tag: &str, step: u64, value: f64) -> io::Result<()> {
        let mut summary_value = Vec::with_capacity(tag.len() + 8);
        put_bytes(&mut summary_value, 1, tag.as_bytes());
        put_float(&mut summary_value, 2, value as f32);
        self.write_summary(step, &summary_value)
    }

    /// One image summary (already PNG-encoded bytes) under `tag` at `step`; width, height, channels (1 gray, 3 RGB, 4 RGBA) go into the Summary.Image message.
    ///
    /// The channel count is stored as the `colorspace` field, whose codes (1 gray, 2 gray+alpha,
    /// 3 RGB, 4 RGBA) coincide with channel counts; anything else, and sizes beyond `int32`, are
    /// rejected with `InvalidInput` rather than written as data TensorBoard would misread.
    pub fn image(
        &mut self,
        tag: &str,
        step: u64,
        png: &[u8],
        width: u32,
        height: u32,
        channels: u32,
    ) -> io::Result<()> {
        if !(1..=4).contains(&channels) {
            return Err(invalid_input(format!(
                "image `{tag}`: {channels} channels (expected 1 to 4)"
            )));
        }
        let width = i32::try_from(width)
            .map_err(|_| invalid_input(format!("image `{tag}`: width {width} exceeds int32")))?;
        let height = i32::try_from(height)
            .map_err(|_| invalid_input(format!("image `{tag}`: height {height} exceeds int32")))?;
        let mut image = Vec::with_capacity(png.len() + 16);
        put_varint_field(&mut image, 1, height as u64);
        put_varint_field(&mut image, 2, width as u64);
        put_varint_field(&mut image, 3, u64::from(channels));
        put_bytes(&mut image, 4, png);
        let mut summary_value = Vec::with_capacity(image.len() + tag.len() + 8);
        put_bytes(&mut summary_value, 1, tag.as_bytes());
        put_bytes(&mut summary_value, 4, &image);
        self.write_summary(step, &summary_value)
    }

    /// Flushes buffered events to disk (TensorBoard reads files while they grow).
    ///
    /// Dropping the writer also flushes, but silently drops any error; call this to see it.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Marks a (re)start at `step`: a `SessionLog` START event, on which TensorBoard drops every
    /// event already read with a step ≥ `step`. A run resumed from an earlier checkpoint writes
    /// this at its first new step, so the steps an interrupted run logged after its last
    /// checkpoint are not shown twice.
    pub fn session_start(&mut self, step: u64) -> io::Result<()> {
        let step =
            i64::try_from(step).map_err(|_| invalid_input(format!("step {step} exceeds int64")))?;
        // Event.session_log = 7: SessionLog { status = 1: START }
        let mut session_log = Vec::with_capacity(2);
        put_varint_field(&mut session_log, 1, 1);
        let mut event = Vec::with_capacity(32);
        put_double(&mut event, 1, now_secs());
        put_varint_field(&mut event, 2, step as u64);
        put_bytes(&mut event, 7, &session_log);
        self.write_record(&event)
    }

    /// Wraps one encoded `Summary.Value` in a `Summary` and an `Event` and writes the record.
    fn write_summary(&mut self, step: u64, summary_value: &[u8]) -> io::Result<()> {
        // int64 on the wire: a step past i64::MAX would read back negative.
        let step =
            i64::try_from(step).map_err(|_| invalid_input(format!("step {step} exceeds int64")))?;
        let mut summary = Vec::with_capacity(summary_value.len() + 8);
        put_bytes(&mut summary, 1, summary_value);
        let mut event = Vec::with_capacity(summary.len() + 32);
        put_double(&mut event, 1, now_secs());
        put_varint_field(&mut event, 2, step as u64);
        put_bytes(&mut event, 5, &summary);
        self.write_record(&event)
    }

    /// TFRecord framing; the length has its own CRC so a reader can reject a torn length
    /// before trusting it to size a read.
    fn write_record(&mut self, data: &[u8]) -> io::Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        self.out.write_all(&len)?;
        self.out.write_all(&masked_crc32c(&len).to_le_bytes())?;
        self.out.write_all(data)?;
        self.out.write_all(&masked_crc32c(data).to_le_bytes())
    }
}

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Seconds since the UNIX epoch; a clock set before 1970 gives 0 rather than an error, since a
/// wrong timestamp must not stop training.
fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The host part of the file name, restricted to characters that are safe in a file name on
/// every platform.
fn host_name() -> String {
    let raw = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "localhost".to_owned());
    sanitize_host(&raw)
}

fn sanitize_host(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

// ---- protobuf wire format -------------------------------------------------------------------

const WIRE_VARINT: u32 = 0;
const WIRE_FIXED64: u32 = 1;
const WIRE_LEN: u32 = 2;
const WIRE_FIXED32: u32 = 5;

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_key(buf: &mut Vec<u8>, field: u32, wire: u32) {
    put_varint(buf, u64::from((field << 3) | wire));
}

fn put_varint_field(buf: &mut Vec<u8>, field: u32, v: u64) {
    put_key(buf, field, WIRE_VARINT);
    put_varint(buf, v);
}

fn put_double(buf: &mut Vec<u8>, field: u32, v: f64) {
    put_key(buf, field, WIRE_FIXED64);
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put_float(buf: &mut Vec<u8>, field: u32, v: f32) {
    put_key(buf, field, WIRE_FIXED32);
    buf.extend_from_slice(&v.to_le_bytes());
}

/// Strings, bytes and embedded messages share the length-delimited wire type.
fn put_bytes(buf: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(buf, field, WIRE_LEN);
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

// ---- CRC-32C --------------------------------------------------------------------------------

/// Reflected Castagnoli polynomial.
const CRC32C_POLY: u32 = 0x82F6_3B78;

/// Built at compile time so the writer needs no lazy statics.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ CRC32C_POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc = CRC32C_TABLE[((crc ^ u32::from(byte)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// TFRecord masks stored CRCs because a CRC of data that itself contains CRCs is weak.
fn masked_crc32c(data: &[u8]) -> u32 {
    crc32c(data).rotate_right(15).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        // ((c >> 15) | (c << 17)) + 0xa282ead8 for c = 0xE3069283, computed by hand.
        assert_eq!(masked_crc32c(b"123456789"), 0xC78A_B0E5);
    }

    #[test]
    fn host_name_is_sanitized() {
        assert_eq!(sanitize_host("my host/ä.local-1_x"), "my_host__.local-1_x");
        let host = host_name();
        assert!(!host.is_empty());
        assert!(
            host.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        );
    }

    /// Splits a TFRecord file into records, checking both CRCs of each.
    fn read_records(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut records = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            assert!(rest.len() >= 12, "truncated header");
            let len_bytes = &rest[..8];
            let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
            let len_crc = u32::from_le_bytes(rest[8..12].try_into().unwrap());
            assert_eq!(len_crc, masked_crc32c(len_bytes), "length CRC");
            assert!(rest.len() >= 12 + len + 4, "truncated data");
            let data = &rest[12..12 + len];
            let data_crc = u32::from_le_bytes(rest[12 + len..16 + len].try_into().unwrap());
            assert_eq!(data_crc, masked_crc32c(data), "data CRC");
            records.push(data.to_vec());
            rest = &rest[16 + len..];
        }
        records
    }

    #[derive(Debug, PartialEq)]
    enum Field<'a> {
        Varint(u64),
        Fixed64(u64),
        Fixed32(u32),
        Len(&'a [u8]),
    }

    fn get_varint(buf: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = buf[0];
            *buf = &buf[1..];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return v;
            }
            shift += 7;
        }
    }

    /// A minimal protobuf reader: (field number, value) in wire order.
    fn fields(mut buf: &[u8]) -> Vec<(u32, Field<'_>)> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let key = get_varint(&mut buf);
            let field = (key >> 3) as u32;
            let value = match (key & 7) as u32 {
                WIRE_VARINT => Field::Varint(get_varint(&mut buf)),
                WIRE_FIXED64 => {
                    let (v, rest) = buf.split_at(8);
                    buf = rest;
                    Field::Fixed64(u64::from_le_bytes(v.try_into().unwrap()))
                }
                WIRE_FIXED32 => {
                    let (v, rest) = buf.split_at(4);
                    buf = rest;
                    Field::Fixed32(u32::from_le_bytes(v.try_into().unwrap()))
                }
                WIRE_LEN => {
                    let len = get_varint(&mut buf) as usize;
                    let (v, rest) = buf.split_at(len);
                    buf = rest;
                    Field::Len(v)
                }
                other => panic!("unexpected wire type {other}"),
            };
            out.push((field, value));
        }
        out
    }

    fn len_field<'a>(fields: &[(u32, Field<'a>)], number: u32) -> &'a [u8] {
        match fields.iter().find(|(n, _)| *n == number) {
            Some((_, Field::Len(v))) => v,
            other => panic!("field {number}: {other:?}"),
        }
    }

    fn write_and_read(f: impl FnOnce(&mut TensorBoardWriter)) -> (PathBuf, Vec<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = TensorBoardWriter::create(&dir.path().join("run")).unwrap();
        f(&mut writer);
        writer.flush().unwrap();
        let path = writer.path().to_owned();
        let records = read_records(&std::fs::read(&path).unwrap());
        (path, records)
    }

    #[test]
    fn framing_reads_back() {
        let (path, records) = write_and_read(|w| {
            w.scalar("loss", 1, 0.5).unwrap();
            w.scalar("loss", 2, 0.25).unwrap();
        });
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("events.out.tfevents."), "{name}");
        assert!(name.ends_with(".oxidiff"), "{name}");
        assert_eq!(records.len(), 3);
        let header = fields(&records[0]);
        assert!(matches!(header[0], (1, Field::Fixed64(_))));
        assert_eq!(len_field(&header, 3), b"brain.Event:2");
        assert!(
            records[0]
                .windows(FILE_VERSION.len())
                .any(|w| w == FILE_VERSION.as_bytes())
        );
    }

    #[test]
    fn scalar_round_trips() {
        let before = now_secs();
        let (_, records) = write_and_read(|w| {
            w.scalar("val/bits_per_dim", 300, std::f64::consts::PI)
                .unwrap();
        });
        let event = fields(&records[1]);
        let Field::Fixed64(wall_bits) = event[0].1 else {
            panic!("{event:?}")
        };
        assert_eq!(event[0].0, 1);
        let wall_time = f64::from_bits(wall_bits);
        assert!(wall_time >= before && wall_time <= now_secs() + 1.0);
        assert_eq!(event[1], (2, Field::Varint(300)));
        let summary = fields(len_field(&event, 5));
        assert_eq!(summary.len(), 1);
        let value = fields(len_field(&summary, 1));
        assert_eq!(len_field(&value, 1), b"val/bits_per_dim");
        assert_eq!(
            value[1],
            (2, Field::Fixed32(std::f32::consts::PI.to_bits()))
        );
    }

    #[test]
    fn image_round_trips() {
        let png = [0x89, b'P', b'N', b'G', 1, 2, 3];
        let (_, records) = write_and_read(|w| {
            w.image("samples", 7, &png, 8, 6, 3).unwrap();
        });
        let event = fields(&records[1]);
        assert_eq!(event[1], (2, Field::Varint(7)));
        let value = fields(len_field(&fields(len_field(&event, 5)), 1));
        assert_eq!(len_field(&value, 1), b"samples");
        let image = fields(len_field(&value, 4));
        assert_eq!(image[0], (1, Field::Varint(6)));
        assert_eq!(image[1], (2, Field::Varint(8)));
        assert_eq!(image[2], (3, Field::Varint(3)));
        assert_eq!(len_field(&image, 4), png);
    }

    #[test]
    fn bad_image_arguments_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TensorBoardWriter::create(dir.path()).unwrap();
        for (channels, width) in [(0, 1), (5, 1), (3, u32::MAX)] {
            let err = w.image("x", 0, &[], width, 1, channels).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
        let err = w.scalar("x", u64::MAX, 0.0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn each_create_makes_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = TensorBoardWriter::create(dir.path()).unwrap();
        let b = TensorBoardWriter::create(dir.path()).unwrap();
        assert_ne!(a.path(), b.path());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
