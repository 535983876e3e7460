//! Text-to-image training: a run naming a text encoder (`text.encoder`) draws each image's
//! caption per step (dropped to the empty prompt for guidance), cross-attends to the frozen
//! encoder's states of it, reports the captions' token lengths, writes its grids from the
//! held-out captions with their prompts beside them, and samples from a prompt with
//! classifier-free guidance; bad combinations are refused naming the key.
//!
//! The encoder is a small random `CLIPTextModel` saved by oxidiff with CLIP's own tokenizer
//! (the vocabulary shipped in assets/clip), so no fixture or Python is needed.

mod common;

use std::path::Path;

use burn::tensor::Device;
use oxidiff_data::DataReport;
use oxidiff_models::text::{ClipTextConfig, ClipTextModel, TextTokenizer};
use oxidiff_train::eval::{EvalOptions, PromptFollowingOptions, evaluate_checkpoint};
use oxidiff_train::{RunConfig, RunEnd, Trainer, generate, load_for_sampling};

use common::{SHAPES, captioned_images, max_abs_diff, serial, tiny_config, values, write_images};

/// A small random CLIP text encoder with CLIP's tokenizer, as a transformers directory.
fn clip_encoder(dir: &Path) {
    let model = ClipTextModel::new(ClipTextConfig::small(), &Device::flex());
    model.save(dir).unwrap();
    TextTokenizer::clip().unwrap().save_pretrained(dir).unwrap();
}

