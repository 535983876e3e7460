//! What the trainer refuses and what it survives: checkpoint files changed on disk, a
//! `state.json` that disagrees with its checkpoint, leftovers of a killed process, an output
//! that fails at the last step.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Tensor};
use oxidiff_data::{ChannelStats, Dataset};
use oxidiff_train::eval::EvalRecord;
use oxidiff_train::{
    Conditioning, DiffusionTask, EvalDue, MemoryEstimate, MicroBatch, RunConfig, RunEnd,
    TrainError, TrainEvent, TrainTask, Trainer, load_for_sampling, load_weights, read_metrics,
    read_rollbacks,
};
use rand_chacha::ChaCha8Rng;

use common::{serial, tiny_config, write_images};

/// A finished 2-step run in `tmp/run` (checkpoint `step-0000002`).
fn trained_run(tmp: &Path) -> std::path::PathBuf {
    write_images(&tmp.join("data"), 16);
    let config = tiny_config(&tmp.join("data"), &["train.steps=2"]);
    let run = tmp.join("run");
    let mut trainer = Trainer::new(config, &run, &Device::flex()).unwrap();
    assert_eq!(trainer.run(None, &mut |_| {}).unwrap(), RunEnd::Finished);
    run
}

fn resume_error(run: &Path) -> String {
    match Trainer::resume(run, &[], &Device::flex()) {
        Ok(_) => panic!("resumed from a bad checkpoint"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_flipped_byte_in_any_checkpoint_file_is_refused_naming_it() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let run = trained_run(tmp.path());
    let checkpoint = run.join("checkpoints/step-0000002");
    let sums = std::fs::read_to_string(checkpoint.join("SHA256SUMS")).unwrap();
    for file in [
        "model.bpk",
        "ema.bpk",
        "optimizer.bpk",
        "state.json",
        "config.toml",
    ] {
        assert!(
            sums.contains(&format!("  {file}\n")),
            "{file} not in:\n{sums}"
        );
        let path = checkpoint.join(file);
        let original = std::fs::read(&path).unwrap();
        let mut flipped = original.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x10;
        std::fs::write(&path, &flipped).unwrap();
        let message = resume_error(&run);
        assert!(
            message.contains(file) && message.contains("SHA-256"),
            "{file}: {message}"
        );
        if file == "ema.bpk" {
            let err = load_for_sampling(&run, true, &Device::flex())
                .err()
                .unwrap();
            assert!(err.to_string().contains("ema.bpk"), "{err}");
        }
        std::fs::write(&path, &original).unwrap();
    }
    // Restored, it resumes.
    Trainer::resume(&run, &[], &Device::flex()).unwrap();
}

/// Sets every value of the first float parameter to NaN.
struct PoisonFirst(bool);

impl ModuleMapper for PoisonFirst {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if std::mem::replace(&mut self.0, true) {
            return param;
        }
        param.map(|t| t.mul_scalar(f32::NAN))
    }
}

#[test]
fn non_finite_weights_are_refused_naming_the_tensor() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let run = trained_run(tmp.path());
    let checkpoint = run.join("checkpoints/step-0000002");
    let trainer = Trainer::resume(&run, &[], &Device::flex()).unwrap();
    let model = trainer.state.ema.model.clone().map(&mut PoisonFirst(false));
    let bytes = model.into_record().into_bytes().unwrap();
    // A NaN that was there when the checkpoint was written passes the checksums (written
    // without them here, as a checkpoint from before they existed).
    std::fs::remove_file(checkpoint.join("SHA256SUMS")).unwrap();
    std::fs::write(checkpoint.join("ema.bpk"), bytes.to_vec()).unwrap();
    let err = load_weights(
        trainer.task.unet.init(&Device::flex()),
        &checkpoint.join("ema.bpk"),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("ema.bpk") && err.contains("NaN"), "{err}");
    assert!(err.contains("weight"), "names the tensor: {err}");
    let err = load_for_sampling(&run, true, &Device::flex())
        .err()
        .unwrap();
    assert!(err.to_string().contains("NaN"), "{err}");
}

