//! IDX sources: a generated image set (raw and gzipped), broken files, config checks, and the
//! real Fashion-MNIST files when Debian's `dataset-fashion-mnist` is installed (required in CI,
//! where `OXIDIFF_REQUIRE_FASHION_MNIST=1`).

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use oxidiff_data::{DataConfig, DataError, DataSource, FASHION_MNIST_DIR, Subset, load_dataset};

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend(data);
    out
}

fn write(path: &Path, bytes: &[u8], gzip: bool) {
    if gzip {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(bytes).unwrap();
        std::fs::write(path, enc.finish().unwrap()).unwrap();
    } else {
        std::fs::write(path, bytes).unwrap();
    }
}

fn idx_config(images: PathBuf, labels: Option<PathBuf>) -> DataConfig {
    DataConfig {
        source: DataSource::Idx,
        path: Some(images),
        labels,
        ..Default::default()
    }
}

/// Three 2×2 images: black, white, and a left-black/right-white split; labels 0, 2, 1.
fn write_set(dir: &Path, gzip: bool) -> (PathBuf, PathBuf) {
    let images = dir.join(if gzip { "img.idx.gz" } else { "img.idx" });
    let labels = dir.join("lab.idx");
    let pixels = [0, 0, 0, 0, 255, 255, 255, 255, 0, 255, 0, 255];
    write(&images, &idx_bytes(&[3, 2, 2], &pixels), gzip);
    write(&labels, &idx_bytes(&[3], &[0, 2, 1]), false);
    (images, labels)
}

#[test]
fn an_idx_image_set_loads_raw_and_gzipped() {
    let dir = tempfile::tempdir().unwrap();
    for gzip in [false, true] {
        let (images, labels) = write_set(dir.path(), gzip);
        let data = load_dataset(&idx_config(images, Some(labels)), 2, 1).unwrap();
        assert_eq!(data.len(), 3);
        assert_eq!(data.labels, vec![0, 2, 1]);
        assert_eq!(data.num_classes, 3);
        assert_eq!(data.image(0), &[-1.0; 4]);
        assert_eq!(data.image(1), &[1.0; 4]);
        assert_eq!(data.image(2), &[-1.0, 1.0, -1.0, 1.0]);
    }
}

#[test]
fn without_labels_every_image_is_class_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (images, _) = write_set(dir.path(), false);
    let data = load_dataset(&idx_config(images, None), 4, 3).unwrap();
    assert_eq!(data.labels, vec![0, 0, 0]);
    assert_eq!(data.num_classes, 1);
    assert_eq!(data.image_len(), 3 * 4 * 4);
}

#[test]
fn broken_idx_files_are_reported_with_their_name() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.idx");
    write(&truncated, &idx_bytes(&[10, 28, 28], &[0; 100]), false);
    let text = dir.path().join("text.idx");
    std::fs::write(&text, "this is not an IDX file").unwrap();
    let bad_gzip = dir.path().join("bad.gz");
    std::fs::write(&bad_gzip, [0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
    let flat = dir.path().join("flat.idx");
    write(&flat, &idx_bytes(&[4], &[1, 2, 3, 4]), false);
    let cases = [
        (truncated.clone(), "truncated"),
        (text.clone(), "first two bytes must be zero"),
        (bad_gzip.clone(), "broken gzip stream"),
        (flat.clone(), "must have 3 dimensions"),
        (dir.path().join("missing.idx"), "No such file"),
    ];
    for (path, want) in cases {
        let err = load_dataset(&idx_config(path.clone(), None), 8, 1).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains(want), "{msg} should mention {want}");
    }
}

#[test]
fn a_label_file_of_another_length_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = write_set(dir.path(), false);
    write(&labels, &idx_bytes(&[2], &[0, 1]), false);
    let err = load_dataset(&idx_config(images, Some(labels.clone())), 2, 1).unwrap_err();
    assert!(
        matches!(err, DataError::Format { ref path, .. } if *path == labels),
        "{err}"
    );
    assert!(
        err.to_string().contains("must have dimensions [3]"),
        "{err}"
    );
}

#[test]
fn idx_keys_are_checked_against_the_source() {
    let labels_on_folder = DataConfig {
        source: DataSource::Folder,
        path: Some("imgs".into()),
        labels: Some("l.idx".into()),
        ..Default::default()
    };
    let subset_on_digits = DataConfig {
        subset: Some(Subset::Test),
        ..Default::default()
    };
    let idx_without_path = DataConfig {
        source: DataSource::Idx,
        ..Default::default()
    };
    for (config, key) in [
        (labels_on_folder, "data.labels"),
        (subset_on_digits, "data.subset"),
        (idx_without_path, "data.path"),
    ] {
        let err = config.validate().unwrap_err().to_string();
        assert!(err.starts_with(key), "{err}");
    }
}

#[test]
fn a_missing_fashion_mnist_directory_says_how_to_install_it() {
    let config = DataConfig {
        source: DataSource::FashionMnist,
        path: Some("/nonexistent/fashion".into()),
        ..Default::default()
    };
    let err = load_dataset(&config, 28, 1).unwrap_err().to_string();
    assert!(
        err.contains("/nonexistent/fashion/train-images-idx3-ubyte.gz"),
        "{err}"
    );
    assert!(
        err.contains("apt-get install dataset-fashion-mnist"),
        "{err}"
    );
}

#[test]
fn fashion_mnist_test_set_loads_from_the_debian_package() {
    let installed = Path::new(FASHION_MNIST_DIR)
        .join("t10k-images-idx3-ubyte.gz")
        .is_file();
    if !installed {
        assert!(
            std::env::var_os("OXIDIFF_REQUIRE_FASHION_MNIST").is_none(),
            "OXIDIFF_REQUIRE_FASHION_MNIST is set but {FASHION_MNIST_DIR} has no Fashion-MNIST"
        );
        eprintln!("skipped: `apt-get install dataset-fashion-mnist` to run this test");
        return;
    }
    let config = DataConfig {
        source: DataSource::FashionMnist,
        subset: Some(Subset::Test),
        ..Default::default()
    };
    let data = load_dataset(&config, 28, 1).unwrap();
    assert_eq!(data.len(), 10_000);
    assert_eq!(data.class_counts(), vec![1_000; 10]);
    assert_eq!(data.class_names[9], "Ankle boot");
    // Mostly black backgrounds: the mean pixel of Fashion-MNIST is about 0.286 in [0, 1]
    // (-0.43 in [-1, 1]) for both subsets, the usual normalisation constant.
    let mean = data
        .cached()
        .unwrap()
        .iter()
        .map(|&v| f64::from(v))
        .sum::<f64>()
        / data.cached().unwrap().len() as f64;
    assert!((mean - (2.0 * 0.2860 - 1.0)).abs() < 0.01, "mean {mean}");
}
