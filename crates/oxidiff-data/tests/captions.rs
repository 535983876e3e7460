//! Captions: diffusers' `metadata.jsonl`, kohya's sidecar files, a manifest's caption column and
//! templates over class names; the caption drawn per step; missing captions in the report.

use std::fs;
use std::path::Path;

use image::{Rgb, RgbImage};
use oxidiff_data::{
    CaptionOptions, CaptionSource, Captions, DataConfig, DataError, DataReport, DataSource,
    ErrorPolicy, FolderLabels, Split, draw_caption, load_dataset,
};

fn save_solid(path: &Path, shade: u8) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    RgbImage::from_pixel(8, 8, Rgb([shade, 0, 0]))
        .save(path)
        .unwrap();
}

fn folder(root: &Path, captions: CaptionSource) -> DataConfig {
    DataConfig {
        source: DataSource::Folder,
        path: Some(root.to_path_buf()),
        captions,
        ..Default::default()
    }
}

/// cats/a.png, cats/b.png, dogs/c.png, dogs/d.png, each a different shade (so pixels can be
/// matched to their captions).
fn write_classes(root: &Path) {
    for (i, name) in ["cats/a.png", "cats/b.png", "dogs/c.png", "dogs/d.png"]
        .into_iter()
        .enumerate()
    {
        save_solid(&root.join(name), 40 * i as u8);
    }
}

fn captions(d: &oxidiff_data::Dataset) -> Vec<Vec<String>> {
    (0..d.len())
        .map(|i| d.captions_of(i).into_owned())
        .collect()
}

fn report(config: &DataConfig, d: &oxidiff_data::Dataset) -> DataReport {
    let split = Split {
        train: (0..d.len()).collect(),
        validation: Vec::new(),
    };
    DataReport::new(config, d, &split)
}

#[test]
fn metadata_jsonl_strings_lists_and_missing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_classes(root);
    fs::write(
        root.join("metadata.jsonl"),
        concat!(
            "{\"file_name\": \"cats/a.png\", \"text\": \"a tabby cat\", \"extra\": 1}\n",
            "\n",
            "{\"file_name\": \"./dogs/c.png\", \"text\": [\"a dog\", \"a brown dog\"]}\n",
            "{\"file_name\": \"dogs/d.png\", \"text\": \"  \"}\n",
            "{\"file_name\": \"nowhere.png\", \"text\": \"unused\"}\n",
        ),
    )
    .unwrap();
    let config = folder(root, CaptionSource::Metadata);
    let d = load_dataset(&config, 8, 3).unwrap();
    assert_eq!(
        d.keys,
        ["cats/a.png", "cats/b.png", "dogs/c.png", "dogs/d.png"]
    );
    assert_eq!(
        captions(&d),
        [
            vec!["a tabby cat".to_string()],
            vec![],
            vec!["a dog".to_string(), "a brown dog".to_string()],
            vec![],
        ]
    );
    let r = report(&config, &d).captions.unwrap();
    assert_eq!((r.captioned, r.missing, r.several), (2, 2, 1));
    assert_eq!(r.missing_images, ["cats/b.png", "dogs/d.png"]);
    assert_eq!(r.source, "metadata");
    // A missing caption is drawn as the empty prompt.
    assert_eq!(
        draw_caption(&d.captions_of(1), &CaptionOptions::default(), 9),
        ""
    );

    // Another field, by caption_column.
    fs::write(
        root.join("metadata.jsonl"),
        "{\"file_name\": \"cats/b.png\", \"caption\": \"b\", \"text\": \"not this\"}\n",
    )
    .unwrap();
    let config = DataConfig {
        caption_column: Some("caption".into()),
        ..folder(root, CaptionSource::Metadata)
    };
    let d = load_dataset(&config, 8, 3).unwrap();
    assert_eq!(d.captions_of(1).as_ref(), ["b"]);
    assert!(d.captions_of(0).is_empty());
}