fn edit_state(checkpoint: &Path, key: &str, value: serde_json::Value) {
    let path = checkpoint.join("state.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    state[key] = value;
    std::fs::write(&path, serde_json::to_vec_pretty(&state).unwrap()).unwrap();
    // Checksums are the subject of another test: here the edited file is a consistent one.
    let _ = std::fs::remove_file(checkpoint.join("SHA256SUMS"));
}

#[test]
fn a_state_file_that_disagrees_with_its_checkpoint_is_refused() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let run = trained_run(tmp.path());
    let checkpoint = run.join("checkpoints/step-0000002");
    let original = std::fs::read(checkpoint.join("state.json")).unwrap();
    let sums = std::fs::read(checkpoint.join("SHA256SUMS")).unwrap();
    let metrics = std::fs::read(run.join("metrics.jsonl")).unwrap();
    let cases: [(&str, serde_json::Value, &str); 3] = [
        ("step", 0.into(), "checkpoint directory is step 2"),
        ("step", u64::MAX.into(), "checkpoint directory is step 2"),
        ("ema_updates", 3.into(), "only 2 steps"),
    ];
    for (key, value, expected) in cases {
        edit_state(&checkpoint, key, value.clone());
        let message = resume_error(&run);
        assert!(message.contains(expected), "{key} = {value}: {message}");
        std::fs::write(checkpoint.join("state.json"), &original).unwrap();
    }
    // Nothing was overwritten by the refused resumes.
    assert_eq!(std::fs::read(run.join("metrics.jsonl")).unwrap(), metrics);
    // A metrics log that ends before the checkpoint's step.
    let first_row = String::from_utf8(metrics.clone()).unwrap();
    std::fs::write(
        run.join("metrics.jsonl"),
        first_row.lines().next().unwrap().to_owned() + "\n",
    )
    .unwrap();
    std::fs::write(checkpoint.join("SHA256SUMS"), &sums).unwrap();
    let message = resume_error(&run);
    assert!(
        message.contains("metrics.jsonl ends at step 1"),
        "{message}"
    );
}

#[test]
fn leftovers_of_a_killed_process_are_removed_on_the_next_start() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let run = trained_run(tmp.path());
    // No process has pid u32::MAX - 1 (Linux caps pids far below it).
    let dead = u32::MAX - 1;
    let leftovers = [
        run.join("checkpoints/.step-0000003.tmp"),
        run.join("checkpoints/.step-0000001.deleting"),
    ];
    for dir in &leftovers {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("model.bpk"), b"partial").unwrap();
    }
    let files = [
        run.join(format!("samples/.step-0000400.png.{dead}.0.tmp")),
        run.join(format!(".metrics.jsonl.{dead}.3.tmp")),
    ];
    std::fs::create_dir_all(run.join("samples")).unwrap();
    for file in &files {
        std::fs::write(file, b"partial").unwrap();
    }
    let _resumed = Trainer::resume(&run, &["train.steps=3".into()], &Device::flex()).unwrap();
    for path in leftovers.iter().chain(&files) {
        assert!(!path.exists(), "{} was left", path.display());
    }
    assert!(run.join("checkpoints/step-0000002/model.bpk").is_file());
}

#[test]
fn a_sample_grid_that_fails_at_the_last_step_loses_no_training() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    write_images(&tmp.path().join("data"), 16);
    let config = tiny_config(&tmp.path().join("data"), &["train.steps=3"]);
    let run = tmp.path().join("run");
    // The grid's file name taken by a folder: its write fails.
    std::fs::create_dir_all(run.join("samples/step-0000003.png/taken")).unwrap();
    let mut trainer = Trainer::new(config, &run, &Device::flex()).unwrap();
    let mut failures = Vec::new();
    let end = trainer
        .run(None, &mut |event| {
            if let TrainEvent::OutputFailed { step, what, error } = event {
                failures.push((step, what, error.to_string()));
            }
        })
        .unwrap();
    assert_eq!(end, RunEnd::Finished);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!((failures[0].0, failures[0].1), (3, "the sample grid"));
    assert!(failures[0].2.contains("step-0000003.png"), "{failures:?}");
    assert!(run.join("checkpoints/step-0000003/SHA256SUMS").is_file());
}

#[test]
fn the_held_out_split_cannot_change_on_resume() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let run = trained_run(tmp.path());
    let config = std::fs::read(run.join("config.toml")).unwrap();
    let err = Trainer::resume(
        &run,
        &["data.validation_fraction=0.5".into()],
        &Device::flex(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("data.validation_fraction") && err.contains("split.json"),
        "{err}"
    );
    assert_eq!(std::fs::read(run.join("config.toml")).unwrap(), config);
}

/// Which calls of the loss (counted from 1 over the whole test) come out NaN.
static LOSS_CALLS: AtomicUsize = AtomicUsize::new(0);
type Poison = fn(usize) -> bool;
static POISONED: std::sync::Mutex<Option<Poison>> = std::sync::Mutex::new(None);

