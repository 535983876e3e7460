use std::fs;
use std::path::Path;

use image::{GrayImage, Luma, Rgb, RgbImage};
use oxidiff_data::{DataConfig, DataError, DataSource, FolderLabels, load_dataset};

fn folder_config(path: &Path) -> DataConfig {
    DataConfig {
        source: DataSource::Folder,
        path: Some(path.to_path_buf()),
        ..Default::default()
    }
}

fn solid_rgb(w: u32, h: u32, px: [u8; 3]) -> RgbImage {
    RgbImage::from_pixel(w, h, Rgb(px))
}

/// cats/a.png (red, 20×12), cats/sub/b.jpg (grey 128, 9×9), dogs/c.png (white, gray PNG),
/// dogs/d.jpeg (blue, 10×10), plus files that must be ignored.
fn write_classes(root: &Path) {
    fs::create_dir_all(root.join("cats/sub")).unwrap();
    fs::create_dir_all(root.join("dogs")).unwrap();
    fs::create_dir_all(root.join(".hidden_class")).unwrap();
    solid_rgb(20, 12, [255, 0, 0])
        .save(root.join("cats/a.png"))
        .unwrap();
    solid_rgb(9, 9, [128, 128, 128])
        .save(root.join("cats/sub/b.jpg"))
        .unwrap();
    GrayImage::from_pixel(16, 16, Luma([255]))
        .save(root.join("dogs/c.png"))
        .unwrap();
    solid_rgb(10, 10, [0, 0, 255])
        .save(root.join("dogs/d.jpeg"))
        .unwrap();
    fs::write(root.join("dogs/notes.txt"), "not an image").unwrap();
    solid_rgb(4, 4, [0, 255, 0])
        .save(root.join(".hidden_class/x.png"))
        .unwrap();
    solid_rgb(4, 4, [0, 255, 0])
        .save(root.join("dogs/.x.png"))
        .unwrap();
}

fn mean(v: &[f32]) -> f32 {
    v.iter().sum::<f32>() / v.len() as f32
}

fn close(a: f32, b: f32, tol: f32) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn labels_from_sub_folders_and_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_classes(root);

    for (size, channels) in [(8, 1), (8, 3), (16, 1), (16, 3)] {
        let d = load_dataset(&folder_config(root), size, channels).unwrap();
        assert_eq!(d.len(), 4, "{size}/{channels}: {:?}", d.skipped);
        assert!(d.skipped.is_empty(), "{:?}", d.skipped);
        assert_eq!(d.class_names, vec!["cats", "dogs"]);
        assert_eq!(d.num_classes, 2);
        // Sorted paths: cats/a.png, cats/sub/b.jpg, dogs/c.png, dogs/d.jpeg.
        assert_eq!(d.labels, vec![0, 0, 1, 1]);
        assert_eq!(d.cached().unwrap().len(), 4 * channels * size * size);
        assert!(d.cached().unwrap().iter().all(|v| (-1.0..=1.0).contains(v)));

        let plane = size * size;
        let (red, grey, white, blue) = (d.image(0), d.image(1), d.image(2), d.image(3));
        // JPEG is lossy: solid colours come back within a few levels.
        let tol = 0.05;
        assert!(
            white.iter().all(|&v| close(v, 1.0, 1e-6)),
            "gray PNG → all ones"
        );
        assert!(grey.iter().all(|&v| close(v, 128.0 / 127.5 - 1.0, tol)));
        if channels == 1 {
            // Rec. 709 luma of pure red and pure blue.
            assert!(close(mean(red), 0.2126 * 2.0 - 1.0, 0.01), "{}", mean(red));
            assert!(close(mean(blue), 0.0722 * 2.0 - 1.0, tol), "{}", mean(blue));
        } else {
            assert!(close(mean(&red[..plane]), 1.0, 1e-6));
            assert!(close(mean(&red[plane..2 * plane]), -1.0, 1e-6));
            assert!(close(mean(&red[2 * plane..]), -1.0, 1e-6));
            assert!(close(mean(&blue[..plane]), -1.0, tol));
            assert!(close(mean(&blue[2 * plane..]), 1.0, tol));
        }
    }
}

#[test]
fn flat_folder_is_one_class() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("faces");
    fs::create_dir(&root).unwrap();
    solid_rgb(8, 8, [10, 20, 30])
        .save(root.join("b.png"))
        .unwrap();
    solid_rgb(8, 8, [0, 0, 0]).save(root.join("a.PNG")).unwrap();
    let d = load_dataset(&folder_config(&root), 8, 3).unwrap();
    assert_eq!(d.labels, vec![0, 0]);
    assert_eq!(d.num_classes, 1);
    assert_eq!(d.class_names, vec!["faces"]);
    // Sorted: a.PNG (black) first.
    assert!(d.image(0).iter().all(|&v| v == -1.0));
}