fn text_config(data: &Path, encoder: &Path, extra: &[&str]) -> RunConfig {
    let mut all = vec![
        "data.captions=\"sidecar\"".to_string(),
        format!("text.encoder=\"{}\"", encoder.display()),
        "text.max_length=12".into(),
        "data.validation_fraction=0.25".into(),
        "train.batch_size=8".into(),
        "train.steps=4".into(),
        "train.sample_every=4".into(),
        "sample.steps=3".into(),
        "sample.guidance_scale=3.0".into(),
    ];
    all.extend(extra.iter().map(|s| s.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    tiny_config(data, &all)
}

#[test]
fn a_text_run_trains_on_captions_and_samples_from_a_prompt() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    captioned_images(&data, 16);
    let encoder = tmp.path().join("clip");
    clip_encoder(&encoder);
    let device = Device::flex();

    let config = text_config(&data, &encoder, &[]);
    let unet = config.unet().unwrap();
    assert_eq!(unet.cross_attention_dim, Some(64), "the encoder's width");
    let run = tmp.path().join("run");
    let mut trainer = Trainer::new(config, &run, &device).unwrap();
    assert_eq!(trainer.run(None, &mut |_| {}).unwrap(), RunEnd::Finished);

    let report: DataReport =
        serde_json::from_str(&std::fs::read_to_string(run.join("data_report.json")).unwrap())
            .unwrap();
    let captions = report.captions.expect("a captions section");
    assert_eq!((captions.captioned, captions.missing), (15, 1));
    assert_eq!(captions.missing_images, ["img-15.png"]);
    let tokens = captions.tokens.expect("token lengths");
    assert_eq!(tokens.context_length, 12);
    assert_eq!(tokens.captions, 15, "distinct captions");
    // "a vertical line, number 3": start + 6 text tokens + end.
    assert!(tokens.min >= 7 && tokens.max <= 10, "{tokens:?}");
    assert_eq!(tokens.truncated, 0);

    // The grid's prompts are the held-out images' captions, one per line.
    let grid = run.join("samples").join("step-0000004.png");
    assert!(grid.is_file(), "the final grid");
    let prompts = std::fs::read_to_string(grid.with_extension("txt")).unwrap();
    assert_eq!(prompts.lines().count(), 4, "{prompts}");
    drop(trainer);

    let loaded = load_for_sampling(&run, true, &device).unwrap();
    assert!(loaded.text.is_some(), "the run's encoder is loaded with it");
    let draw = |prompt: &str, scale: f64| {
        let guided = loaded
            .prompts_guidance(&[prompt.to_string()], "", scale, &device)
            .unwrap()
            .expect("a text-to-image model");
        let shape = [2, 1, 8, 8];
        values(
            generate(
                &guided,
                &loaded.diffusion,
                &loaded.config.sample,
                shape,
                7,
                &device,
                &mut |_, _| {},
            )
            .unwrap(),
        )
    };
    let vertical = draw("a vertical line", 3.0);
    assert!(vertical.iter().all(|v| v.is_finite()));
    assert_eq!(vertical, draw("a vertical line", 3.0), "seeded");
    let horizontal = draw("a horizontal line", 3.0);
    assert!(
        max_abs_diff(&vertical, &horizontal) > 1e-6,
        "the prompt reaches the UNet through cross-attention"
    );
    // Scale 0 is the unconditional model whatever the prompt.
    assert!(
        max_abs_diff(
            &draw("a vertical line", 0.0),
            &draw("a horizontal line", 0.0)
        ) < 1e-6
    );
}

#[test]
fn prompt_following_classifies_each_sample_against_its_prompts_class() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Two classes (a folder each) of images, each captioned with its own words.
    for class in ["lines", "diagonals"] {
        let dir = data.join(class);
        write_images(&dir, 8);
        for i in 0..8 {
            let caption = format!("{}, {class} number {i}", SHAPES[i % 4]);
            std::fs::write(dir.join(format!("img-{i:02}.txt")), caption).unwrap();
        }
    }
    let encoder = tmp.path().join("clip");
    clip_encoder(&encoder);
    let device = Device::flex();
    let run = tmp.path().join("run");
    let config = text_config(&data, &encoder, &[]);
    Trainer::new(config, &run, &device)
        .unwrap()
        .run(None, &mut |_| {})
        .unwrap();

    let options = EvalOptions {
        batch_size: 3,
        nll: None,
        prompts: Some(PromptFollowingOptions {
            guidance: Some(2.0),
        }),
        ..EvalOptions::default()
    };
    let result = evaluate_checkpoint(&run, &options, &device, &mut |_, _, _| {}).unwrap();
    let p = result.prompt_following.clone().expect("prompt following");
    assert_eq!(p.samples, 4, "one per held-out image (a quarter of 16)");
    assert_eq!(p.guidance, 2.0);
    let classes: Vec<&str> = p.per_class.iter().map(|c| c.class.as_str()).collect();
    assert!(classes.iter().all(|c| ["diagonals", "lines"].contains(c)));
    assert_eq!(p.per_class.iter().map(|c| c.samples).sum::<usize>(), 4);
    let right: usize = p.per_class.iter().map(|c| c.right).sum();
    assert!((p.rate - right as f64 / 4.0).abs() < 1e-12, "{p:?}");
    assert!((0.0..=1.0).contains(&p.chance) && (0.0..=1.0).contains(&p.classifier_accuracy));
    // Every caption names its own image ("…, lines number 3"): none held out was trained on.
    assert_eq!(p.unseen_prompts, 4);
    let again = evaluate_checkpoint(&run, &options, &device, &mut |_, _, _| {}).unwrap();
    assert_eq!(again.prompt_following, Some(p), "seeded");

    // Images of one class give the samples nothing to be checked against: refused up front.
    let flat = tmp.path().join("flat");
    captioned_images(&flat, 8);
    let one_class = tmp.path().join("one-class");
    let config = text_config(&flat, &encoder, &["train.steps=1"]);
    Trainer::new(config, &one_class, &device)
        .unwrap()
        .run(None, &mut |_| {})
        .unwrap();
    let message = evaluate_checkpoint(&one_class, &options, &device, &mut |_, _, _| {})
        .unwrap_err()
        .to_string();
    assert!(message.contains("class labels"), "{message}");
}

