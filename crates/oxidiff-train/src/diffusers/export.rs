//! A trained run in diffusers' format: a diffusion run as a pipeline directory (`unet/`,
//! `scheduler/`, and for a pixel model `model_index.json` so `DDPMPipeline.from_pretrained`
//! loads it whole; a latent run adds `vae/`, and a latent text-to-image run `text_encoder/`,
//! `tokenizer/` and the `model_index.json` of a `StableDiffusionPipeline`), an autoencoder run
//! as an `AutoencoderKL` directory.
//!
//! The export is assembled in a hidden sibling of the output directory, every file synced,
//! and renamed into place at the end, so a failure or crash never leaves half an export
//! under its name; an earlier export (it holds `oxidiff_export.json`) is replaced whole.

use std::fs;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use oxidiff_data::Standardize;
use oxidiff_models::vae::{
    AutoencoderKLConfig, CONFIG_JSON, WEIGHTS_FILE, save_diffusers_autoencoder,
};
use oxidiff_models::{
    DIFFUSERS_VERSION, save_diffusers_unet, unet2d_condition_config_json, unet2d_config_json,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::pipeline::{MODEL_INDEX, SCHEDULER_DIR, UNET_DIR, VAE_DIR};
use super::scheduler::{SCHEDULER_CONFIG, scheduler_config_json};
use super::text::{TEXT_ENCODER_DIR, TOKENIZER_DIR, stable_diffusion_index, write_text_parts};
use crate::autoencoder_config::TaskKind;
use crate::checkpoint::{load_config, load_state, load_weights};
use crate::config::RunConfig;
use crate::error::TrainError;
use crate::latent::LatentSpace;
use crate::run_dir::{EMA_FILE, MODEL_FILE, RunDir, resolve_checkpoint, sync_dir, write_atomic};
use crate::text::load_joint;
use crate::trainer::{AutoencoderTask, TrainTask};

/// What an export writes next to the model files: where it came from. Its presence marks a
/// directory an export may replace.
pub const EXPORT_RECORD: &str = "oxidiff_export.json";

/// Every name an export writes at the top of its directory.
const EXPORT_ENTRIES: [&str; 9] = [
    EXPORT_RECORD,
    MODEL_INDEX,
    UNET_DIR,
    SCHEDULER_DIR,
    VAE_DIR,
    TEXT_ENCODER_DIR,
    TOKENIZER_DIR,
    CONFIG_JSON,
    WEIGHTS_FILE,
];

/// What kind of diffusers directory an export made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExportKind {
    /// `unet/` + `scheduler/` + `model_index.json`: `DDPMPipeline.from_pretrained(dir)`.
    DdpmPipeline,
    /// A class-conditional pixel model: `unet/` + `scheduler/` without `model_index.json`,
    /// since `DDPMPipeline` passes the UNet no class labels. Each part loads with its own
    /// `from_pretrained(dir, subfolder=…)`.
    ClassConditional,
    /// A latent model: `unet/` + `scheduler/` + `vae/` without `model_index.json` (no diffusers
    /// pipeline takes an unconditional `UNet2DModel` with an `AutoencoderKL`: the deprecated
    /// `LDMPipeline` declares a `VQModel`); each part loads with its own
    /// `from_pretrained(dir, subfolder=…)`.
    Latent,
    /// A latent text-to-image model: `unet/` (a `UNet2DConditionModel`), `vae/`,
    /// `text_encoder/`, `tokenizer/`, `scheduler/` and `model_index.json`:
    /// `StableDiffusionPipeline.from_pretrained(dir)`.
    StableDiffusionPipeline,
    /// A pixel-space text-to-image model: the same parts without `vae/` and
    /// `model_index.json` (no diffusers pipeline runs a `UNet2DConditionModel` on pixels).
    TextConditional,
    /// The directory itself is an `AutoencoderKL` (`AutoencoderKL.from_pretrained(dir)`).
    Autoencoder,
}

/// `oxidiff_export.json`, and what [`export_run`] returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exported {
    pub kind: ExportKind,
    /// The checkpoint the weights came from.
    pub checkpoint: PathBuf,
    /// Its optimiser steps.
    pub step: u64,
    /// `"ema"` or `"online"`.
    pub weights: String,
    /// The diffusers release the files are written for.
    pub diffusers_version: String,
    /// What a user should know about the export (in words).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Writes the run or checkpoint at `path` (a run directory: its newest checkpoint) into