#[test]
fn non_square_images_are_centre_cropped() {
    let dir = tempfile::tempdir().unwrap();
    // 24×8: left third black, middle third white, right third black.
    let mut img = GrayImage::new(24, 8);
    for (x, _, p) in img.enumerate_pixels_mut() {
        *p = Luma([if (8..16).contains(&x) { 255 } else { 0 }]);
    }
    img.save(dir.path().join("wide.png")).unwrap();
    let d = load_dataset(&folder_config(dir.path()), 8, 1).unwrap();
    // The centred 8×8 square is all white: no stretching of the black borders into view.
    assert!(d.image(0).iter().all(|&v| v == 1.0), "{:?}", d.image(0));
}

#[test]
fn corrupt_files_are_skipped_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    solid_rgb(12, 12, [200, 100, 50])
        .save(root.join("good.png"))
        .unwrap();
    solid_rgb(12, 12, [1, 2, 3])
        .save(root.join("good2.jpg"))
        .unwrap();
    let mut png = Vec::new();
    solid_rgb(64, 64, [7, 8, 9])
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    fs::write(root.join("truncated.png"), &png[..png.len() / 2]).unwrap();
    fs::write(root.join("text.png"), "this is not a PNG").unwrap();
    fs::write(root.join("zero.png"), b"").unwrap();
    fs::write(root.join("garbage.jpg"), [0xFF, 0xD8, 0xFF, 0x00, 0x01]).unwrap();

    let d = load_dataset(&folder_config(root), 8, 3).unwrap();
    assert_eq!(d.len(), 2);
    let skipped: Vec<(String, &str)> = d
        .skipped
        .iter()
        .map(|(p, r)| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                r.as_str(),
            )
        })
        .collect();
    let names: Vec<&str> = skipped.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec!["garbage.jpg", "text.png", "truncated.png", "zero.png"]
    );
    for (name, reason) in &skipped {
        assert!(!reason.is_empty(), "{name}");
    }
    assert!(skipped[3].1.contains("empty"), "{}", skipped[3].1);
    // Skipped paths are full paths, so a report can point at the file.
    assert!(d.skipped.iter().all(|(p, _)| p.starts_with(root)));
}

#[test]
fn loose_files_next_to_class_folders_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir(root.join("a")).unwrap();
    solid_rgb(8, 8, [0, 0, 0])
        .save(root.join("a/x.png"))
        .unwrap();
    solid_rgb(8, 8, [0, 0, 0])
        .save(root.join("loose.png"))
        .unwrap();
    let d = load_dataset(&folder_config(root), 8, 1).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d.skipped.len(), 1);
    assert!(d.skipped[0].0.ends_with("loose.png"));
    assert!(
        d.skipped[0].1.contains("class sub-folder"),
        "{}",
        d.skipped[0].1
    );
}

#[test]
fn empty_folder_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("nothing-here");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("readme.txt"), "no images").unwrap();
    let e = load_dataset(&folder_config(&root), 8, 1).unwrap_err();
    assert!(matches!(e, DataError::Empty { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("nothing-here"), "{msg}");

    // Only unusable files: the message says so and names one.
    fs::write(root.join("bad.png"), "nope").unwrap();
    let msg = load_dataset(&folder_config(&root), 8, 1)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("1 file skipped") && msg.contains("bad.png"),
        "{msg}"
    );
}

#[test]
fn missing_folder_or_file_instead_of_folder_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("does-not-exist");
    let e = load_dataset(&folder_config(&missing), 8, 1).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }), "{e:?}");
    assert!(e.to_string().contains("does-not-exist"), "{e}");

    let file = dir.path().join("a-file.png");
    solid_rgb(8, 8, [0, 0, 0]).save(&file).unwrap();
    let e = load_dataset(&folder_config(&file), 8, 1).unwrap_err();
    assert!(e.to_string().contains("a-file.png"), "{e}");
    assert!(e.to_string().contains("not a directory"), "{e}");
}

#[cfg(unix)]
#[test]
fn link_cycles_do_not_loop() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("c/inner")).unwrap();
    solid_rgb(8, 8, [0, 0, 0])
        .save(root.join("c/inner/x.png"))
        .unwrap();
    std::os::unix::fs::symlink(root.join("c"), root.join("c/inner/loop")).unwrap();
    let d = load_dataset(&folder_config(root), 8, 1).unwrap();
    assert_eq!(d.len(), 1);
}

