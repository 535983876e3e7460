use oxidiff_data::{DIGITS_CLASSES, DIGITS_LEN, DataConfig, load_dataset, load_digits};

#[test]
fn embedded_digits_decode() {
    let (images, labels) = load_digits().unwrap();
    assert_eq!(labels.len(), DIGITS_LEN);
    assert_eq!(images.len(), DIGITS_LEN * 64);
    assert!(images.iter().all(|v| (-1.0..=1.0).contains(v)));
    // Both ends of the range occur: background is 0/16, full ink 16/16.
    assert!(images.contains(&-1.0));
    assert!(images.contains(&1.0));
    // The pixel grid is v/16: every value is a multiple of 1/8 in [-1, 1].
    assert!(images.iter().all(|v| ((v + 1.0) * 8.0).fract() == 0.0));

    let mut hist = [0usize; DIGITS_CLASSES];
    for &l in &labels {
        hist[l] += 1;
    }
    // Published class counts of the UCI test split.
    assert_eq!(hist, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
    // First row of the file is a 0 whose top-left pixels are 0, 0, 5, 13.
    assert_eq!(labels[0], 0);
    assert_eq!(
        &images[..4],
        &[-1.0, -1.0, 5.0 / 8.0 - 1.0, 13.0 / 8.0 - 1.0]
    );
}

#[test]
fn digits_dataset_native_and_resized() {
    let native = load_dataset(&DataConfig::default(), 8, 1).unwrap();
    let (raw, labels) = load_digits().unwrap();
    assert_eq!(native.len(), DIGITS_LEN);
    assert_eq!(
        (native.channels, native.size, native.num_classes),
        (1, 8, 10)
    );
    assert_eq!(native.class_names[3], "3");
    assert_eq!(
        native.cached().unwrap(),
        raw,
        "8×8 grayscale must be the data untouched"
    );
    assert_eq!(native.labels, labels);
    assert!(native.skipped.is_empty());

    let rgb16 = load_dataset(&DataConfig::default(), 16, 3).unwrap();
    assert_eq!(rgb16.cached().unwrap().len(), DIGITS_LEN * 3 * 16 * 16);
    assert!(
        rgb16
            .cached()
            .unwrap()
            .iter()
            .all(|v| (-1.0..=1.0).contains(v))
    );
    let img = rgb16.image(5);
    let plane = 16 * 16;
    assert_eq!(
        &img[..plane],
        &img[plane..2 * plane],
        "gray replicated into G"
    );
    assert_eq!(&img[..plane], &img[2 * plane..], "gray replicated into B");
    // Upscaling keeps the mean brightness roughly where it was.
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    let m8 = mean(native.image(5));
    let m16 = mean(&img[..plane]);
    assert!((m8 - m16).abs() < 0.1, "{m8} vs {m16}");

    let small = load_dataset(&DataConfig::default(), 4, 1).unwrap();
    assert_eq!(small.image(0).len(), 16);
    assert!(
        small
            .cached()
            .unwrap()
            .iter()
            .all(|v| (-1.0..=1.0).contains(v))
    );
}

#[test]
fn batch_is_a_tensor_of_the_chosen_images() {
    use burn::tensor::Device;
    let data = load_dataset(&DataConfig::default(), 8, 1).unwrap();
    let idx = [3usize, 0, 1796];
    let t = data.batch(&idx, &Device::flex()).unwrap();
    assert_eq!(t.dims(), [3, 1, 8, 8]);
    let values = t.into_data().try_to_vec::<f32>().unwrap();
    let expected: Vec<f32> = idx.iter().flat_map(|&i| data.image(i).to_vec()).collect();
    assert_eq!(values, expected);
    assert_eq!(
        data.labels_of(&idx),
        vec![data.labels[3], data.labels[0], data.labels[1796]]
    );
    assert_eq!(data.class_counts().iter().sum::<usize>(), DIGITS_LEN);
}

#[test]
fn stored_images_are_larger_and_batches_are_crops_of_them() {
    use burn::tensor::Device;
    use oxidiff_data::{CropMode, DataConfig, load_dataset};
    let config = DataConfig {
        resize: Some(12),
        crop: CropMode::Random,
        flip: true,
        ..Default::default()
    };
    let data = load_dataset(&config, 8, 1).unwrap();
    assert_eq!(
        (data.size, data.stored_size, data.image_len()),
        (8, 12, 144)
    );
    let device = Device::flex();
    let centre = data.batch(&[0, 1], &device).unwrap();
    assert_eq!(centre.dims(), [2, 1, 8, 8]);
    let values = |seed: u64| {
        data.batch_with(&[0], config.augment(), |_| Some(seed), &device)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    let crops: std::collections::HashSet<Vec<u32>> = (0..20)
        .map(|s| values(s).iter().map(|v| v.to_bits()).collect())
        .collect();
    assert!(
        crops.len() > 5,
        "random crops and flips differ: {}",
        crops.len()
    );
    assert_eq!(values(3), values(3), "the same seed gives the same crop");
    for v in values(7) {
        assert!((-1.0..=1.0).contains(&v));
    }
    let too_small = DataConfig {
        resize: Some(6),
        ..Default::default()
    };
    let err = load_dataset(&too_small, 8, 1).unwrap_err().to_string();
    assert!(err.starts_with("data.resize"), "{err}");
}
