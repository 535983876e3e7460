//! `.npy` sources: hand-written files in both layouts and all three dtypes, the missing-values
//! policies on a file with NaN/Inf, and broken files whose errors must name the file and the
//! problem.

use std::path::{Path, PathBuf};

use oxidiff_data::{
    DataError, MissingValues, NpyArray, NpyData, NpyImages, NpyLayout, apply_missing_values,
    non_finite_samples, npy_images, read_npy,
};

/// `.npy` bytes as NumPy writes them: magic, version, header length, then the header dict padded
/// with spaces so that the whole header ends with '\n' at a multiple of 64 bytes.
fn npy_bytes(major: u8, descr: &str, fortran: bool, shape: &[usize], payload: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
    let shape = match shape.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let fortran = if fortran { "True" } else { "False" };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}");
    let prelude = if major == 1 { 10 } else { 12 };
    while !(prelude + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend([major, 0]);
    if major == 1 {
        out.extend(u16::try_from(header.len()).unwrap().to_le_bytes());
    } else {
        out.extend(u32::try_from(header.len()).unwrap().to_le_bytes());
    }
    out.extend(header.as_bytes());
    assert!(out.len().is_multiple_of(64));
    out.extend(payload);
    out
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn load(path: &Path, layout: NpyLayout) -> Result<NpyImages, DataError> {
    npy_images(read_npy(path)?, layout, path)
}

/// The error message of `result`, asserting that it names `path` and mentions every `want`.
fn assert_error<T: std::fmt::Debug>(result: Result<T, DataError>, path: &Path, wants: &[&str]) {
    let err = result.expect_err("expected an error").to_string();
    assert!(
        err.contains(&path.display().to_string()),
        "{err} should name {}",
        path.display()
    );
    for want in wants {
        assert!(err.contains(want), "{err} should mention {want}");
    }
}

/// A distinct byte for every (n, c, y, x) of a [2, 3, 2, 3] image set.
fn value(n: usize, c: usize, y: usize, x: usize) -> u8 {
    if (n, c, y, x) == (1, 2, 1, 2) {
        255
    } else {
        (n * 100 + c * 30 + y * 10 + x) as u8
    }
}

fn assert_nchw_values(images: &NpyImages) {
    assert_eq!(
        (images.count, images.channels, images.height, images.width),
        (2, 3, 2, 3)
    );
    for n in 0..2 {
        for c in 0..3 {
            for y in 0..2 {
                for x in 0..3 {
                    let got = images.pixels[((n * 3 + c) * 2 + y) * 3 + x];
                    let want = f32::from(value(n, c, y, x)) / 255.0;
                    assert_eq!(got, want, "pixel (n {n}, c {c}, y {y}, x {x})");
                }
            }
        }
    }
    assert_eq!(images.pixels[images.pixels.len() - 1], 1.0, "255 → 1.0");
}

#[test]
fn u8_nhwc_lands_in_nchw_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut payload = Vec::new();
    for n in 0..2 {
        for y in 0..2 {
            for x in 0..3 {
                for c in 0..3 {
                    payload.push(value(n, c, y, x));
                }
            }
        }
    }
    let path = write(
        dir.path(),
        "nhwc.npy",
        &npy_bytes(1, "|u1", false, &[2, 2, 3, 3], &payload),
    );
    let array = read_npy(&path).unwrap();
    assert_eq!(array.shape, vec![2, 2, 3, 3]);
    assert_eq!(array.data, NpyData::U8(payload));
    assert_nchw_values(&load(&path, NpyLayout::Nhwc).unwrap());
}

#[test]
fn u8_nchw_is_kept_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut payload = Vec::new();
    for n in 0..2 {
        for c in 0..3 {
            for y in 0..2 {
                for x in 0..3 {
                    payload.push(value(n, c, y, x));
                }
            }
        }
    }
    for (major, descr) in [(1, "u1"), (2, "<u1"), (3, "|u1")] {
        let path = write(
            dir.path(),
            &format!("nchw{major}.npy"),
            &npy_bytes(major, descr, false, &[2, 3, 2, 3], &payload),
        );
        assert_nchw_values(&load(&path, NpyLayout::Nchw).unwrap());
    }
}

