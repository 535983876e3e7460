//! The KL autoencoder trained by the same loop as the diffusion model (`task = "autoencoder"`):
//! the loss falls, held-out reconstructions are scored, the grid and checkpoints are written,
//! and a resumed run continues exactly.

mod common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use oxidiff_train::{AutoencoderTask, RunEnd, TrainEvent, Trainer, read_metrics};

use common::{TINY_AUTOENCODER, serial, tiny_autoencoder_config, write_images};

fn config(data: &std::path::Path, extra: &[&str]) -> oxidiff_train::RunConfig {
    let mut all = vec![
        "train.lr=0.002",
        "train.lr_schedule=\"constant\"",
        "data.validation_fraction=0.25",
        "train.eval_every=10",
    ];
    all.extend(extra);
    tiny_autoencoder_config(data, &all)
}

struct Values(Vec<f32>);

impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0
            .extend(param.val().into_data().iter::<f32>().collect::<Vec<_>>());
    }
}

fn weights<M: Module>(model: &M) -> Vec<f32> {
    let mut values = Values(Vec::new());
    model.visit(&mut values);
    values.0
}

#[test]
fn an_autoencoder_trains_reconstructs_and_resumes_exactly() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_images(&data, 32);
    let device = Device::flex();

    let run = tmp.path().join("run");
    let mut trainer =
        Trainer::<AutoencoderTask>::fresh(config(&data, &["train.steps=40"]), &run, &device)
            .unwrap();
    let mut scores = Vec::new();
    let end = trainer
        .run(None, &mut |event| {
            if let TrainEvent::Evaluated(record) = event {
                scores.push(
                    record
                        .reconstruction
                        .clone()
                        .expect("reconstruction scores"),
                );
            }
        })
        .unwrap();
    assert_eq!(end, RunEnd::Finished);
    let losses: Vec<f64> = read_metrics(&run.join("metrics.jsonl"))
        .unwrap()
        .iter()
        .map(|s| s.loss)
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(
        mean(&losses[30..]) < 0.8 * mean(&losses[..5]),
        "the loss falls: {losses:?}"
    );
    assert_eq!(scores.len(), 4);
    let (first, last) = (&scores[0], &scores[3]);
    assert!(
        last.psnr > first.psnr && last.psnr.is_finite(),
        "{first:?} → {last:?}"
    );
    assert_eq!((last.latent_mean.len(), last.images), (2, 8));
    assert!(last.kl_per_element >= 0.0);
    // 8 held-out images above their 8 reconstructions.
    let grid = image::open(run.join("samples/step-0000040.png")).unwrap();
    assert!(grid.width() > 0);
    let report = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(
        report.contains("reconstruction PSNR"),
        "the report shows the scores"
    );
    let checkpoint = run.join("checkpoints/step-0000040");
    assert!(checkpoint.join("SHA256SUMS").is_file());
    // The saved config says what was trained.
    let saved = std::fs::read_to_string(checkpoint.join("config.toml")).unwrap();
    assert!(saved.contains("task = \"autoencoder\""), "{saved}");

    // 20 steps, resumed for 20 more: the same weights.
    let split = tmp.path().join("split");
    let mut first_half =
        Trainer::<AutoencoderTask>::fresh(config(&data, &["train.steps=40"]), &split, &device)
            .unwrap();
    first_half.run(Some(20), &mut |_| {}).unwrap();
    drop(first_half);
    let mut second_half = Trainer::<AutoencoderTask>::resumed(&split, &[], &device).unwrap();
    second_half.run(None, &mut |_| {}).unwrap();
    assert!(
        weights(&trainer.state.model) == weights(&second_half.state.model),
        "the resumed autoencoder differs"
    );
}

#[test]
fn a_bad_autoencoder_config_names_the_key() {
    for (set, key) in [
        ("autoencoder.image_size=7", "autoencoder.image_size"),
        (
            "autoencoder.block_out_channels=[8, 10]",
            "autoencoder.block_out_channels",
        ),
        ("autoencoder.kl_weight=-1", "autoencoder.kl_weight"),
        // 8×8 images leave no patches after the default three stride-2 discriminator layers.
        ("autoencoder.disc_start=0", "autoencoder.disc_layers"),
    ] {
        let mut overrides: Vec<String> = TINY_AUTOENCODER.map(String::from).to_vec();
        overrides.push(set.into());
        let err = oxidiff_train::RunConfig::default_with(&overrides)
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{set}: {err}");
    }
}

