//! `data.cache = false`: image files decoded per batch (and ahead of time by the prefetcher)
//! must give exactly the batches the in-memory cache gives, and a file that breaks after the
//! load must cost one skipped image (or stop the run under `on_error = "fail"`), never a panic.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use image::{Rgb, RgbImage};
use oxidiff_data::{
    CropMode, DataConfig, DataError, DataSource, ErrorPolicy, Prefetcher, load_dataset,
};

/// `a/00.png … a/05.png` and `b/00.png … b/05.png`: 12×10 RGB gradients, all different.
fn write_folder(root: &Path) {
    for (class, offset) in [("a", 0u8), ("b", 100u8)] {
        fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..6u8 {
            let img = RgbImage::from_fn(12, 10, |x, y| {
                Rgb([
                    offset + i * 10 + x as u8,
                    (y as u8) * 20,
                    255 - i * 30 - x as u8,
                ])
            });
            img.save(root.join(class).join(format!("{i:02}.png")))
                .unwrap();
        }
    }
    fs::write(root.join("a/broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
}

fn config(root: &Path, cache: bool) -> DataConfig {
    DataConfig {
        source: DataSource::Folder,
        path: Some(root.to_path_buf()),
        cache,
        resize: Some(10),
        crop: CropMode::Random,
        flip: true,
        ..Default::default()
    }
}

fn seeds(k: usize) -> Option<u64> {
    Some(1000 + k as u64)
}

#[test]
fn streamed_batches_equal_cached_ones() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path());
    let cached = load_dataset(&config(dir.path(), true), 8, 3).unwrap();
    let streamed = load_dataset(&config(dir.path(), false), 8, 3).unwrap();
    assert!(cached.cached().is_some() && streamed.cached().is_none());
    // The load checks every file either way: same images, labels, keys and skipped files.
    assert_eq!(streamed.len(), 12);
    assert_eq!(
        (&streamed.labels, &streamed.keys, &streamed.skipped),
        (&cached.labels, &cached.keys, &cached.skipped)
    );
    assert_eq!(streamed.skipped.len(), 1, "{:?}", streamed.skipped);
    let indices = [11, 0, 5, 5, 7];
    let augment = config(dir.path(), true).augment();
    let a = cached.assemble(&indices, augment, seeds).unwrap();
    let b = streamed.assemble(&indices, augment, seeds).unwrap();
    assert_eq!(a, b);
    assert_eq!(b.shape, [5, 3, 8, 8]);
    assert!(b.failed.is_empty());
    // Subsets (the validation split) keep streaming the right files.
    let sub = streamed.subset(&[7, 0]);
    assert!(sub.cached().is_none());
    assert_eq!(
        sub.assemble(&[0, 1], augment, seeds).unwrap(),
        cached
            .subset(&[7, 0])
            .assemble(&[0, 1], augment, seeds)
            .unwrap()
    );
}

#[test]
fn prefetched_batches_equal_inline_ones_in_request_order() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path());
    let data = Arc::new(load_dataset(&config(dir.path(), false), 8, 3).unwrap());
    let augment = config(dir.path(), false).augment();
    let plan: Vec<Vec<usize>> = vec![vec![0, 1, 2], vec![3, 4, 5], vec![11, 10, 9]];
    let mut loader = Prefetcher::new(Arc::clone(&data), augment);
    for (id, indices) in plan.iter().enumerate() {
        loader.request(id as u64, indices.clone(), (0..3).map(seeds).collect());
    }
    assert_eq!(loader.pending(), 3);
    // Asking out of order is a clear error, not a wrong batch.
    assert!(matches!(
        loader.receive(1),
        Err(DataError::InvalidArgument { .. })
    ));
    for (id, indices) in plan.iter().enumerate() {
        let got = loader.receive(id as u64).unwrap();
        assert_eq!(got, data.assemble(indices, augment, seeds).unwrap());
    }
    assert_eq!(loader.pending(), 0);
}

#[test]
fn a_file_that_breaks_after_the_load_is_replaced_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path());
    let data = load_dataset(&config(dir.path(), false), 8, 3).unwrap();
    let augment = config(dir.path(), false).augment();
    let gone = dir.path().join("a/01.png");
    let truncated = dir.path().join("b/02.png");
    fs::remove_file(&gone).unwrap();
    let bytes = fs::read(&truncated).unwrap();
    fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let (i_gone, i_trunc) = (1, 8);
    assert_eq!(data.keys[i_gone], "a/01.png");
    assert_eq!(data.keys[i_trunc], "b/02.png");

    let batch = data
        .assemble(&[i_gone, 6, i_trunc, 3], augment, seeds)
        .unwrap();
    assert_eq!(batch.shape, [4, 3, 8, 8]);
    let failed: Vec<_> = batch.failed.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(failed, [gone.clone(), truncated.clone()]);
    assert!(
        batch.failed[0].1.contains("missing") || batch.failed[0].1.contains("No such file"),
        "{}",
        batch.failed[0].1
    );
    // Each stand-in is the next image of the batch that loaded, with its label.
    assert_eq!(
        batch.labels,
        [
            data.labels[6],
            data.labels[6],
            data.labels[3],
            data.labels[3]
        ]
    );
    assert!(batch.pixels.iter().all(|v| (-1.0..=1.0).contains(v)));

    // Every file of the batch gone: an error naming one, not an empty or garbage batch.
    match data.assemble(&[i_gone, i_trunc], augment, seeds) {
        Err(DataError::Empty { note, .. }) => assert!(note.contains("01.png"), "{note}"),
        other => panic!("expected Empty, got {other:?}"),
    }

    // Under on_error = "fail" the first broken file stops the batch, named.
    let strict = load_dataset(
        &DataConfig {
            on_error: ErrorPolicy::Fail,
            ..config(dir.path(), false)
        },
        8,
        3,
    );
    // The load itself already meets the broken files now.
    assert!(matches!(strict, Err(DataError::Unusable { .. })));
    let mut data_fail = data.clone();
    if let oxidiff_data::Images::Streamed(stream) = &mut data_fail.images {
        stream.on_error = ErrorPolicy::Fail;
    }
    match data_fail.assemble(&[6, i_gone], augment, seeds) {
        Err(e @ DataError::Unusable { .. }) => {
            let message = e.to_string();
            assert!(
                message.contains("01.png") && message.contains("batch time"),
                "{message}"
            );
        }
        other => panic!("expected Unusable, got {other:?}"),
    }
}

#[test]
fn cache_false_is_refused_for_array_sources() {
    for source in [DataSource::Digits, DataSource::FashionMnist] {
        let err = load_dataset(
            &DataConfig {
                source,
                cache: false,
                ..Default::default()
            },
            8,
            1,
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("data.cache") && message.contains("folder"),
            "{message}"
        );
    }
}