#[test]
fn three_dimensional_arrays_are_one_channel() {
    let dir = tempfile::tempdir().unwrap();
    let payload: Vec<u8> = (0..12).map(|v| v * 20).collect();
    let path = write(
        dir.path(),
        "gray.npy",
        &npy_bytes(1, "|u1", false, &[3, 2, 2], &payload),
    );
    for layout in [NpyLayout::Nhwc, NpyLayout::Nchw] {
        let images = load(&path, layout).unwrap();
        assert_eq!(
            (images.count, images.channels, images.height, images.width),
            (3, 1, 2, 2)
        );
        let want: Vec<f32> = payload.iter().map(|&v| f32::from(v) / 255.0).collect();
        assert_eq!(images.pixels, want);
    }
}

#[test]
fn f4_and_f8_are_read_as_f32() {
    let dir = tempfile::tempdir().unwrap();
    // NHWC [1, 1, 2, 3]: two pixels of three channels.
    let values = [0.0f32, 0.25, 0.5, 0.75, 1.0, 0.125];
    let f4 = write(
        dir.path(),
        "f4.npy",
        &npy_bytes(1, "<f4", false, &[1, 1, 2, 3], &f32_bytes(&values)),
    );
    let f8_payload: Vec<u8> = values
        .iter()
        .flat_map(|&v| f64::from(v).to_le_bytes())
        .collect();
    let f8 = write(
        dir.path(),
        "f8.npy",
        &npy_bytes(2, "<f8", false, &[1, 1, 2, 3], &f8_payload),
    );
    assert_eq!(
        read_npy(&f8).unwrap(),
        NpyArray {
            shape: vec![1, 1, 2, 3],
            data: NpyData::F32(values.to_vec())
        }
    );
    for path in [f4, f8] {
        let images = load(&path, NpyLayout::Nhwc).unwrap();
        assert_eq!(
            (images.count, images.channels, images.height, images.width),
            (1, 3, 1, 2)
        );
        assert_eq!(images.pixels, vec![0.0, 0.75, 0.25, 1.0, 0.5, 0.125]);
    }
}

/// Four one-channel 2×2 samples; sample 1 holds one NaN, sample 3 a NaN and an Inf.
fn nan_file(dir: &Path) -> PathBuf {
    let nan = f32::NAN;
    let values = [
        0.1,
        0.2,
        0.3,
        0.4, //
        0.5,
        nan,
        0.5,
        0.5, //
        0.9,
        0.9,
        0.9,
        0.9, //
        nan,
        0.0,
        f32::INFINITY,
        1.0,
    ];
    write(
        dir,
        "nan.npy",
        &npy_bytes(1, "<f4", false, &[4, 2, 2], &f32_bytes(&values)),
    )
}

#[test]
fn non_finite_values_are_found_per_sample() {
    let dir = tempfile::tempdir().unwrap();
    let images = load(&nan_file(dir.path()), NpyLayout::Nhwc).unwrap();
    assert_eq!(non_finite_samples(&images), vec![(1, 1), (3, 2)]);
}

#[test]
fn skip_drops_exactly_the_bad_samples() {
    let dir = tempfile::tempdir().unwrap();
    let path = nan_file(dir.path());
    let images = load(&path, NpyLayout::Nhwc).unwrap();
    let (images, report) =
        apply_missing_values(images, MissingValues::Skip, &[0, 1, 2, 3], &path).unwrap();
    assert_eq!(images.count, 2);
    assert_eq!(images.pixels, vec![0.1, 0.2, 0.3, 0.4, 0.9, 0.9, 0.9, 0.9]);
    assert_eq!(
        report,
        vec![
            (1, "1 NaN/Inf value".to_string()),
            (3, "2 NaN/Inf values".to_string())
        ]
    );
}