/// The diffusion task with a NaN injected into chosen losses.
struct NanAt(DiffusionTask);

impl TrainTask for NanAt {
    type Model = <DiffusionTask as TrainTask>::Model;
    type State = <DiffusionTask as TrainTask>::State;

    fn new(config: &RunConfig) -> Result<Self, TrainError> {
        DiffusionTask::new(config).map(NanAt)
    }
    fn image_shape(config: &RunConfig) -> Result<(usize, usize), TrainError> {
        DiffusionTask::image_shape(config)
    }
    fn memory_estimate(config: &RunConfig) -> Result<MemoryEstimate, TrainError> {
        DiffusionTask::memory_estimate(config)
    }
    fn init_model(&self, device: &Device) -> Self::Model {
        self.0.init_model(device)
    }
    fn state(&self, saved: Option<Self::State>) -> Self::State {
        self.0.state(saved)
    }
    fn conditioning(&self) -> Conditioning {
        self.0.conditioning()
    }
    fn loss(
        &self,
        model: &Self::Model,
        batch: MicroBatch<'_>,
        step: u64,
        state: &mut Self::State,
        rng: &mut ChaCha8Rng,
    ) -> Result<Tensor<1>, TrainError> {
        let loss = self.0.loss(model, batch, step, state, rng)?;
        let call = LOSS_CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        let poisoned = POISONED.lock().unwrap().is_some_and(|f| f(call));
        Ok(if poisoned {
            loss.mul_scalar(f32::NAN)
        } else {
            loss
        })
    }
    fn write_samples(
        &self,
        model: &Self::Model,
        path: &Path,
        shown: &Dataset,
        standardization: Option<&ChannelStats>,
        device: &Device,
    ) -> Result<(), TrainError> {
        self.0
            .write_samples(model, path, shown, standardization, device)
    }
    fn evaluate(
        &self,
        model: &Self::Model,
        validation: &Dataset,
        due: EvalDue,
        step: u64,
        device: &Device,
    ) -> Result<EvalRecord, TrainError> {
        self.0.evaluate(model, validation, due, step, device)
    }
}

fn poison(calls: Poison) {
    LOSS_CALLS.store(0, Ordering::SeqCst);
    *POISONED.lock().unwrap() = Some(calls);
}

#[test]
fn a_nan_loss_rolls_back_to_the_last_checkpoint_with_half_the_learning_rate() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    write_images(&tmp.path().join("data"), 16);
    let config = tiny_config(
        &tmp.path().join("data"),
        &[
            "train.steps=12",
            "train.checkpoint_every=5",
            "train.lr_schedule=\"constant\"",
        ],
    );
    let lr = config.train.lr;
    let run = tmp.path().join("run");
    poison(|call| call == 7);
    let mut trainer = Trainer::<NanAt>::fresh(config, &run, &Device::flex()).unwrap();
    let mut rolled_back = Vec::new();
    let end = trainer
        .run(None, &mut |event| {
            if let TrainEvent::RolledBack(record) = event {
                rolled_back.push(record.clone());
            }
        })
        .unwrap();
    assert_eq!(end, RunEnd::Finished);
    assert_eq!(rolled_back.len(), 1);
    assert_eq!(
        (rolled_back[0].step, rolled_back[0].rollback.diverged_at),
        (5, 7)
    );
    assert_eq!(rolled_back[0].rollback.value, "NaN");
    // The log reads as the trajectory of the final weights, with the rollback between.
    let metrics = run.join("metrics.jsonl");
    let steps: Vec<u64> = read_metrics(&metrics)
        .unwrap()
        .iter()
        .map(|s| s.step)
        .collect();
    assert_eq!(steps, (1..=12).collect::<Vec<_>>());
    assert_eq!(read_rollbacks(&metrics).unwrap(), rolled_back);
    for stats in read_metrics(&metrics).unwrap() {
        assert!(stats.loss.is_finite(), "{stats:?}");
        // After the 5 warm-up steps the constant schedule is train.lr, halved from the
        // rollback on.
        if stats.step > 5 {
            assert!((stats.lr - 0.5 * lr).abs() <= 1e-12 * lr, "{stats:?}");
        }
    }
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("checkpoints/step-0000012/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["divergence"]["lr_scale"], 0.5, "{state}");
    assert_eq!(state["divergence"]["in_a_row"], 0, "past step 7: {state}");
    let report = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(
        report.contains("back to step 5"),
        "the report lists the rollback"
    );
    *POISONED.lock().unwrap() = None;
}