/// `out_dir` in diffusers' format: its EMA weights when `use_ema`, else the online ones.
///
/// # Errors
/// - a run diffusers cannot express: per-channel standardised images (`data.standardize`),
///   attention heads of different widths (`model.num_heads`);
/// - an `out_dir` that is a file, or a non-empty directory that is not an earlier export (or
///   holds files an export does not write);
/// - an unreadable checkpoint, a file that cannot be written.
pub fn export_run(path: &Path, use_ema: bool, out_dir: &Path) -> Result<Exported, TrainError> {
    let checkpoint = resolve_checkpoint(path)?;
    let config = load_config(&checkpoint, &[])?;
    if config.data.standardize == Standardize::PerChannel {
        return Err(TrainError::diffusers(
            &checkpoint,
            "data.standardize = \"per-channel\": the model works on images standardised by \
             the run's per-channel mean and std (standardization.json), and diffusers' \
             pipelines map a model's output to pixels as x / 2 + 0.5, with no place for those \
             statistics; only runs with data.standardize = \"minus-one-one\" can be exported",
        ));
    }
    let staging = Staging::prepare(out_dir)?;
    let step = load_state::<serde_json::Value>(&checkpoint)?.step;
    let weights = checkpoint.join(if use_ema { EMA_FILE } else { MODEL_FILE });
    // Exporting is file work: the CPU device, whatever the run trained on.
    let device = Device::flex();
    let (kind, notes) = match config.task {
        TaskKind::Autoencoder => write_autoencoder(&config, &weights, &staging.tmp, &device)?,
        TaskKind::Diffusion => {
            write_diffusion(&config, &checkpoint, &weights, &staging.tmp, &device)?
        }
    };
    let exported = Exported {
        kind,
        checkpoint,
        step,
        weights: if use_ema { "ema" } else { "online" }.into(),
        diffusers_version: DIFFUSERS_VERSION.into(),
        notes,
    };
    let record = serde_json::to_string_pretty(&exported).expect("the record serialises");
    write_atomic(&staging.tmp.join(EXPORT_RECORD), record.as_bytes())?;
    staging.commit()?;
    Ok(exported)
}

/// `unet/`, `scheduler/`, and `vae/` (latent) or `model_index.json` (unconditional pixel).
fn write_diffusion(
    config: &RunConfig,
    checkpoint: &Path,
    weights: &Path,
    dir: &Path,
    device: &Device,
) -> Result<(ExportKind, Vec<String>), TrainError> {
    let unet_config = config.unet()?;
    // What diffusers cannot express is refused before any weight is read.
    match unet_config.cross_attention_dim {
        Some(_) => unet2d_condition_config_json(&unet_config)?,
        None => unet2d_config_json(&unet_config)?,
    };
    let scheduler = scheduler_config_json(&config.diffusion)?;
    let first_stage = config.first_stage()?;
    let text = config.text_source()?;
    let mut notes = Vec::new();

    // A run that trained its text encoder holds it in the same weight file as the UNet.
    let (unet, encoder) = if config.text.trains_encoder() {
        let (unet, encoder, _) = load_joint(config, weights, device)?;
        (unet, Some(encoder))
    } else {
        (load_weights(unet_config.init(device), weights)?, None)
    };
    save_diffusers_unet(&unet, &unet_config, &dir.join(UNET_DIR))?;
    write_json(&dir.join(SCHEDULER_DIR).join(SCHEDULER_CONFIG), &scheduler)?;
    let text_classes = match &text {
        Some(source) => {
            let encoder = match encoder {
                Some(trained) => trained,
                None => source.load_encoder(device)?,
            };
            Some(write_text_parts(config, source, &encoder, dir)?)
        }
        None => None,
    };
    let kind = if let Some(first) = first_stage {
        let run_dir = RunDir::of_checkpoint(checkpoint);
        let space = LatentSpace::of_run(&first, &run_dir.latent_record(), device)?;
        let sizes = first.sizes(config)?;
        let vae_config = AutoencoderKLConfig {
            sample_size: sizes.image_size,
            scaling_factor: space.scaling_factor,
            // Dropout is not a diffusers key, and does nothing when sampling.
            dropout: 0.0,
            ..first.config.clone()
        };
        save_diffusers_autoencoder(&dir.join(VAE_DIR), &vae_config, &space.vae)?;
        notes.push(format!(
            "vae/config.json's scaling_factor is the run's {} (latent.json): decode with \
             vae.decode(latents / vae.config.scaling_factor)",
            space.scaling_factor
        ));
        match text_classes {
            Some(classes) => {
                write_json(&dir.join(MODEL_INDEX), &stable_diffusion_index(classes))?;
                ExportKind::StableDiffusionPipeline
            }
            None => ExportKind::Latent,
        }
    } else if text_classes.is_some() {
        notes.push(
            "pixel-space text-to-image: the UNet2DConditionModel denoises pixels, and no \
             diffusers pipeline runs one without a vae, so no model_index.json is written"
                .into(),
        );
        ExportKind::TextConditional
    } else if unet_config.num_classes.is_some() {
        notes.push(format!(
            "class-conditional: the UNet takes class_labels (0..{n}, and {n} for \"no class\", \
             classifier-free guidance's unconditional model); DDPMPipeline passes none, so no \
             model_index.json is written",
            n = unet_config.num_classes.unwrap_or(0)
        ));
        ExportKind::ClassConditional
    } else {
        let index = json!({
            "_class_name": "DDPMPipeline",
            "_diffusers_version": DIFFUSERS_VERSION,
            "scheduler": ["diffusers", "DDPMScheduler"],
            "unet": ["diffusers", "UNet2DModel"],
        });
        write_json(&dir.join(MODEL_INDEX), &index)?;
        ExportKind::DdpmPipeline
    };
    Ok((kind, notes))
}