#[test]
fn bad_metadata_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_classes(root);
    let config = folder(root, CaptionSource::Metadata);
    let e = load_dataset(&config, 8, 1).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }), "{e:?}");
    assert!(e.to_string().contains("metadata.jsonl"), "{e}");

    let metadata = root.join("metadata.jsonl");
    for (text, line, says) in [
        (
            "{\"file_name\": \"cats/a.png\", \"text\": \"x\"}\n{\"file_name\": ",
            2,
            "not a JSON object",
        ),
        ("\n\n{\"text\": \"x\"}\n", 3, "file_name"),
        (
            "{\"file_name\": \"cats/a.png\", \"text\": 5}\n",
            1,
            "string or a list",
        ),
        (
            "{\"file_name\": \"cats/a.png\", \"text\": \"x\"}\n{\"file_name\": \"./cats/a.png\", \"text\": \"y\"}\n",
            2,
            "first on line 1",
        ),
    ] {
        fs::write(&metadata, text).unwrap();
        let e = load_dataset(&config, 8, 1).unwrap_err();
        assert!(matches!(e, DataError::Format { .. }), "{text:?}: {e:?}");
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("{}: line {line}: ", metadata.display())),
            "{msg}"
        );
        assert!(msg.contains(says), "{msg}");
    }
    fs::write(&metadata, b"{\"file_name\": \"cats/a.png\"}\n\xff\n").unwrap();
    let msg = load_dataset(&config, 8, 1).unwrap_err().to_string();
    assert!(msg.contains("line 2: not UTF-8"), "{msg}");
}

#[test]
fn sidecar_captions_with_the_configured_extension() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_classes(root);
    fs::write(root.join("cats/a.txt"), "1girl, solo, smile\n").unwrap();
    fs::write(root.join("cats/b.caption"), "from the other extension").unwrap();
    fs::write(root.join("dogs/c.txt"), "\u{feff}first\n\n  second  \n").unwrap();
    fs::write(root.join("dogs/d.txt"), " \n").unwrap();
    let config = folder(root, CaptionSource::Sidecar);
    let d = load_dataset(&config, 8, 1).unwrap();
    assert_eq!(
        captions(&d),
        [
            vec!["1girl, solo, smile".to_string()],
            vec![],
            vec!["first".to_string(), "second".to_string()],
            vec![],
        ]
    );
    let r = report(&config, &d).captions.unwrap();
    assert_eq!((r.captioned, r.missing, r.several), (2, 2, 1));

    let config = DataConfig {
        caption_extension: Some(".caption".into()),
        ..folder(root, CaptionSource::Sidecar)
    };
    let d = load_dataset(&config, 8, 1).unwrap();
    assert_eq!(d.captions_of(1).as_ref(), ["from the other extension"]);
    assert_eq!(d.captions_of(0).len(), 0);
}

#[test]
fn unreadable_caption_files_skip_the_image_or_stop_under_fail() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_classes(root);
    fs::write(root.join("cats/a.txt"), "a").unwrap();
    fs::write(root.join("cats/b.txt"), b"ok\n\xfe\xff").unwrap();
    fs::create_dir(root.join("dogs/c.txt")).unwrap();
    fs::write(root.join("dogs/d.txt"), "d").unwrap();
    for cache in [true, false] {
        let config = DataConfig {
            cache,
            ..folder(root, CaptionSource::Sidecar)
        };
        let d = load_dataset(&config, 8, 1).unwrap();
        assert_eq!(d.keys, ["cats/a.png", "dogs/d.png"], "cache = {cache}");
        assert_eq!(captions(&d), [vec!["a".to_string()], vec!["d".to_string()]]);
        assert_eq!(d.skipped.len(), 2, "{:?}", d.skipped);
        let (path, reason) = &d.skipped[0];
        assert!(path.ends_with("cats/b.png"), "{path:?}");
        assert!(
            reason.contains("cats/b.txt") && reason.contains("line 2: not UTF-8"),
            "{reason}"
        );
        assert!(d.skipped[1].1.contains("dogs/c.txt"), "{:?}", d.skipped[1]);
        if cache {
            // The pixels stay with their images.
            let all = load_dataset(&folder(root, CaptionSource::None), 8, 1).unwrap();
            assert_eq!(d.image(0), all.image(0));
            assert_eq!(d.image(1), all.image(3));
        }
    }
    let config = DataConfig {
        on_error: ErrorPolicy::Fail,
        ..folder(root, CaptionSource::Sidecar)
    };
    let e = load_dataset(&config, 8, 1).unwrap_err();
    assert!(matches!(e, DataError::Unusable { .. }), "{e:?}");
    assert!(e.to_string().contains("b.txt"), "{e}");
}

