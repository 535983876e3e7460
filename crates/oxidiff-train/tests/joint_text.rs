//! A text encoder trained with the UNet (`text.encoder = "scratch"`, latent-diffusion's choice,
//! or `text.train = true`): it learns through the UNet's cross-attention at its own learning
//! rate (`text.lr`), its weights go through checkpoints, resumption, sampling and export, and
//! what cannot work is refused naming the key.

mod common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use oxidiff_models::text::{ClipTextModel, TextEncoder};
use oxidiff_train::{
    JointTextTask, RunConfig, RunEnd, Trainer, export_run, generate, load_for_sampling,
};

use common::{captioned_images, max_abs_diff, serial, tiny_config, values};

/// A tiny pixel run training a 32-wide, one-layer CLIP text transformer from scratch.
fn joint_config(data: &std::path::Path, extra: &[&str]) -> RunConfig {
    let mut all = vec![
        "data.captions=\"sidecar\"",
        "text.encoder=\"scratch\"",
        "text.hidden_size=32",
        "text.num_hidden_layers=1",
        "text.num_attention_heads=2",
        "text.max_length=8",
        "train.batch_size=8",
        "train.steps=3",
        "train.lr=1e-3",
        "train.warmup_steps=1",
        "sample.steps=2",
        "sample.guidance_scale=2.0",
    ];
    all.extend_from_slice(extra);
    tiny_config(data, &all)
}

/// Every float parameter of `module`, flattened in visiting order.
fn parameters<M: Module>(module: &M) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let data = param.val().into_data().convert::<f32>();
            self.0.extend(data.try_to_vec::<f32>().unwrap());
        }
    }
    let mut collect = Collect(Vec::new());
    module.visit(&mut collect);
    collect.0
}

#[test]
fn a_scratch_encoder_trains_with_the_unet_resumes_and_samples_from_prompts() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    captioned_images(&data, 16);
    let device = Device::flex();
    let config = joint_config(&data, &["train.sample_every=3"]);
    assert_eq!(config.unet().unwrap().cross_attention_dim, Some(32));
    let run = tmp.path().join("run");
    let mut trainer = Trainer::<JointTextTask>::fresh(config, &run, &device).unwrap();
    let start = parameters(&trainer.state.model.text_encoder);
    assert_eq!(trainer.run(None, &mut |_| {}).unwrap(), RunEnd::Finished);
    let trained = parameters(&trainer.state.model.text_encoder);
    assert!(
        max_abs_diff(&start, &trained) > 1e-6,
        "the encoder learns through the cross-attention"
    );
    let grid = run.join("samples").join("step-0000003.png");
    assert!(grid.is_file() && grid.with_extension("txt").is_file());
    drop(trainer);

    // The checkpoint holds the trained encoder, and the run goes on from it.
    let mut resumed =
        Trainer::<JointTextTask>::resumed(&run, &["train.steps=5".into()], &device).unwrap();
    assert_eq!(resumed.state.step, 3);
    assert_eq!(parameters(&resumed.state.model.text_encoder), trained);
    assert_eq!(resumed.run(None, &mut |_| {}).unwrap(), RunEnd::Finished);
    assert_eq!(resumed.state.step, 5);

    // Sampling reads the EMA encoder from the same checkpoint: its states are the EMA model's.
    let loaded = load_for_sampling(&run, true, &device).unwrap();
    let text = loaded.text.as_ref().expect("the trained encoder");
    assert_eq!((text.hidden_size(), text.context_length()), (32, 8));
    let prompt = ["a vertical line".to_string()];
    let from_loaded = text.encode(&prompt, &device).unwrap();
    let tokenizer = oxidiff_models::text::TextTokenizer::clip()
        .unwrap()
        .with_context_length(8)
        .unwrap();
    let from_ema = resumed
        .state
        .ema
        .model
        .encode(&tokenizer, &prompt, &device)
        .unwrap();
    let (a, b) = (
        from_loaded.into_data().try_to_vec::<f32>().unwrap(),
        from_ema.into_data().try_to_vec::<f32>().unwrap(),
    );
    assert!(max_abs_diff(&a, &b) < 1e-6, "{}", max_abs_diff(&a, &b));
    let draw = |prompt: &str| {
        let guided = loaded
            .prompts_guidance(&[prompt.to_string()], "", 2.0, &device)
            .unwrap()
            .unwrap();
        values(
            generate(
                &guided,
                &loaded.diffusion,
                &loaded.config.sample,
                [2, 1, 8, 8],
                3,
                &device,
                &mut |_, _| {},
            )
            .unwrap(),
        )
    };
    let vertical = draw("a vertical line");
    assert!(vertical.iter().all(|v| v.is_finite()));
    assert!(max_abs_diff(&vertical, &draw("a horizontal line")) > 1e-6);
}

