//! End-to-end tests of the trainer on tiny models and real PNG files.

mod common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use oxidiff_models::UNet;
use oxidiff_train::load_weights;
use oxidiff_train::resolve_checkpoint;
use oxidiff_train::{TrainEvent, Trainer, read_metrics};

use common::{fixed_eval_loss, serial, tiny_config, write_images};

/// Every parameter value of a module, in visiting order.
fn weights(model: &UNet) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0
                .extend(param.val().into_data().try_to_vec::<f32>().unwrap());
        }
    }
    let mut c = Collect(Vec::new());
    model.valid().visit(&mut c);
    c.0
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn tiny_model_overfits_16_images() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    write_images(&tmp.path().join("data"), 16);
    let config = tiny_config(
        &tmp.path().join("data"),
        &["train.steps=300", "train.lr=0.002"],
    );
    let mut trainer = Trainer::new(config, &tmp.path().join("run"), &Device::flex()).unwrap();
    let before = fixed_eval_loss(&trainer);
    trainer.run(None, &mut |_| {}).unwrap();
    let after = fixed_eval_loss(&trainer);
    // An untrained (zero-output) model scores E[ε²] = 1; 300 steps on 16 images must cut the
    // fixed-noise loss at least fourfold.
    assert!((before - 1.0).abs() < 0.2, "initial loss {before}");
    assert!(after < before / 4.0, "loss {before} → {after}");
    let metrics = read_metrics(&tmp.path().join("run/metrics.jsonl")).unwrap();
    assert_eq!(metrics.len(), 300);
    assert!(
        metrics
            .iter()
            .all(|m| m.loss.is_finite() && m.grad_norm.is_finite())
    );
}

#[test]
fn checkpoint_round_trips_the_weights() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    write_images(&tmp.path().join("data"), 16);
    let config = tiny_config(&tmp.path().join("data"), &["train.steps=3"]);
    let mut trainer = Trainer::new(config, &tmp.path().join("run"), &Device::flex()).unwrap();
    trainer.run(None, &mut |_| {}).unwrap();
    let dir = resolve_checkpoint(&tmp.path().join("run")).unwrap();
    assert!(
        dir.ends_with("checkpoints/step-0000003"),
        "{}",
        dir.display()
    );
    for file in [
        "model.bpk",
        "ema.bpk",
        "optimizer.bpk",
        "state.json",
        "config.toml",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let fresh = trainer.task.unet.init(&Device::flex());
    let loaded = load_weights(fresh, &dir.join("model.bpk")).unwrap();
    assert_eq!(
        weights(&loaded),
        weights(&trainer.state.model),
        "online weights"
    );
    let loaded_ema = load_weights(
        trainer.task.unet.init(&Device::flex()),
        &dir.join("ema.bpk"),
    )
    .unwrap();
    assert_eq!(
        weights(&loaded_ema),
        weights(&trainer.state.ema.model),
        "EMA weights"
    );
    // No temporary directory is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("run/checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A run of 2N steps and a run of N steps resumed for N more must end with the same weights.
/// Tolerance: bit-identical on the CPU backend (the same kernels see the same inputs in the same
/// order); asserted as max |Δ| ≤ 1e-6 so a reordering inside a kernel would still pass while any
/// state that resume loses (optimiser moments, RNG, EMA count, data order, LR step) would not.
#[test]
fn resume_continues_exactly() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    write_images(&tmp.path().join("data"), 16);
    let extra = [
        "train.steps=12",
        "train.batch_size=8",
        "model.dropout=0.1",
        "diffusion.offset_noise=0.1",
        "train.grad_accum_steps=2",
        // Batch-time augmentation must repeat exactly on resume too.
        "data.resize=10",
        "data.crop=\"random\"",
        "data.flip=true",
    ];
    let device = Device::flex();

    let mut straight = Trainer::new(
        tiny_config(&tmp.path().join("data"), &extra),
        &tmp.path().join("a"),
        &device,
    )
    .unwrap();
    straight.run(None, &mut |_| {}).unwrap();

    let mut first = Trainer::new(
        tiny_config(&tmp.path().join("data"), &extra),
        &tmp.path().join("b"),
        &device,
    )
    .unwrap();
    first.run(Some(6), &mut |_| {}).unwrap();
    assert_eq!(first.state.step, 6);
    drop(first);
    let mut resumed = Trainer::resume(&tmp.path().join("b"), &[], &device).unwrap();
    assert_eq!(resumed.state.step, 6);
    resumed.run(None, &mut |_| {}).unwrap();
    assert_eq!(resumed.state.step, 12);

    let diff = max_abs_diff(
        &weights(&straight.state.model),
        &weights(&resumed.state.model),
    );
    assert!(diff <= 1e-6, "online weights differ by {diff}");
    let diff = max_abs_diff(
        &weights(&straight.state.ema.model),
        &weights(&resumed.state.ema.model),
    );
    assert!(diff <= 1e-6, "EMA weights differ by {diff}");
    let a = read_metrics(&tmp.path().join("a/metrics.jsonl")).unwrap();
    let b = read_metrics(&tmp.path().join("b/metrics.jsonl")).unwrap();
    assert_eq!(a.len(), 12);
    assert_eq!(b.len(), 12);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.step, y.step);
        assert!(
            (x.loss - y.loss).abs() <= 1e-6,
            "step {}: {} vs {}",
            x.step,
            x.loss,
            y.loss
        );
        assert_eq!(x.lr, y.lr);
    }
}

