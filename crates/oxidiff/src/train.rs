//! `oxidiff train`: a fresh or resumed run of whatever the config's `task` trains (the
//! diffusion UNet or the autoencoder), driven by the library's one loop.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use oxidiff_train::{
    AutoencoderTask, CONFIG_FILE, DiffusionTask, JointTextTask, RunConfig, RunDir, RunEnd,
    TaskKind, TrainTask, Trainer, resolve_checkpoint,
};

use crate::device::DeviceArg;
use crate::progress::Progress;
use crate::signals::Interrupt;

pub struct TrainArgs {
    pub config: Option<PathBuf>,
    pub overrides: Vec<String>,
    pub out: Option<PathBuf>,
    pub resume: Option<PathBuf>,
    pub stop_after: Option<u64>,
    pub device: DeviceArg,
}

/// `runs/<preset>-NNN` (`runs/vae-<preset>-NNN` for an autoencoder) with the first unused
/// number.
fn default_run_dir(config: &RunConfig) -> PathBuf {
    let name = match config.task {
        TaskKind::Diffusion if config.latent.autoencoder.is_some() => {
            format!("ldm-{}", config.model.preset.name())
        }
        TaskKind::Diffusion => config.model.preset.name().to_string(),
        TaskKind::Autoencoder => format!("vae-{}", config.autoencoder.preset.name()),
    };
    (1..)
        .map(|n| PathBuf::from("runs").join(format!("{name}-{n:03}")))
        .find(|dir| !dir.exists())
        .expect("some run number is free")
}

pub fn train_command(args: TrainArgs) -> Result<()> {
    let interrupt = Interrupt::install("finishing the step under way and writing a checkpoint")?;
    let backend = args.device.device()?;
    match &args.resume {
        Some(dir) => {
            // The saved config says what the run trains.
            let checkpoint = resolve_checkpoint(dir)?;
            let saved = RunConfig::load(&checkpoint.join(CONFIG_FILE), &[])?;
            match saved.task {
                TaskKind::Diffusion if saved.text.trains_encoder() => {
                    announce_encoding(&saved);
                    let trainer =
                        Trainer::<JointTextTask>::resumed(dir, &args.overrides, &backend)?;
                    describe_joint(&trainer);
                    drive(trainer, &args, &interrupt)
                }
                TaskKind::Diffusion => {
                    announce_encoding(&saved);
                    let trainer =
                        Trainer::<DiffusionTask>::resumed(dir, &args.overrides, &backend)?;
                    describe_first_stages(&trainer.task, &trainer.run_dir);
                    drive(trainer, &args, &interrupt)
                }
                TaskKind::Autoencoder => drive(
                    Trainer::<AutoencoderTask>::resumed(dir, &args.overrides, &backend)?,
                    &args,
                    &interrupt,
                ),
            }
        }
        None => {
            let config = match &args.config {
                Some(path) => RunConfig::load(path, &args.overrides)?,
                None => RunConfig::default_with(&args.overrides)?,
            };
            let run_dir = args.out.clone().unwrap_or_else(|| default_run_dir(&config));
            match config.task {
                TaskKind::Diffusion if config.text.trains_encoder() => {
                    announce_encoding(&config);
                    let trainer = Trainer::<JointTextTask>::fresh(config, &run_dir, &backend)?;
                    describe_joint(&trainer);
                    drive(trainer, &args, &interrupt)
                }
                TaskKind::Diffusion => {
                    announce_encoding(&config);
                    let trainer = Trainer::<DiffusionTask>::fresh(config, &run_dir, &backend)?;
                    describe_first_stages(&trainer.task, &trainer.run_dir);
                    drive(trainer, &args, &interrupt)
                }
                TaskKind::Autoencoder => drive(
                    Trainer::<AutoencoderTask>::fresh(config, &run_dir, &backend)?,
                    &args,
                    &interrupt,
                ),
            }
        }
    }
}

/// A latent run encodes its images before the first step: say so, as it takes a while.
fn announce_encoding(config: &RunConfig) {
    if let Some(autoencoder) = &config.latent.autoencoder {
        eprintln!(
            "latent: encoding the images with the autoencoder {} (or reading the run's cache)",
            autoencoder.display()
        );
    }
}

/// What a text-to-image run conditions on, and what a latent run's encoding made: the
/// latents' shape, where they came from, the factor.
fn describe_first_stages(task: &DiffusionTask, run_dir: &RunDir) {
    if let Some(text) = task.text() {
        eprintln!(
            "text: the UNet cross-attends to the frozen encoder {} ({}-d states of {} tokens \
             per caption)",
            text.source().describe(),
            text.hidden_size(),
            text.context_length()
        );
    }
    let Some((_, made)) = task.latents() else {
        return;
    };
    if let Some(why) = &made.stale_cache {
        eprintln!(
            "latent: the cached latents in {} were not used ({why}): encoded again",
            run_dir.latent_cache().display()
        );
    }
    let [c, h, w] = made.record.latent_shape;
    let how = match made.encoded {
        0 => "read from the run's cache".to_string(),
        n => format!("{n} images encoded"),
    };
    eprintln!(
        "latent: the UNet trains on {c}×{h}×{w} latents ({how}), scaled by {:.5} ({})",
        made.record.scaling_factor, made.record.scaling_from
    );
}

/// A run that trains its text encoder: which one, at what learning rate; then its latents.
fn describe_joint(trainer: &Trainer<JointTextTask>) {
    let task = &trainer.task;
    eprintln!(
        "text: the UNet cross-attends to {} ({} tokens per caption), trained with it at {}× \
         train.lr",
        task.describe_encoder(),
        task.context_length(),
        task.encoder_lr_factor()
    );
    describe_first_stages(task.diffusion(), &trainer.run_dir);
}

/// Runs `trainer` with the progress display, and says how it ended.
fn drive<T: TrainTask>(
    mut trainer: Trainer<T>,
    args: &TrainArgs,
    interrupt: &Interrupt,
) -> Result<()> {
    let started = Instant::now();
    eprintln!(
        "run: {} (device {})",
        trainer.run_dir.path().display(),
        args.device.name()
    );
    trainer.stop_when(interrupt.flag());
    let mut progress = Progress::new(trainer.config.train.log_every);
    let result = trainer.run(args.stop_after, &mut |event| progress.on_event(event));
    progress.finish();
    if result? == RunEnd::Interrupted {
        let interrupted = interrupt.interrupted();
        eprintln!(
            "{interrupted} after step {} of {}: checkpoint {}\nresume with: oxidiff train --resume {}",
            trainer.state.step,
            trainer.config.train.steps,
            trainer.run_dir.checkpoint(trainer.state.step).display(),
            trainer.run_dir.path().display()
        );
        return Err(interrupted.into());
    }
    eprintln!(
        "done: {} steps in {:.1}s; run directory {}",
        trainer.state.step,
        started.elapsed().as_secs_f64(),
        trainer.run_dir.path().display()
    );
    Ok(())
}
