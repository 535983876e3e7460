use oxidiff_data::{DataError, GRID_PADDING, save_grid, tensor_to_grid_image};

#[test]
fn grid_round_trips_through_png() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("samples.png");
    let (n, size, scale, nrow) = (3usize, 8usize, 3u32, 2usize);
    // Image k is constant: -1 (black), 0 (mid), 1 (white); image 0 has one white pixel at (1, 0).
    let mut images = Vec::new();
    for k in 0..n {
        images.extend(std::iter::repeat_n(k as f32 - 1.0, size * size));
    }
    images[1] = 1.0;
    save_grid(&path, &images, n, 1, size, nrow, scale).unwrap();

    let img = image::open(&path).unwrap().to_luma8();
    let tile = size as u32 * scale;
    // 2 columns × 2 rows of 24-px tiles with 2-px padding around and between.
    assert_eq!(img.dimensions(), (2 * (tile + 2) + 2, 2 * (tile + 2) + 2));
    let p = GRID_PADDING;
    assert_eq!(img.get_pixel(0, 0).0[0], 128, "padding");
    assert_eq!(img.get_pixel(p, p).0[0], 0, "image 0 is black");
    // Pixel (1, 0) of image 0 fills 3×3 output pixels starting at x = p + 3.
    assert_eq!(img.get_pixel(p + scale, p).0[0], 255);
    assert_eq!(img.get_pixel(p + 2 * scale - 1, p + scale - 1).0[0], 255);
    assert_eq!(img.get_pixel(p + 2 * scale, p).0[0], 0);
    assert_eq!(
        img.get_pixel(2 * p + tile, p).0[0],
        128,
        "image 1 is mid-grey (0 → 128)"
    );
    assert_eq!(
        img.get_pixel(p, 2 * p + tile).0[0],
        255,
        "image 2 starts row 2"
    );
    // The unused fourth slot is padding colour.
    assert_eq!(img.get_pixel(2 * p + tile + 5, 2 * p + tile + 5).0[0], 128);

    // No temporary file is left behind, and a second write replaces the first.
    save_grid(&path, &images[..size * size], 1, 1, size, 1, 1).unwrap();
    assert_eq!(image::open(&path).unwrap().width(), size as u32 + 4);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["samples.png"]);
}

#[test]
fn rgb_grid_keeps_channels() {
    let size = 2;
    // One image: R plane 1, G plane -1, B plane 0; values outside [-1, 1] are clipped.
    let mut images = vec![1.0; 4];
    images.extend([-1.0, -5.0, -1.0, -1.0]);
    images.extend([0.0; 4]);
    let img = tensor_to_grid_image(&images, 1, 3, size, 8, 1).to_rgb8();
    assert_eq!(img.dimensions(), (6, 6));
    assert_eq!(img.get_pixel(2, 2).0, [255, 0, 128]);
    assert_eq!(img.get_pixel(3, 2).0, [255, 0, 128]);
    assert_eq!(img.get_pixel(0, 0).0, [128, 128, 128]);
}

#[test]
fn bad_arguments_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.png");
    let e = save_grid(&path, &[0.0; 10], 1, 1, 8, 1, 1).unwrap_err();
    assert!(matches!(e, DataError::InvalidArgument { .. }), "{e:?}");
    assert!(
        e.to_string().contains("g.png") && e.to_string().contains("64"),
        "{e}"
    );
    assert!(save_grid(&path, &[0.0; 64], 1, 2, 4, 1, 1).is_err());
    assert!(save_grid(&path, &[], 0, 1, 8, 1, 1).is_err());
    let e = save_grid(
        &dir.path().join("no/such/dir/g.png"),
        &[0.0; 64],
        1,
        1,
        8,
        1,
        1,
    )
    .unwrap_err();
    assert!(matches!(e, DataError::Io { .. }), "{e:?}");
    assert!(e.to_string().contains("no/such/dir"), "{e}");
    assert!(!path.exists());
}