#[test]
fn a_run_directory_with_checkpoints_is_not_overwritten() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    write_images(&tmp.path().join("data"), 16);
    let config = tiny_config(&tmp.path().join("data"), &["train.steps=1"]);
    let mut trainer =
        Trainer::new(config.clone(), &tmp.path().join("run"), &Device::flex()).unwrap();
    trainer.run(None, &mut |_| {}).unwrap();
    let err = Trainer::new(config, &tmp.path().join("run"), &Device::flex())
        .err()
        .unwrap();
    assert!(err.to_string().contains("--resume"), "{err}");
}

#[test]
fn corrupt_checkpoint_is_reported_not_panicking() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    write_images(&tmp.path().join("data"), 16);
    let config = tiny_config(&tmp.path().join("data"), &["train.steps=1"]);
    let mut trainer = Trainer::new(config, &tmp.path().join("run"), &Device::flex()).unwrap();
    trainer.run(None, &mut |_| {}).unwrap();
    let dir = resolve_checkpoint(&tmp.path().join("run")).unwrap();
    let model_file = dir.join("model.bpk");
    let bytes = std::fs::read(&model_file).unwrap();
    std::fs::write(&model_file, &bytes[..bytes.len() / 3]).unwrap();
    let err = Trainer::resume(&tmp.path().join("run"), &[], &Device::flex())
        .err()
        .unwrap();
    let message = err.to_string();
    assert!(message.contains("model.bpk"), "{message}");
    std::fs::write(dir.join("state.json"), b"{ not json").unwrap();
    let err = Trainer::resume(&tmp.path().join("run"), &[], &Device::flex())
        .err()
        .unwrap();
    assert!(err.to_string().contains("state.json"), "{err}");
}

#[test]
fn every_optimizer_reduces_the_loss() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    write_images(&tmp.path().join("data"), 16);
    let cases: &[&[&str]] = &[
        &["train.optimizer=adam", "train.weight_decay=0.0001"],
        &["train.optimizer=adamw", "train.weight_decay=0.01"],
        &[
            "train.optimizer=rmsprop",
            "train.lr=0.0005",
            "train.momentum=0.0",
        ],
        &[
            "train.optimizer=sgd",
            "train.lr=0.05",
            "train.nesterov=true",
            "train.weight_decay=0.0001",
        ],
    ];
    for (i, extra) in cases.iter().enumerate() {
        let mut args = vec!["train.steps=60", "train.lr_schedule=constant"];
        args.extend_from_slice(extra);
        let config = tiny_config(&tmp.path().join("data"), &args);
        let mut trainer =
            Trainer::new(config, &tmp.path().join(format!("run{i}")), &Device::flex()).unwrap();
        let before = fixed_eval_loss(&trainer);
        trainer.run(None, &mut |_| {}).unwrap();
        let after = fixed_eval_loss(&trainer);
        assert!(after < 0.7 * before, "{extra:?}: {before} → {after}");
    }
}