#[test]
fn manifest_caption_column() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    save_solid(&root.join("x.png"), 0);
    save_solid(&root.join("y.png"), 0);
    save_solid(&root.join("z.png"), 0);
    let manifest = root.join("m.csv");
    fs::write(
        &manifest,
        "path,label,caption\nx.png,cat,\"a cat, sleeping\"\ny.png,dog\nz.png,dog,\n",
    )
    .unwrap();
    let config = DataConfig {
        source: DataSource::Manifest,
        path: Some(manifest.clone()),
        captions: CaptionSource::Manifest,
        ..Default::default()
    };
    let d = load_dataset(&config, 8, 1).unwrap();
    assert_eq!(
        captions(&d),
        [vec!["a cat, sleeping".to_string()], vec![], vec![]]
    );
    let r = report(&config, &d).captions.unwrap();
    assert_eq!(r.missing_images, ["y.png", "z.png"]);

    // An unquoted comma in a caption is refused, naming the line.
    fs::write(&manifest, "x.png,cat,a cat, sleeping\n").unwrap();
    let msg = load_dataset(&config, 8, 1).unwrap_err().to_string();
    assert!(msg.contains("line 1: expected 2 or 3 fields"), "{msg}");
    assert!(msg.contains("double-quoted"), "{msg}");
    // Without captions = "manifest" a third column stays an error, and says what reads it.
    let plain = DataConfig {
        captions: CaptionSource::None,
        ..config.clone()
    };
    fs::write(&manifest, "x.png,cat,a cat\n").unwrap();
    let msg = load_dataset(&plain, 8, 1).unwrap_err().to_string();
    assert!(msg.contains("captions = \"manifest\""), "{msg}");
    assert!(
        report(&plain, &load_dataset(&DataConfig::default(), 8, 1).unwrap())
            .captions
            .is_none()
    );

    // Sidecar files work for the files a manifest lists, too.
    fs::write(&manifest, "x.png,cat\ny.png,dog\n").unwrap();
    fs::write(root.join("y.txt"), "why").unwrap();
    let sidecar = DataConfig {
        captions: CaptionSource::Sidecar,
        ..config
    };
    let d = load_dataset(&sidecar, 8, 1).unwrap();
    assert_eq!(captions(&d), [vec![], vec!["why".to_string()]]);
}

#[test]
fn templates_use_the_class_names() {
    let config = DataConfig {
        captions: CaptionSource::Templates,
        caption_templates: vec!["a photo of a {}".into(), "a drawing of the digit {}".into()],
        ..Default::default()
    };
    let d = load_dataset(&config, 8, 1).unwrap();
    assert!(matches!(d.captions, Some(Captions::Templates(_))));
    for i in [0, 1, 500] {
        let class = &d.class_names[d.labels[i]];
        assert_eq!(
            d.captions_of(i).as_ref(),
            [
                format!("a photo of a {class}"),
                format!("a drawing of the digit {class}")
            ]
        );
    }
    // Both templates are drawn, about equally often.
    let captions = d.captions_of(3);
    let first = (0..2000)
        .filter(|&s| draw_caption(&captions, &CaptionOptions::default(), s) == captions[0])
        .count();
    assert!((850..1150).contains(&first), "{first}");
    let r = report(&config, &d).captions.unwrap();
    assert_eq!((r.captioned, r.missing, r.several), (d.len(), 0, d.len()));

    // A folder's sub-folder names are the class names.
    let dir = tempfile::tempdir().unwrap();
    write_classes(dir.path());
    let config = DataConfig {
        caption_templates: vec!["a photo of {}".into()],
        ..folder(dir.path(), CaptionSource::Templates)
    };
    let d = load_dataset(&config, 8, 1).unwrap();
    assert_eq!(d.captions_of(0).as_ref(), ["a photo of cats"]);
    assert_eq!(d.captions_of(3).as_ref(), ["a photo of dogs"]);
}

#[test]
fn subsets_keep_captions_with_their_images() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_classes(root);
    for (name, text) in [("cats/a", "A"), ("cats/b", "B"), ("dogs/d", "D")] {
        fs::write(root.join(format!("{name}.txt")), text).unwrap();
    }
    let d = load_dataset(&folder(root, CaptionSource::Sidecar), 8, 3).unwrap();
    let sub = d.subset(&[3, 0, 2]);
    assert_eq!(sub.keys, ["dogs/d.png", "cats/a.png", "dogs/c.png"]);
    assert_eq!(
        captions(&sub),
        [vec!["D".to_string()], vec!["A".to_string()], vec![]]
    );
    assert_eq!(sub.image(0), d.image(3));
    let drawn = sub.draw_captions(&[0, 1, 2], &CaptionOptions::default(), |k| k as u64);
    assert_eq!(drawn, ["D", "A", ""]);
}