#[test]
fn a_patchgan_discriminator_joins_at_disc_start_and_resumes_exactly() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_images(&data, 32);
    let device = Device::flex();
    let gan = [
        "train.steps=8",
        "autoencoder.disc_start=4",
        "autoencoder.disc_layers=1",
        "autoencoder.disc_channels=8",
        "train.eval_every=0",
    ];
    let discriminator = |trainer: &Trainer<AutoencoderTask>| {
        weights(
            trainer
                .state
                .model
                .discriminator
                .as_ref()
                .expect("a discriminator"),
        )
    };
    let run = tmp.path().join("run");
    let mut trainer =
        Trainer::<AutoencoderTask>::fresh(config(&data, &gan), &run, &device).unwrap();
    let initial = discriminator(&trainer);
    trainer.run(Some(4), &mut |_| {}).unwrap();
    assert!(
        discriminator(&trainer) == initial,
        "the discriminator waits for disc_start"
    );
    let before = read_metrics(&run.join("metrics.jsonl")).unwrap();
    trainer.run(None, &mut |_| {}).unwrap();
    assert!(
        discriminator(&trainer) != initial,
        "the discriminator trains from disc_start on"
    );
    let losses: Vec<f64> = read_metrics(&run.join("metrics.jsonl"))
        .unwrap()
        .iter()
        .map(|s| s.loss)
        .collect();
    assert_eq!(before.len(), 4);
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");

    // Stopped at step 6 (inside the adversarial phase) and resumed: the same weights, the
    // discriminator's included.
    let split = tmp.path().join("split");
    let mut first =
        Trainer::<AutoencoderTask>::fresh(config(&data, &gan), &split, &device).unwrap();
    first.run(Some(6), &mut |_| {}).unwrap();
    drop(first);
    let mut second = Trainer::<AutoencoderTask>::resumed(&split, &[], &device).unwrap();
    second.run(None, &mut |_| {}).unwrap();
    assert!(weights(&trainer.state.model) == weights(&second.state.model));
}

#[test]
fn oxidiff_eval_scores_an_autoencoder_checkpoint_with_ssim_and_fd_of_reconstructions() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_images(&data, 32);
    let device = Device::flex();
    let run = tmp.path().join("run");
    let mut trainer =
        Trainer::<AutoencoderTask>::fresh(config(&data, &["train.steps=10"]), &run, &device)
            .unwrap();
    trainer.run(None, &mut |_| {}).unwrap();
    let logged = oxidiff_train::eval::read_eval(&run.join("eval.jsonl"), None).unwrap();
    let last = logged.last().unwrap().reconstruction.clone().unwrap();
    assert!(last.ssim > -1.0 && last.ssim < 1.0, "{last:?}");

    assert!(oxidiff_train::eval::is_autoencoder(&run).unwrap());
    let options = oxidiff_train::eval::EvalOptions {
        distance: oxidiff_train::eval::DistanceOptions {
            samples: Some(8),
            sample: None,
        },
        ..Default::default()
    };
    let result =
        oxidiff_train::eval::evaluate_autoencoder(&run, &options, &device, &mut |_, _, _| {})
            .unwrap();
    assert_eq!(result.step, 10);
    // The same held-out images as the last in-training evaluation: the same scores.
    assert_eq!(result.scores.images, 8);
    assert!(
        (result.scores.psnr - last.psnr).abs() < 1e-9,
        "{result:?} vs {last:?}"
    );
    assert!((result.scores.ssim - last.ssim).abs() < 1e-9);
    let distance = result.distance.expect("FD of the reconstructions");
    assert!(distance.fd_oxidiff.is_finite() && distance.fd_oxidiff >= 0.0);
    assert_eq!((distance.real, distance.generated), (8, 8));
}