#[test]
fn a_validation_split_is_held_out_saved_and_kept_on_resume() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_images(&data, 20);
    std::fs::write(data.join("broken.png"), "not a PNG").unwrap();
    let extra = ["train.steps=2", "data.validation_fraction=0.25"];
    let run = tmp.path().join("run");
    let mut trainer = Trainer::new(tiny_config(&data, &extra), &run, &Device::flex()).unwrap();
    assert_eq!(
        (trainer.data.dataset.len(), trainer.data.validation.len()),
        (15, 5)
    );
    assert!(
        trainer
            .data
            .validation
            .keys
            .iter()
            .all(|k| !trainer.data.dataset.keys.contains(k))
    );
    trainer.run(Some(1), &mut |_| {}).unwrap();

    let split: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("split.json")).unwrap()).unwrap();
    let held: Vec<String> = split["validation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(held, trainer.data.validation.keys);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("data_report.json")).unwrap())
            .unwrap();
    assert_eq!(report["train"], 15);
    assert_eq!(report["validation"], 5);
    let skipped = report["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0]["path"].as_str().unwrap().ends_with("broken.png"));
    assert!(!skipped[0]["reason"].as_str().unwrap().is_empty());

    // A different seed on resume must not reshuffle what was held out.
    drop(trainer);
    let resumed = Trainer::resume(&run, &["seed=99".into()], &Device::flex()).unwrap();
    assert_eq!(resumed.data.validation.keys, held);
}

#[test]
fn on_error_fail_stops_before_the_run_directory_is_made() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_images(&data, 4);
    std::fs::write(data.join("broken.png"), "not a PNG").unwrap();
    let config = tiny_config(&data, &["data.on_error=\"fail\""]);
    let run = tmp.path().join("run");
    let err = Trainer::new(config, &run, &Device::flex()).err().unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("broken.png") && msg.contains("on_error"),
        "{msg}"
    );
    assert!(!run.exists());
}

#[test]
fn per_channel_standardisation_is_saved_applied_and_undone() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_images(&data, 12);
    let extra = [
        "train.steps=2",
        "train.sample_every=2",
        "data.standardize=\"per-channel\"",
        "diffusion.clip_sample=false",
        "data.validation_fraction=0.25",
    ];
    let run = tmp.path().join("run");
    let mut trainer = Trainer::new(tiny_config(&data, &extra), &run, &Device::flex()).unwrap();
    let stats = trainer.data.standardization.clone().unwrap();
    assert!((0.0..=1.0).contains(&stats.mean[0]) && stats.std[0] > 0.0);
    // The training images are centred by their own statistics.
    let images = trainer.data.dataset.cached().unwrap();
    let mean = images.iter().map(|&v| f64::from(v)).sum::<f64>() / images.len() as f64;
    let var = images
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / images.len() as f64;
    assert!(
        mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4,
        "mean {mean}, var {var}"
    );
    trainer.run(None, &mut |_| {}).unwrap();
    assert!(run.join("standardization.json").is_file());
    assert!(run.join("samples/step-0000002.png").is_file());
    drop(trainer);
    let resumed = Trainer::resume(&run, &["train.steps=3".into()], &Device::flex()).unwrap();
    // JSON keeps the statistics to within an ulp of f64 (far below f32 pixels).
    let saved = resumed.data.standardization.unwrap();
    for (a, b) in saved
        .mean
        .iter()
        .chain(&saved.std)
        .zip(stats.mean.iter().chain(&stats.std))
    {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    // The samplers clip x̂₀ to [-1, 1]: the config refuses the combination up front.
    let err = oxidiff_train::RunConfig::default_with(&["data.standardize=\"per-channel\"".into()])
        .err()
        .map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("clip_sample")));
}

