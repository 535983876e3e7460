//! `data.source = "manifest"`: a CSV file of `path,label` rows.

use std::fs;
use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use oxidiff_data::{DataConfig, DataError, DataSource, ErrorPolicy, load_dataset};

fn manifest_config(path: &Path) -> DataConfig {
    DataConfig {
        source: DataSource::Manifest,
        path: Some(path.to_path_buf()),
        ..Default::default()
    }
}

fn save_solid(path: &Path, px: [u8; 3]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    RgbImage::from_pixel(8, 8, Rgb(px)).save(path).unwrap();
}

/// Writes `text` as `dir/name` and returns its path.
fn write_manifest(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

/// The error of loading the manifest `text`, as a message; it must be a `Format` error.
fn format_error(text: &str) -> (PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    save_solid(&dir.path().join("a.png"), [0, 0, 0]);
    save_solid(&dir.path().join("b.png"), [0, 0, 0]);
    let manifest = write_manifest(dir.path(), "broken.csv", text);
    let e = load_dataset(&manifest_config(&manifest), 8, 1).unwrap_err();
    assert!(matches!(e, DataError::Format { .. }), "{text:?}: {e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&manifest.display().to_string()), "{msg}");
    (manifest, msg)
}

#[test]
fn header_quotes_relative_and_absolute_paths_and_sorted_labels() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    save_solid(&data.join("imgs/a.png"), [255, 0, 0]);
    save_solid(&data.join("b, c.png"), [0, 255, 0]);
    save_solid(&data.join("imgs/e.png"), [255, 255, 255]);
    // Outside the manifest's folder, listed by absolute path.
    let elsewhere = dir.path().join("elsewhere/d.png");
    save_solid(&elsewhere, [0, 0, 255]);
    fs::write(data.join("imgs/unlisted.png"), "never opened").unwrap();
    let text = format!(
        " Path , LABEL \r\n\r\nimgs/a.png,zebra\r\n\"b, c.png\", cat\n  \n\"{}\",\"say \"\"hi\"\"\"\n./imgs/e.png,cat\n",
        elsewhere.display()
    );
    let manifest = write_manifest(&data, "train.csv", &text);

    let d = load_dataset(&manifest_config(&manifest), 8, 3).unwrap();
    assert!(d.skipped.is_empty(), "{:?}", d.skipped);
    // Labels are class names, sorted into indices.
    assert_eq!(d.class_names, vec!["cat", "say \"hi\"", "zebra"]);
    assert_eq!(d.num_classes, 3);
    // Manifest order, not path order.
    assert_eq!(d.labels, vec![2, 0, 1, 0]);
    assert_eq!(
        d.keys,
        vec![
            "imgs/a.png".to_string(),
            "b, c.png".to_string(),
            elsewhere.display().to_string(),
            "./imgs/e.png".to_string(),
        ]
    );
    // Pixels follow their rows: red, green, blue, white (R, G, B planes of 8×8).
    let plane = 64;
    let channel_mean = |i: usize, c: usize| {
        d.image(i)[c * plane..(c + 1) * plane].iter().sum::<f32>() / plane as f32
    };
    for (i, rgb) in [
        [1.0, -1.0, -1.0],
        [-1.0, 1.0, -1.0],
        [-1.0, -1.0, 1.0],
        [1.0; 3],
    ]
    .into_iter()
    .enumerate()
    {
        for (c, want) in rgb.into_iter().enumerate() {
            assert_eq!(channel_mean(i, c), want, "image {i} channel {c}");
        }
    }
}

#[test]
fn no_header_and_numeric_labels_sort_as_strings() {
    let dir = tempfile::tempdir().unwrap();
    save_solid(&dir.path().join("x.png"), [0, 0, 0]);
    save_solid(&dir.path().join("y.png"), [0, 0, 0]);
    // No header; labels compare as strings, so "10" sorts before "9".
    let manifest = write_manifest(dir.path(), "m.csv", "x.png,9\ny.png,10");
    let d = load_dataset(&manifest_config(&manifest), 8, 1).unwrap();
    assert_eq!(d.class_names, vec!["10", "9"]);
    assert_eq!(d.labels, vec![1, 0]);
    assert_eq!(d.keys, vec!["x.png", "y.png"]);
}

#[test]
fn missing_and_corrupt_listed_files_are_skipped_with_reasons_or_stop_under_fail() {
    let dir = tempfile::tempdir().unwrap();
    save_solid(&dir.path().join("good.png"), [0, 0, 0]);
    fs::write(dir.path().join("bad.png"), "not a png").unwrap();
    fs::create_dir(dir.path().join("folder.png")).unwrap();
    let manifest = write_manifest(
        dir.path(),
        "m.csv",
        "path,label\nzzz-gone.png,cat\ngood.png,cat\nbad.png,dog\nfolder.png,dog\n",
    );
    let d = load_dataset(&manifest_config(&manifest), 8, 1).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d.keys, vec!["good.png"]);
    // Classes come from every row, so a class whose files are all unusable keeps its index.
    assert_eq!(d.class_names, vec!["cat", "dog"]);
    // Skipped in manifest order, full paths, reasons naming the manifest line.
    let skipped: Vec<(&Path, &str)> = d
        .skipped
        .iter()
        .map(|(p, r)| (p.as_path(), r.as_str()))
        .collect();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert_eq!(skipped[0].0, dir.path().join("zzz-gone.png"));
    assert!(
        skipped[0].1.contains("missing") && skipped[0].1.contains("line 2"),
        "{}",
        skipped[0].1
    );
    assert_eq!(skipped[1].0, dir.path().join("bad.png"));
    assert!(skipped[1].1.contains("line 4"), "{}", skipped[1].1);
    assert_eq!(skipped[2].0, dir.path().join("folder.png"));
    assert!(
        skipped[2].1.contains("not a file") && skipped[2].1.contains("line 5"),
        "{}",
        skipped[2].1
    );

    let fail = DataConfig {
        on_error: ErrorPolicy::Fail,
        ..manifest_config(&manifest)
    };
    let e = load_dataset(&fail, 8, 1).unwrap_err();
    assert!(matches!(e, DataError::Unusable { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("zzz-gone.png") && msg.contains("missing") && msg.contains("on_error"),
        "{msg}"
    );
}

#[test]
fn malformed_rows_name_the_manifest_and_the_line() {
    let (_, msg) = format_error("a.png,cat\n\nb.png\n");
    assert!(
        msg.contains("line 3") && msg.contains("expected 2 fields") && msg.contains("found 1"),
        "{msg}"
    );

    let (_, msg) = format_error("path,label\na, b.png,cat\n");
    assert!(
        msg.contains("line 2") && msg.contains("found 3") && msg.contains("double-quoted"),
        "{msg}"
    );

    let (_, msg) = format_error("a.png,cat\n ,cat\n");
    assert!(
        msg.contains("line 2") && msg.contains("path is empty"),
        "{msg}"
    );

    let (_, msg) = format_error("a.png,\"\"\n");
    assert!(
        msg.contains("line 1") && msg.contains("label of a.png is empty"),
        "{msg}"
    );

    let (_, msg) = format_error("a.png,cat\n\"b.png,dog\n");
    assert!(
        msg.contains("line 2") && msg.contains("not closed"),
        "{msg}"
    );

    // A first row with three fields is not a header but a malformed row.
    let (_, msg) = format_error("path,label,split\na.png,cat,train\n");
    assert!(msg.contains("line 1") && msg.contains("found 3"), "{msg}");
}

#[test]
fn a_path_listed_twice_names_both_lines() {
    let (_, msg) = format_error("path,label\na.png,cat\n\nb.png,dog\n./a.png,dog\n");
    assert!(
        msg.contains("line 5") && msg.contains("first on line 2") && msg.contains("./a.png"),
        "{msg}"
    );
}

#[test]
fn an_empty_manifest_is_an_empty_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("empty.csv", ""),
        ("blank.csv", "\n  \r\n\n"),
        ("header-only.csv", "path,label\n"),
    ] {
        let manifest = write_manifest(dir.path(), name, text);
        let e = load_dataset(&manifest_config(&manifest), 8, 1).unwrap_err();
        assert!(matches!(e, DataError::Empty { .. }), "{name}: {e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("manifest") && msg.contains(name),
            "{name}: {msg}"
        );
    }

    // Rows whose files are all unusable: the message says what was skipped.
    let manifest = write_manifest(dir.path(), "gone.csv", "nowhere.png,cat\n");
    let msg = load_dataset(&manifest_config(&manifest), 8, 1)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("gone.csv") && msg.contains("1 file skipped") && msg.contains("nowhere.png"),
        "{msg}"
    );
}

#[test]
fn a_missing_manifest_or_a_folder_instead_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such.csv");
    let e = load_dataset(&manifest_config(&missing), 8, 1).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }), "{e:?}");
    assert!(e.to_string().contains("no-such.csv"), "{e}");

    let e = load_dataset(&manifest_config(dir.path()), 8, 1).unwrap_err();
    assert!(matches!(e, DataError::InvalidConfig { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("data.path")
            && msg.contains("is a folder")
            && msg.contains("source = \"folder\""),
        "{msg}"
    );
}

#[test]
fn non_utf8_manifest_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("latin1.csv");
    fs::write(&manifest, b"a.png,cat\nb\xe9.png,dog\n").unwrap();
    let e = load_dataset(&manifest_config(&manifest), 8, 1).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("latin1.csv") && msg.contains("line 2") && msg.contains("UTF-8"),
        "{msg}"
    );
}