#[test]
fn dropout_and_shuffle_are_seeded_and_keep_their_rates() {
    let captions = vec![
        "sks, red, round, shiny, small".to_string(),
        "sks, blue, square".to_string(),
    ];
    let options = CaptionOptions {
        dropout_rate: 0.1,
        shuffle: true,
        keep_tokens: 1,
    };
    let draws: Vec<String> = (0..10_000)
        .map(|s| draw_caption(&captions, &options, s))
        .collect();
    // Same seed, same caption.
    for s in [0u64, 17, 9999] {
        assert_eq!(draw_caption(&captions, &options, s), draws[s as usize]);
    }
    let dropped = draws.iter().filter(|c| c.is_empty()).count();
    assert!((900..1100).contains(&dropped), "dropout ≈ 10%: {dropped}");
    let kept: Vec<&String> = draws.iter().filter(|c| !c.is_empty()).collect();
    assert!(
        kept.iter().all(|c| c.starts_with("sks, ")),
        "the first tag stays"
    );
    let blue = kept.iter().filter(|c| c.contains("blue")).count();
    let half = kept.len() / 2;
    assert!(
        blue.abs_diff(half) < kept.len() / 20,
        "{blue} of {}",
        kept.len()
    );
    let shuffled_first = kept
        .iter()
        .filter(|c| c.contains("red"))
        .filter(|c| !c.starts_with("sks, red"))
        .count();
    assert!(shuffled_first > 0, "tags after the first are shuffled");
    // No shuffle, no dropout: the caption as written.
    let plain = CaptionOptions::default();
    assert!(
        (0..100)
            .map(|s| draw_caption(&captions, &plain, s))
            .all(|c| captions.contains(&c))
    );
    let always = CaptionOptions {
        dropout_rate: 1.0,
        ..plain
    };
    assert_eq!(draw_caption(&captions, &always, 3), "");
}

#[test]
fn caption_keys_are_validated_by_name() {
    let key = |c: DataConfig| match c.validate().unwrap_err() {
        DataError::InvalidConfig { key, .. } => key,
        other => panic!("{other:?}"),
    };
    let folder_at = |captions| DataConfig {
        source: DataSource::Folder,
        path: Some("/data".into()),
        captions,
        ..Default::default()
    };
    assert_eq!(
        key(DataConfig {
            captions: CaptionSource::Metadata,
            ..Default::default()
        }),
        "captions"
    );
    assert_eq!(key(folder_at(CaptionSource::Manifest)), "captions");
    assert_eq!(
        key(folder_at(CaptionSource::Templates)),
        "caption_templates"
    );
    assert_eq!(
        key(DataConfig {
            caption_templates: vec!["a photo".into()],
            ..folder_at(CaptionSource::Templates)
        }),
        "caption_templates[0]"
    );
    assert_eq!(
        key(DataConfig {
            caption_templates: vec!["a photo of {}".into()],
            ..folder_at(CaptionSource::Sidecar)
        }),
        "caption_templates"
    );
    for ext in ["txt", ".", "a/.txt"] {
        assert_eq!(
            key(DataConfig {
                caption_extension: Some(ext.into()),
                ..folder_at(CaptionSource::Sidecar)
            }),
            "caption_extension"
        );
    }
    assert_eq!(
        key(DataConfig {
            caption_extension: Some(".txt".into()),
            ..folder_at(CaptionSource::Metadata)
        }),
        "caption_extension"
    );
    assert_eq!(
        key(DataConfig {
            caption_column: Some("caption".into()),
            ..folder_at(CaptionSource::Sidecar)
        }),
        "caption_column"
    );
    assert_eq!(
        key(DataConfig {
            shuffle_caption: true,
            ..folder_at(CaptionSource::None)
        }),
        "shuffle_caption"
    );
    assert_eq!(
        key(DataConfig {
            keep_tokens: 1,
            ..folder_at(CaptionSource::Sidecar)
        }),
        "keep_tokens"
    );
    DataConfig {
        shuffle_caption: true,
        keep_tokens: 2,
        caption_extension: Some(".caption".into()),
        ..folder_at(CaptionSource::Sidecar)
    }
    .validate()
    .unwrap();
    // folder_labels is independent of captions.
    DataConfig {
        folder_labels: FolderLabels::None,
        ..folder_at(CaptionSource::Metadata)
    }
    .validate()
    .unwrap();
}