#[test]
fn streamed_data_trains_exactly_like_cached_and_survives_a_vanished_file() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_images(&data, 16);
    let extra = |cache: bool| {
        vec![
            "train.steps=6".to_string(),
            "train.batch_size=8".into(),
            "train.grad_accum_steps=2".into(),
            "data.resize=10".into(),
            "data.crop=\"random\"".into(),
            "data.flip=true".into(),
            format!("data.cache={cache}"),
        ]
    };
    let config = |cache: bool, more: &[&str]| {
        let mut all = extra(cache);
        all.extend(more.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        tiny_config(&data, &refs)
    };
    let device = Device::flex();
    let mut cached = Trainer::new(config(true, &[]), &tmp.path().join("a"), &device).unwrap();
    cached.run(None, &mut |_| {}).unwrap();
    let mut streamed = Trainer::new(config(false, &[]), &tmp.path().join("b"), &device).unwrap();
    assert!(streamed.data.dataset.cached().is_none());
    streamed.run(None, &mut |_| {}).unwrap();
    // Same batches (decoded per step, prefetched ahead) → the same run.
    let diff = max_abs_diff(
        &weights(&cached.state.model),
        &weights(&streamed.state.model),
    );
    assert!(diff <= 1e-6, "weights differ by {diff}");

    // A file deleted mid-run: the run finishes, the file is reported once with its step.
    let mut run = Trainer::new(config(false, &[]), &tmp.path().join("c"), &device).unwrap();
    run.run(Some(2), &mut |_| {}).unwrap();
    std::fs::remove_file(data.join("img-05.png")).unwrap();
    let mut seen = Vec::new();
    run.run(None, &mut |event| {
        if let TrainEvent::Skipped(skip) = event {
            seen.push(skip.clone());
        }
    })
    .unwrap();
    assert_eq!(run.state.step, 6);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].path.ends_with("img-05.png") && seen[0].step > 2,
        "{seen:?}"
    );
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("c/data_report.json")).unwrap(),
    )
    .unwrap();
    let late = report["skipped_during_training"].as_array().unwrap();
    assert_eq!(late.len(), 1);
    assert!(late[0]["path"].as_str().unwrap().ends_with("img-05.png"));

    // Under on_error = "fail" the same thing stops the run with an error naming the file.
    let mut strict = Trainer::new(
        config(false, &["data.on_error=\"fail\""]),
        &tmp.path().join("d"),
        &device,
    )
    .unwrap();
    std::fs::remove_file(data.join("img-06.png")).unwrap();
    let err = strict.run(None, &mut |_| {}).unwrap_err().to_string();
    assert!(
        err.contains("img-06.png") && err.contains("batch time"),
        "{err}"
    );
}

#[test]
fn learned_variance_hybrid_and_importance_sampling_resume_exactly() {
    // T = 10 so that the importance sampler warms up (10 losses at every t) within the run and
    // the resumed half draws t from the saved history.
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    write_images(&tmp.path().join("data"), 16);
    for objective in [
        [
            "diffusion.loss=\"hybrid\"",
            "diffusion.variance_type=\"learned\"",
        ],
        [
            "diffusion.loss=\"vlb\"",
            "diffusion.variance_type=\"learned\"",
        ],
    ] {
        let mut extra = vec![
            "train.steps=12",
            "train.batch_size=8",
            "train.grad_accum_steps=2",
            "diffusion.num_train_timesteps=10",
            "sample.steps=5",
            "train.timestep_draw=\"loss-second-moment\"",
        ];
        extra.extend(objective);
        let device = Device::flex();
        let dir = |name: &str| tmp.path().join(format!("{}-{name}", objective[0].len()));
        let mut straight = Trainer::new(
            tiny_config(&tmp.path().join("data"), &extra),
            &dir("a"),
            &device,
        )
        .unwrap();
        assert_eq!(
            straight.task.unet.out_channels, 2,
            "learned variance doubles the output"
        );
        straight.run(None, &mut |_| {}).unwrap();
        let mut first = Trainer::new(
            tiny_config(&tmp.path().join("data"), &extra),
            &dir("b"),
            &device,
        )
        .unwrap();
        first.run(Some(7), &mut |_| {}).unwrap();
        drop(first);
        let state: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir("b").join("checkpoints/step-0000007/state.json")).unwrap(),
        )
        .unwrap();
        assert!(state["loss_history"]["losses"].is_array(), "{state}");
        let mut resumed = Trainer::resume(&dir("b"), &[], &device).unwrap();
        resumed.run(None, &mut |_| {}).unwrap();
        let a = read_metrics(&dir("a").join("metrics.jsonl")).unwrap();
        let b = read_metrics(&dir("b").join("metrics.jsonl")).unwrap();
        assert_eq!(a.len(), 12);
        for (x, y) in a.iter().zip(&b) {
            assert!(x.loss.is_finite());
            assert!(
                (x.loss - y.loss).abs() <= 1e-6,
                "{objective:?} step {}: {} vs {}",
                x.step,
                x.loss,
                y.loss
            );
        }
        let diff = max_abs_diff(
            &weights(&straight.state.model),
            &weights(&resumed.state.model),
        );
        assert!(diff <= 1e-6, "{objective:?}: weights differ by {diff}");
        // Every saved number (the loss history's f64s, the generator) reads back bit-exact, so
        // the resumed run's state file is the uninterrupted run's, byte for byte.
        let state_file = |run: &str| {
            std::fs::read(dir(run).join("checkpoints/step-0000012/state.json")).unwrap()
        };
        assert!(
            state_file("a") == state_file("b"),
            "{objective:?}: state.json differs after a resume"
        );
    }
}