#[test]
fn fill_uses_the_channel_mean_of_the_given_samples_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = nan_file(dir.path());
    let images = load(&path, NpyLayout::Nhwc).unwrap();
    // Means over samples 1 and 2 only: (0.5 × 3 + 0.9 × 4) / 7; sample 0 and 3 must not count.
    let mean = ((0.5f64 * 3.0 + 0.9 * 4.0) / 7.0) as f32;
    let (filled, report) =
        apply_missing_values(images.clone(), MissingValues::Fill, &[1, 2], &path).unwrap();
    assert_eq!(filled.count, 4);
    assert_eq!(&filled.pixels[..4], &images.pixels[..4]);
    assert_eq!(&filled.pixels[4..8], &[0.5, mean, 0.5, 0.5]);
    assert_eq!(&filled.pixels[8..12], &images.pixels[8..12]);
    assert_eq!(&filled.pixels[12..], &[mean, 0.0, mean, 1.0]);
    assert!(non_finite_samples(&filled).is_empty());
    assert_eq!(
        report,
        vec![
            (
                1,
                "1 NaN/Inf value filled with the channel mean".to_string()
            ),
            (
                3,
                "2 NaN/Inf values filled with the channel mean".to_string()
            )
        ]
    );

    // Only bad samples to learn from: nothing finite in the channel.
    let result = apply_missing_values(images.clone(), MissingValues::Fill, &[], &path);
    assert_error(
        result,
        &path,
        &["channel 0 has no finite value", "sample 1"],
    );
    let result = apply_missing_values(images, MissingValues::Fill, &[9], &path);
    assert_error(result, &path, &["sample 9", "out of range for 4 samples"]);
}

#[test]
fn fail_names_the_file_and_the_first_bad_sample() {
    let dir = tempfile::tempdir().unwrap();
    let path = nan_file(dir.path());
    let images = load(&path, NpyLayout::Nhwc).unwrap();
    let result = apply_missing_values(images, MissingValues::Fail, &[0], &path);
    assert_error(
        result,
        &path,
        &[
            "sample 1 holds 1 NaN/Inf value",
            "3 NaN/Inf values in 2 of 4 samples",
        ],
    );
}

#[test]
fn clean_files_pass_every_policy_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "clean.npy",
        &npy_bytes(1, "<f4", false, &[2, 1, 1], &f32_bytes(&[0.5, 1.0])),
    );
    let images = load(&path, NpyLayout::Nchw).unwrap();
    for policy in [
        MissingValues::Skip,
        MissingValues::Fill,
        MissingValues::Fail,
    ] {
        let (out, report) = apply_missing_values(images.clone(), policy, &[], &path).unwrap();
        assert_eq!(out, images);
        assert!(report.is_empty());
    }
}

#[test]
fn truncated_and_overlong_payloads_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "short.npy",
        &npy_bytes(1, "|u1", false, &[10, 28, 28], &[0; 100]),
    );
    assert_error(
        read_npy(&path),
        &path,
        &[
            "truncated payload",
            "header declares shape (10, 28, 28) = 7840 bytes of data, the file holds 100",
        ],
    );
    let path = write(
        dir.path(),
        "long.npy",
        &npy_bytes(1, "<f4", false, &[2], &[0; 9]),
    );
    assert_error(
        read_npy(&path),
        &path,
        &[
            "trailing bytes",
            "shape (2,) = 8 bytes of data, the file holds 9",
        ],
    );
}

#[test]
fn a_text_file_named_npy_is_not_an_npy_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "notes.npy", b"1,2,3\n4,5,6\n");
    assert_error(read_npy(&path), &path, &["not a .npy file", "magic"]);
}

#[test]
fn unsupported_dtypes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (descr, item, hint) in [
        (">f4", 4, "big-endian"),
        ("<i8", 8, "astype"),
        ("|O", 8, "object arrays"),
    ] {
        let path = write(
            dir.path(),
            "dtype.npy",
            &npy_bytes(1, descr, false, &[1], &vec![0; item]),
        );
        let problem = format!("dtype '{descr}' is not supported");
        assert_error(read_npy(&path), &path, &[&problem, hint]);
    }
}

#[test]
fn fortran_order_asks_for_c_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "fortran.npy",
        &npy_bytes(1, "|u1", true, &[2, 2, 2], &[0; 8]),
    );
    assert_error(
        read_npy(&path),
        &path,
        &["Fortran", "C order", "np.ascontiguousarray"],
    );
}