#[test]
fn captions_are_drawn_per_step_and_seeded_by_the_run() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    captioned_images(&data, 16);
    let encoder = tmp.path().join("clip");
    clip_encoder(&encoder);
    let device = Device::flex();
    let config = text_config(&data, &encoder, &["train.caption_dropout=0.5"]);
    let mut trainer = Trainer::new(config.clone(), &tmp.path().join("a"), &device).unwrap();
    let first = trainer.data.step_batch(0).unwrap();
    assert_eq!(first.captions.len(), 8);
    let dropped = first.captions.iter().filter(|c| c.is_empty()).count();
    assert!(
        (1..8).contains(&dropped),
        "about half dropped to the empty prompt: {:?}",
        first.captions
    );
    for (caption, &i) in first.captions.iter().zip(&first.indices) {
        let own = trainer.data.dataset.captions_of(i);
        assert!(
            caption.is_empty() || own.contains(caption),
            "{caption:?} is image {i}'s"
        );
    }
    // The same step of another run of the same config draws the same captions.
    let mut again = Trainer::new(config, &tmp.path().join("b"), &device).unwrap();
    assert_eq!(again.data.step_batch(0).unwrap().captions, first.captions);
    assert_ne!(again.data.step_batch(1).unwrap().captions, first.captions);
}

#[test]
fn text_runs_refuse_what_cannot_work_naming_the_key() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    captioned_images(&data, 8);
    let encoder = tmp.path().join("clip");
    clip_encoder(&encoder);
    let device = Device::flex();
    let refused = |overrides: &[&str]| -> String {
        let mut all = vec![
            "data.source=folder".to_string(),
            format!("data.path=\"{}\"", data.display()),
        ];
        all.extend(overrides.iter().map(|s| s.to_string()));
        match RunConfig::default_with(&all) {
            Err(e) => e.to_string(),
            Ok(config) => match Trainer::new(config, &tmp.path().join("run"), &device) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{overrides:?} was accepted"),
            },
        }
    };
    let encoder_key = format!("text.encoder=\"{}\"", encoder.display());
    let message = refused(&["data.captions=\"sidecar\""]);
    assert!(message.contains("text.encoder is unset"), "{message}");
    let message = refused(&[&encoder_key]);
    assert!(message.contains("data.captions = \"none\""), "{message}");
    let message = refused(&[
        &encoder_key,
        "data.captions=\"sidecar\"",
        "model.num_classes=4",
    ]);
    assert!(message.contains("model.num_classes"), "{message}");
    let message = refused(&[
        "text.encoder=\"/no/such/encoder\"",
        "data.captions=\"sidecar\"",
    ]);
    assert!(
        message.contains("text.encoder") && message.contains("/no/such/encoder"),
        "{message}"
    );
    let message = refused(&[
        &encoder_key,
        "data.captions=\"sidecar\"",
        "text.max_length=500",
    ]);
    assert!(message.contains("text.max_length"), "{message}");
    // CLIP's tokenizer beside an encoder with fewer embeddings than it has ids is refused
    // before any step (its ids would index past the table).
    let small_vocab = tmp.path().join("small-vocab");
    ClipTextModel::new(
        ClipTextConfig {
            vocab_size: 1000,
            ..ClipTextConfig::small()
        },
        &Device::flex(),
    )
    .save(&small_vocab)
    .unwrap();
    TextTokenizer::clip()
        .unwrap()
        .save_pretrained(&small_vocab)
        .unwrap();
    let message = refused(&[
        &format!("text.encoder=\"{}\"", small_vocab.display()),
        "data.captions=\"sidecar\"",
    ]);
    assert!(message.contains("do not belong together"), "{message}");
    // A cross-attention UNet (the latent-text preset) without an encoder to attend to.
    let message = refused(&[
        "model.preset=\"latent-text\"",
        "model.image_size=8",
        "model.in_channels=1",
    ]);
    assert!(
        message.contains("no text.encoder") && message.contains("latent-text"),
        "{message}"
    );
}