#[test]
fn evaluation_during_training_writes_logs_plots_report_and_tensorboard() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_images(&data, 24);
    let extra = [
        "train.steps=6",
        "data.validation_fraction=0.25",
        "train.eval_every=2",
        "train.bpd_every=3",
        "train.bpd_stride=250",
        "train.eval_images=4",
        "train.sample_every=3",
        "train.checkpoint_every=3",
    ];
    let run = tmp.path().join("run");
    let mut trainer = Trainer::new(tiny_config(&data, &extra), &run, &Device::flex()).unwrap();
    let mut evaluated = Vec::new();
    trainer
        .run(Some(4), &mut |e| {
            if let TrainEvent::Evaluated(r) = e {
                evaluated.push(r.step)
            }
        })
        .unwrap();
    assert_eq!(evaluated, [2, 3, 4]);
    let lines = |run: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(run.join("eval.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let records = lines(&run);
    assert_eq!(records.len(), 3);
    assert!(records[0]["band_mse"]["mse"].as_array().unwrap().len() == 4);
    assert!(records[0].get("nll").is_none());
    let nll = &records[1]["nll"];
    let bpd = nll["bpd"].as_f64().unwrap();
    assert!(bpd.is_finite() && bpd > 0.0, "{nll}");
    let parts = nll["prior"].as_f64().unwrap()
        + nll["decoder"].as_f64().unwrap()
        + nll["diffusion"].as_f64().unwrap();
    assert!((parts - bpd).abs() < 1e-6 * bpd.max(1.0));
    for plot in ["loss.png", "lr.png", "val_mse.png", "bits_per_dim.png"] {
        let img = image::open(run.join("plots").join(plot)).unwrap();
        assert_eq!((img.width(), img.height()), (720, 420), "{plot}");
    }
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains("data:image/png;base64,") && html.contains("bits/dim"));
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert_eq!(
        std::fs::read_dir(run.join("tensorboard")).unwrap().count(),
        1
    );

    // A crash after the step-4 evaluation, before its checkpoint: resumed from step 3, that
    // evaluation is dropped and made again, and the finished log reads like one run.
    std::fs::remove_dir_all(run.join("checkpoints/step-0000004")).unwrap();
    let before = std::fs::read_to_string(run.join("eval.jsonl")).unwrap();
    let mut resumed = Trainer::resume(&run, &[], &Device::flex()).unwrap();
    assert_eq!(resumed.state.step, 3);
    resumed.run(None, &mut |_| {}).unwrap();
    // The kept records are the same bytes, not parsed and written again.
    let kept: String = before.lines().take(2).map(|l| format!("{l}\n")).collect();
    let after = std::fs::read_to_string(run.join("eval.jsonl")).unwrap();
    assert!(after.starts_with(&kept), "{before}\n---\n{after}");
    let steps: Vec<u64> = lines(&run)
        .iter()
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [2, 3, 4, 6]);
    assert_eq!(
        std::fs::read_dir(run.join("tensorboard")).unwrap().count(),
        2
    );

    // No held-out images: refused before anything is written.
    let err = Trainer::new(
        tiny_config(&data, &["train.eval_every=2"]),
        &tmp.path().join("none"),
        &Device::flex(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("validation_fraction"), "{err}");
    assert!(!tmp.path().join("none").exists());
}