#[test]
fn wrong_shapes_name_the_shape_and_the_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[usize], NpyLayout, &str); 4] = [
        (
            &[2, 4, 4, 4],
            NpyLayout::Nhwc,
            "shape (2, 4, 4, 4) read as nhwc has 4 channels",
        ),
        (
            &[2, 2, 4, 4],
            NpyLayout::Nchw,
            "shape (2, 2, 4, 4) read as nchw has 2 channels",
        ),
        (&[16], NpyLayout::Nhwc, "shape (16,) has 1"),
        (
            &[2, 0, 4],
            NpyLayout::Nhwc,
            "shape (2, 0, 4) holds empty images",
        ),
    ];
    for (shape, layout, want) in cases {
        let len: usize = shape.iter().product();
        let path = write(
            dir.path(),
            "shape.npy",
            &npy_bytes(1, "|u1", false, shape, &vec![0; len]),
        );
        assert_error(
            load(&path, layout),
            &path,
            &[want, "expected [N, H, W] (one channel) or", "C = 1 or 3"],
        );
    }
}

#[test]
fn floats_outside_unit_range_are_refused_with_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "range.npy",
        &npy_bytes(
            1,
            "<f4",
            false,
            &[1, 2, 2],
            &f32_bytes(&[-1.0, 0.5, f32::NAN, 1.0]),
        ),
    );
    assert_error(
        load(&path, NpyLayout::Nhwc),
        &path,
        &["range over [-1, 1]", "rescale to [0, 1] first"],
    );
    // Rounding strays within the tolerance are clamped, not refused.
    let path = write(
        dir.path(),
        "stray.npy",
        &npy_bytes(
            1,
            "<f4",
            false,
            &[1, 1, 2],
            &f32_bytes(&[-1e-7, 1.0 + 1e-7]),
        ),
    );
    assert_eq!(load(&path, NpyLayout::Nhwc).unwrap().pixels, vec![0.0, 1.0]);
}

#[test]
fn a_missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.npy");
    let result = read_npy(&path);
    assert!(matches!(result, Err(DataError::Io { .. })), "{result:?}");
    assert_error(result, &path, &["absent.npy"]);
}

/// Four 2×2 one-channel f32 images with values 0.1·(i+1); image 2 holds a NaN.
fn write_nan_source(dir: &Path) -> PathBuf {
    let mut values: Vec<f32> = (0..4).flat_map(|i| [0.1 * (i + 1) as f32; 4]).collect();
    values[9] = f32::NAN;
    write(
        dir,
        "nan.npy",
        &npy_bytes(1, "<f4", false, &[4, 2, 2], &f32_bytes(&values)),
    )
}

fn npy_config(path: &Path, missing: MissingValues) -> oxidiff_data::DataConfig {
    oxidiff_data::DataConfig {
        source: oxidiff_data::DataSource::Npy,
        path: Some(path.to_path_buf()),
        missing,
        // No validation split (runs hold 5% out by default): the fill means below are over
        // every image.
        validation_fraction: 0.0,
        ..Default::default()
    }
}

#[test]
fn an_npy_source_applies_the_missing_values_policy_when_loading() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_nan_source(dir.path());

    let skipped =
        oxidiff_data::load_dataset(&npy_config(&path, MissingValues::Skip), 2, 1).unwrap();
    assert_eq!(skipped.len(), 3);
    assert_eq!(skipped.keys, vec!["#0", "#1", "#3"]);
    assert_eq!(skipped.skipped.len(), 1);
    assert!(
        skipped.skipped[0]
            .0
            .display()
            .to_string()
            .ends_with("nan.npy#2")
    );

    let filled = oxidiff_data::load_dataset(&npy_config(&path, MissingValues::Fill), 2, 1).unwrap();
    assert_eq!(filled.len(), 4);
    assert!(filled.cached().unwrap().iter().all(|v| v.is_finite()));
    // Without a validation split every image is training data: the channel mean of the finite
    // values is (4·0.1 + 4·0.2 + 3·0.3 + 4·0.4) / 15, in [-1, 1] as 2·mean − 1.
    let mean = (0.4 + 0.8 + 0.9 + 1.6) / 15.0;
    let got = filled.image(2)[1];
    assert!((got - (2.0 * mean - 1.0)).abs() < 1e-5, "{got}");

    let err = oxidiff_data::load_dataset(&npy_config(&path, MissingValues::Fail), 2, 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("nan.npy"), "{err}");
}