/// The autoencoder as an `AutoencoderKL` directory at `dir` itself.
fn write_autoencoder(
    config: &RunConfig,
    weights: &Path,
    dir: &Path,
    device: &Device,
) -> Result<(ExportKind, Vec<String>), TrainError> {
    let vae_config = config
        .autoencoder
        .resolve()
        .map_err(|message| TrainError::Config {
            origin: "[autoencoder]".into(),
            message,
        })?;
    let vae_config = AutoencoderKLConfig {
        dropout: 0.0,
        ..vae_config
    };
    let task = AutoencoderTask::new(config)?;
    let trained = load_weights(task.init_model(device), weights)?;
    save_diffusers_autoencoder(dir, &vae_config, &trained.vae)?;
    let notes = vec![format!(
        "scaling_factor is the preset's {} (an autoencoder run measures none; a latent run on \
         this export would use it, where one on the run itself measures 1/σ of its latents: \
         set latent.scaling_factor to choose)",
        vae_config.scaling_factor
    )];
    Ok((ExportKind::Autoencoder, notes))
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), TrainError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    }
    let text = serde_json::to_string_pretty(value).expect("a JSON value serialises");
    write_atomic(path, text.as_bytes())
}

/// The hidden directory an export is assembled in, renamed to the output directory when
/// complete (and removed if it is dropped before).
struct Staging {
    out: PathBuf,
    tmp: PathBuf,
    committed: bool,
}

impl Staging {
    /// Checks `out` (absent, empty, or an earlier export holding nothing else) and makes a
    /// fresh staging directory beside it.
    fn prepare(out: &Path) -> Result<Self, TrainError> {
        let refuse = |message: String| TrainError::diffusers(out, message);
        if out.exists() && !out.is_dir() {
            return Err(refuse("is a file; name a directory for the export".into()));
        }
        if out.is_dir() {
            let mut names = Vec::new();
            for entry in fs::read_dir(out).map_err(|e| TrainError::io(out, e))? {
                let entry = entry.map_err(|e| TrainError::io(out, e))?;
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
            names.sort();
            if !names.is_empty() && !names.iter().any(|n| n == EXPORT_RECORD) {
                return Err(refuse(format!(
                    "is not empty and not an earlier oxidiff export (it has no {EXPORT_RECORD}): \
                     choose a new --out, or empty it first"
                )));
            }
            if let Some(other) = names.iter().find(|n| !EXPORT_ENTRIES.contains(&n.as_str())) {
                return Err(refuse(format!(
                    "is an earlier export that also holds `{other}`, which no export writes; a \
                     new export replaces the whole directory, so move `{other}` out first (or \
                     choose a new --out)"
                )));
            }
        }
        let parent = parent_of(out);
        fs::create_dir_all(&parent).map_err(|e| TrainError::io(&parent, e))?;
        let name = out
            .file_name()
            .ok_or_else(|| refuse("has no directory name".into()))?
            .to_string_lossy()
            .into_owned();
        let tmp = parent.join(format!(".{name}.export-{}.tmp", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
        }
        fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
        Ok(Self {
            out: out.to_path_buf(),
            tmp,
            committed: false,
        })
    }

    /// Moves the finished export into place: an earlier one (or an empty directory) is
    /// renamed away first and deleted after.
    fn commit(mut self) -> Result<(), TrainError> {
        sync_tree(&self.tmp)?;
        let parent = parent_of(&self.out);
        if self.out.exists() {
            let old = self.tmp.with_extension("old");
            if old.exists() {
                fs::remove_dir_all(&old).map_err(|e| TrainError::io(&old, e))?;
            }
            fs::rename(&self.out, &old).map_err(|e| TrainError::io(&self.out, e))?;
            fs::rename(&self.tmp, &self.out).map_err(|e| TrainError::io(&self.out, e))?;
            self.committed = true;
            fs::remove_dir_all(&old).map_err(|e| TrainError::io(&old, e))?;
        } else {
            fs::rename(&self.tmp, &self.out).map_err(|e| TrainError::io(&self.out, e))?;
            self.committed = true;
        }
        sync_dir(&parent).map_err(|e| TrainError::io(&parent, e))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Syncs every directory under `dir` (the files were synced when written), so the renames
/// that made them are durable before the export is moved into place.
fn sync_tree(dir: &Path) -> Result<(), TrainError> {
    for entry in fs::read_dir(dir).map_err(|e| TrainError::io(dir, e))? {
        let path = entry.map_err(|e| TrainError::io(dir, e))?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        }
    }
    sync_dir(dir).map_err(|e| TrainError::io(dir, e))
}