#[test]
fn a_checkpoint_is_evaluated_the_same_way_twice() {
    use oxidiff_train::eval::{
        DistanceOptions, EditOptions, EvalOptions, EvalSplit, ImageSelection, NllOptions,
        evaluate_checkpoint,
    };
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_images(&data, 20);
    let run = tmp.path().join("run");
    let config = tiny_config(
        &data,
        &[
            "train.steps=4",
            "data.validation_fraction=0.3",
            "sample.steps=3",
        ],
    );
    let mut trainer = Trainer::new(config, &run, &Device::flex()).unwrap();
    trainer.run(None, &mut |_| {}).unwrap();
    let options = EvalOptions {
        batch_size: 3,
        seed: 7,
        nll: Some(NllOptions { stride: 100 }),
        distance: DistanceOptions {
            samples: Some(6),
            sample: None,
        },
        editing: EditOptions {
            inpaint: vec![oxidiff_train::InpaintMethod::Replacement],
            denoise_sigmas: vec![25.0],
            steps: 4,
        },
        ..EvalOptions::default()
    };
    let device = Device::flex();
    let a = evaluate_checkpoint(&run, &options, &device, &mut |_, _, _| {}).unwrap();
    assert_eq!(a.step, 4);
    assert_eq!(a.images, trainer.data.validation.len());
    // Other batch sizes give the same per-image noise, so the same numbers; the feature
    // network comes from the run's cache the second time.
    let b = evaluate_checkpoint(
        &run,
        &EvalOptions {
            batch_size: 5,
            ..options.clone()
        },
        &device,
        &mut |_, _, _| {},
    )
    .unwrap();
    assert!(tmp.path().join("run/fd_oxidiff/feature_net.bpk").is_file());
    for (x, y) in a.band_mse.mse.iter().zip(&b.band_mse.mse) {
        assert!((x - y).abs() <= 1e-5 * x.abs().max(1e-3), "{x} vs {y}");
    }
    let inpainted = &a.inpaint[0];
    assert!(inpainted.psnr_masked.is_finite() && inpainted.fd_oxidiff.is_some());
    let denoised = &a.denoise[0];
    assert!(denoised.psnr_noisy > 0.0 && denoised.psnr_denoised.is_finite());
    let d = a.distance.unwrap();
    assert!(d.fd_oxidiff.is_finite() && d.fd_oxidiff >= 0.0);
    assert!((0.0..=1.0).contains(&d.precision) && (0.0..=1.0).contains(&d.recall));
    assert!(a.nll.unwrap().bpd > 0.0);

    // A bits/dim stride beyond the schedule is refused, naming the range.
    let err = evaluate_checkpoint(
        &run,
        &EvalOptions {
            nll: Some(NllOptions { stride: 100_000 }),
            ..options.clone()
        },
        &device,
        &mut |_, _, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("stride 100000") && err.contains("1000 timesteps"),
        "{err}"
    );

    // A run without a test source cannot be evaluated on "test"; the message says what to do.
    let err = evaluate_checkpoint(
        &run,
        &EvalOptions {
            images: ImageSelection {
                split: EvalSplit::Test,
                ..options.images.clone()
            },
            ..options.clone()
        },
        &device,
        &mut |_, _, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("--data"), "{err}");
    // With one, every image of it is evaluated.
    let test = evaluate_checkpoint(
        &run,
        &EvalOptions {
            images: ImageSelection {
                split: EvalSplit::Test,
                data_overrides: vec![format!("data.path=\"{}\"", data.display())],
                max_images: None,
            },
            distance: DistanceOptions {
                samples: None,
                ..options.distance.clone()
            },
            ..options
        },
        &device,
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(test.images, 20);
}