#[test]
fn text_lr_is_the_encoders_own_learning_rate() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    captioned_images(&data, 16);
    let device = Device::flex();
    // text.lr = 0: the encoder keeps its initial weights while the UNet trains.
    let config = joint_config(&data, &["text.lr=0.0", "train.steps=2"]);
    let mut trainer = Trainer::<JointTextTask>::fresh(config, &tmp.path().join("a"), &device)
        .expect("a run with a frozen-by-rate encoder");
    let (encoder, unet) = (
        parameters(&trainer.state.model.text_encoder),
        parameters(&trainer.state.model.unet),
    );
    trainer.run(None, &mut |_| {}).unwrap();
    assert_eq!(parameters(&trainer.state.model.text_encoder), encoder);
    assert!(max_abs_diff(&parameters(&trainer.state.model.unet), &unet) > 1e-6);

    // Half train.lr: the same update (same seed, same batches), half as long. Three steps:
    // the encoder's first gradient comes at the third, once the zero-initialised conv_out and
    // then proj_out have moved.
    let first_steps = |name: &str, extra: &[&str]| {
        let mut all = vec!["train.steps=3"];
        all.extend_from_slice(extra);
        let config = joint_config(&data, &all);
        let mut trainer =
            Trainer::<JointTextTask>::fresh(config, &tmp.path().join(name), &device).unwrap();
        let start = parameters(&trainer.state.model.text_encoder);
        trainer.run(None, &mut |_| {}).unwrap();
        let end = parameters(&trainer.state.model.text_encoder);
        end.iter()
            .zip(&start)
            .map(|(e, s)| e - s)
            .collect::<Vec<f32>>()
    };
    let full = first_steps("full", &[]);
    let half = first_steps("half", &["text.lr=5e-4"]);
    let doubled: Vec<f32> = half.iter().map(|h| 2.0 * h).collect();
    let largest = full.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(largest > 1e-5, "the step moves the encoder");
    assert!(
        max_abs_diff(&doubled, &full) < 1e-3 * largest,
        "{}",
        max_abs_diff(&doubled, &full)
    );
}

#[test]
fn an_exported_joint_run_holds_its_trained_encoder() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    captioned_images(&data, 16);
    let device = Device::flex();
    let run = tmp.path().join("run");
    let mut trainer =
        Trainer::<JointTextTask>::fresh(joint_config(&data, &[]), &run, &device).unwrap();
    trainer.run(None, &mut |_| {}).unwrap();
    let ema = parameters(&trainer.state.ema.model.text_encoder);
    drop(trainer);
    let out = tmp.path().join("export");
    export_run(&run, true, &out).unwrap();
    let exported = ClipTextModel::load(&out.join("text_encoder"), &device).unwrap();
    assert_eq!(exported.config().hidden_size, 32);
    let exported = parameters(&TextEncoder::Clip(exported));
    assert!(
        max_abs_diff(&exported, &ema) < 1e-7,
        "the trained EMA weights"
    );
    assert!(out.join("tokenizer").join("vocab.json").is_file());
}

#[test]
fn joint_text_keys_refuse_what_cannot_work_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    captioned_images(&data, 8);
    let refused = |overrides: &[&str]| -> String {
        let mut all = vec![
            "data.source=folder".to_string(),
            format!("data.path=\"{}\"", data.display()),
            "data.captions=\"sidecar\"".into(),
        ];
        all.extend(overrides.iter().map(|s| s.to_string()));
        let config = match RunConfig::default_with(&all) {
            Err(e) => return e.to_string(),
            Ok(config) => config,
        };
        match Trainer::<JointTextTask>::fresh(config, &tmp.path().join("run"), &Device::flex()) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{overrides:?} was accepted"),
        }
    };
    let message = refused(&["text.encoder=\"scratch\"", "text.train=false"]);
    assert!(message.contains("text.train"), "{message}");
    let message = refused(&["text.lr=1e-4"]);
    assert!(message.contains("text.lr"), "{message}");
    let message = refused(&["text.hidden_size=64"]);
    assert!(message.contains("text.hidden_size"), "{message}");
    let message = refused(&[
        "text.encoder=\"scratch\"",
        "text.hidden_size=30",
        "text.num_attention_heads=4",
    ]);
    assert!(
        message.contains("scratch") && message.contains("30"),
        "{message}"
    );
}

#[test]
fn text_train_fine_tunes_a_pretrained_clip_encoder_from_its_weights() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    captioned_images(&data, 16);
    let device = Device::flex();
    let encoder_dir = tmp.path().join("clip");
    let pretrained = oxidiff_models::text::ClipTextConfig::small().init(&device);
    pretrained.save(&encoder_dir).unwrap();
    oxidiff_models::text::TextTokenizer::clip()
        .unwrap()
        .save_pretrained(&encoder_dir)
        .unwrap();
    let encoder = format!("text.encoder=\"{}\"", encoder_dir.display());
    let config = tiny_config(
        &data,
        &[
            "data.captions=\"sidecar\"",
            &encoder,
            "text.train=true",
            "text.max_length=8",
            "train.batch_size=8",
            "train.steps=3",
            "train.warmup_steps=1",
            "train.lr=1e-3",
        ],
    );
    let mut trainer = Trainer::<JointTextTask>::fresh(config, &tmp.path().join("run"), &device)
        .expect("fine-tuning a CLIP text encoder");
    let start = parameters(&trainer.state.model.text_encoder);
    assert_eq!(
        start,
        parameters(&TextEncoder::Clip(pretrained)),
        "its weights"
    );
    trainer.run(None, &mut |_| {}).unwrap();
    assert!(max_abs_diff(&parameters(&trainer.state.model.text_encoder), &start) > 1e-6);
}