#[test]
fn a_run_that_keeps_diverging_stops_after_max_rollbacks() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    write_images(&tmp.path().join("data"), 16);
    let config = tiny_config(
        &tmp.path().join("data"),
        &[
            "train.steps=6",
            "train.checkpoint_every=2",
            "train.max_rollbacks=2",
        ],
    );
    let run = tmp.path().join("run");
    poison(|call| call >= 3);
    let mut trainer = Trainer::<NanAt>::fresh(config, &run, &Device::flex()).unwrap();
    let mut rollbacks = 0;
    let err = trainer
        .run(None, &mut |event| {
            if matches!(event, TrainEvent::RolledBack(_)) {
                rollbacks += 1;
            }
        })
        .unwrap_err()
        .to_string();
    assert_eq!(rollbacks, 2);
    assert!(
        err.contains("step 3") && err.contains("NaN") && err.contains("rolled back 2 times"),
        "{err}"
    );
    assert!(run.join("checkpoints/step-0000002/SHA256SUMS").is_file());
    *POISONED.lock().unwrap() = None;
}

/// Replaces the `k`-th number in `text` (counting every run of digits) with `with`.
fn replace_number(text: &str, k: usize, with: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut starts = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                i += 1;
            }
            starts.push((start, i));
        } else {
            i += 1;
        }
    }
    let &(start, end) = starts.get(k % starts.len().max(1))?;
    Some(format!("{}{with}{}", &text[..start], &text[end..]))
}

/// Bit flips, truncations and edge numbers in every file of a checkpoint, with and without
/// its checksums (without them, the parsers and the loader meet the damage themselves): a
/// resume and a step of training after it end in a clear error or a valid run, never a panic
/// or an abort.
#[test]
fn mutated_checkpoint_files_give_a_clear_error_or_a_valid_run() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let run = trained_run(tmp.path());
    let checkpoint = run.join("checkpoints/step-0000002");
    let files = [
        "config.toml",
        "state.json",
        "model.bpk",
        "ema.bpk",
        "optimizer.bpk",
        "SHA256SUMS",
    ];
    let originals: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(checkpoint.join(f)).unwrap())
        .collect();
    let edges = [
        "0",
        "-1",
        "1e308",
        "nan",
        "18446744073709551615",
        "9223372036854775807",
        "-9223372036854775808",
        "1e-308",
        "",
        "\"x\"",
    ];
    let mut rng = oxidiff_data::SplitMix64::new(2026);
    let (mut refused, mut ran) = (0, 0);
    for case in 0..120 {
        let with_checksums = case % 3 == 0;
        let which = rng.below(files.len() as u64) as usize;
        if !with_checksums && files[which] == "SHA256SUMS" {
            continue;
        }
        let mut bytes = originals[which].clone();
        match rng.below(3) {
            0 if !bytes.is_empty() => {
                let bit = rng.below(bytes.len() as u64 * 8);
                bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
            }
            1 => bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize),
            _ => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let edge = edges[rng.below(edges.len() as u64) as usize];
                if let Some(t) = replace_number(&text, rng.next_u64() as usize, edge) {
                    bytes = t.into_bytes();
                }
            }
        }
        std::fs::write(checkpoint.join(files[which]), &bytes).unwrap();
        if !with_checksums {
            std::fs::remove_file(checkpoint.join("SHA256SUMS")).unwrap();
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut trainer = Trainer::resume(&run, &["train.steps=3".into()], &Device::flex())?;
            trainer.run(None, &mut |_| {})
        }));
        match outcome {
            Err(_) => panic!("case {case}: {} mutated: panicked", files[which]),
            Ok(Err(e)) => {
                assert!(!e.to_string().is_empty());
                refused += 1;
            }
            Ok(Ok(_)) => ran += 1,
        }
        // Back to the 2-step run for the next case (a mutated keep_checkpoints may have
        // deleted its checkpoint).
        let _ = std::fs::remove_dir_all(run.join("checkpoints/step-0000003"));
        std::fs::create_dir_all(&checkpoint).unwrap();
        for (file, original) in files.iter().zip(&originals) {
            std::fs::write(checkpoint.join(file), original).unwrap();
        }
        let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        let kept: String = metrics.lines().take(2).map(|l| format!("{l}\n")).collect();
        std::fs::write(run.join("metrics.jsonl"), kept).unwrap();
    }
    assert!(refused > 0 && ran > 0, "refused {refused}, ran {ran}");
}
