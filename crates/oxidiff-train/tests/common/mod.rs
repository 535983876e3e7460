#![allow(dead_code)]

use std::path::Path;

use oxidiff_train::RunConfig;

/// Writes `n` distinct 8×8 grayscale PNGs (simple shapes) into `dir`.
pub fn write_images(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let img = image::GrayImage::from_fn(8, 8, |x, y| {
            let on = match i % 4 {
                0 => x == (i as u32 % 8),
                1 => y == (i as u32 % 8),
                2 => (x + y) % 8 == i as u32 % 8,
                _ => x.abs_diff(y) <= (i as u32 % 3),
            };
            image::Luma([if on { 255 } else { 0 }])
        });
        img.save(dir.join(format!("img-{i:02}.png"))).unwrap();
    }
}

/// A very small run on the images in `data_dir`.
pub fn tiny_config(data_dir: &Path, extra: &[&str]) -> RunConfig {
    let mut overrides: Vec<String> = vec![
        "data.source=folder".into(),
        format!("data.path=\"{}\"", data_dir.display()),
        "model.model_channels=16".into(),
        "model.norm_groups=4".into(),
        "train.batch_size=16".into(),
        "train.warmup_steps=5".into(),
        "train.checkpoint_every=1000".into(),
        "train.sample_every=1000".into(),
        "sample.num=4".into(),
        "sample.steps=5".into(),
    ];
    overrides.extend(extra.iter().map(|s| s.to_string()));
    RunConfig::default_with(&overrides).unwrap()
}