#[test]
fn folder_labels_none_is_one_class_at_any_depth_with_root_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("photos");
    fs::create_dir_all(root.join("2020/deep")).unwrap();
    fs::create_dir_all(root.join("2021")).unwrap();
    fs::create_dir_all(root.join(".cache")).unwrap();
    solid_rgb(8, 8, [255, 255, 255])
        .save(root.join("a.png"))
        .unwrap();
    solid_rgb(8, 8, [0, 0, 0])
        .save(root.join("2020/b.png"))
        .unwrap();
    solid_rgb(8, 8, [0, 0, 0])
        .save(root.join("2020/deep/c.png"))
        .unwrap();
    solid_rgb(8, 8, [0, 0, 0])
        .save(root.join("2021/d.png"))
        .unwrap();
    solid_rgb(8, 8, [0, 0, 0])
        .save(root.join(".cache/x.png"))
        .unwrap();
    fs::write(root.join("2021/notes.txt"), "ignored").unwrap();

    let config = DataConfig {
        folder_labels: FolderLabels::None,
        ..folder_config(&root)
    };
    let d = load_dataset(&config, 8, 1).unwrap();
    assert!(d.skipped.is_empty(), "{:?}", d.skipped);
    assert_eq!(d.class_names, vec!["photos"]);
    assert_eq!(d.num_classes, 1);
    assert_eq!(d.labels, vec![0; 4]);
    // Sorted paths, keys relative to the root: the root file sorts last ('2' < 'a').
    assert_eq!(
        d.keys,
        vec!["2020/b.png", "2020/deep/c.png", "2021/d.png", "a.png"]
    );
    assert!(
        d.image(3).iter().all(|&v| close(v, 1.0, 1e-5)),
        "a.png is white"
    );

    // The default, "subfolders", is unchanged: two classes, the root file skipped.
    let d = load_dataset(&folder_config(&root), 8, 1).unwrap();
    assert_eq!(d.class_names, vec!["2020", "2021"]);
    assert_eq!(d.labels, vec![0, 0, 1]);
    assert_eq!(d.keys, vec!["2020/b.png", "2020/deep/c.png", "2021/d.png"]);
    assert_eq!(d.skipped.len(), 1);
    assert!(d.skipped[0].0.ends_with("a.png"));
}

#[test]
fn folder_labels_none_on_a_folder_without_images_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("blank");
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::write(root.join("sub/bad.png"), "not a png").unwrap();
    let config = DataConfig {
        folder_labels: FolderLabels::None,
        ..folder_config(&root)
    };
    let e = load_dataset(&config, 8, 1).unwrap_err();
    assert!(matches!(e, DataError::Empty { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("blank") && msg.contains("1 file skipped") && msg.contains("bad.png"),
        "{msg}"
    );
}

/// A messy folder through the whole loader: every bad file is skipped with its reason under
/// `on_error = "skip"`, the first one stops the load under `"fail"`, and nothing panics.
#[test]
fn a_bad_input_corpus_is_skipped_and_reported_or_stops_per_policy() {
    use image::{ImageBuffer, Luma};
    use oxidiff_data::ErrorPolicy;

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let good = solid_rgb(12, 12, [10, 200, 30]);
    good.save(root.join("good.png")).unwrap();
    ImageBuffer::<Luma<u16>, Vec<u16>>::from_pixel(8, 8, Luma([40_000]))
        .save(root.join("sixteen-bit.png"))
        .unwrap();
    solid_rgb(1, 1, [255, 255, 255])
        .save(root.join("one-pixel.png"))
        .unwrap();
    fs::write(root.join("zero.png"), b"").unwrap();
    fs::write(root.join("text.png"), "hello, not a PNG").unwrap();
    let png = fs::read(root.join("good.png")).unwrap();
    fs::write(root.join("truncated.png"), &png[..png.len() / 2]).unwrap();
    good.save(root.join("photo.jpg")).unwrap();
    let jpg = fs::read(root.join("photo.jpg")).unwrap();
    fs::write(root.join("truncated.jpg"), &jpg[..jpg.len() / 2]).unwrap();
    solid_rgb(40, 40, [0, 0, 0])
        .save(root.join("too-large.png"))
        .unwrap();

    let mut config = folder_config(root);
    config.max_pixels = 1000;
    let data = load_dataset(&config, 8, 3).unwrap();
    assert_eq!(data.len(), 4, "good, photo, sixteen-bit, one-pixel");
    let reasons: std::collections::HashMap<String, String> = data
        .skipped
        .iter()
        .map(|(p, r)| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                r.clone(),
            )
        })
        .collect();
    for (file, want) in [
        ("zero.png", "empty file"),
        ("text.png", "not an image"),
        ("truncated.png", "truncated"),
        ("truncated.jpg", "truncated"),
        ("too-large.png", "max_pixels"),
    ] {
        let reason = reasons
            .get(file)
            .unwrap_or_else(|| panic!("{file} not skipped"));
        assert!(reason.contains(want), "{file}: {reason}");
    }
    // 16-bit gray 40000/65535 keeps its value (0.61 → 0.22 in [-1, 1]), not a rounded 8-bit one.
    let k = data
        .keys
        .iter()
        .position(|k| k == "sixteen-bit.png")
        .unwrap();
    assert!((data.image(k)[0] - (2.0 * 40_000.0 / 65_535.0 - 1.0)).abs() < 1e-4);

    config.on_error = ErrorPolicy::Fail;
    let err = load_dataset(&config, 8, 3).unwrap_err().to_string();
    assert!(err.contains("on_error"), "{err}");
    assert!(
        reasons.keys().any(|file| err.contains(file.as_str())),
        "{err}"
    );
}
