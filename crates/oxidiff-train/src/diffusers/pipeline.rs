//! A diffusers directory as a model to sample from: a pipeline directory (`unet/` and
//! `scheduler/`, with `vae/` a latent model, with `text_encoder/` + `tokenizer/` a
//! text-to-image one such as a `StableDiffusionPipeline`), or a bare `UNet2DModel` directory whose sibling
//! `../scheduler/` gives its noise schedule. [`crate::load_for_sampling`] reads one as it
//! reads a run, with a [`RunConfig`] equivalent to the configs, so `oxidiff sample`, `inpaint`
//! and `denoise` treat both alike.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use oxidiff_diffusion::{GaussianDiffusion, VarianceType};
use oxidiff_models::vae::{CONFIG_JSON, load_diffusers_autoencoder};
use oxidiff_models::{ModelConfig, UNetConfig, load_diffusers_unet};
use serde_json::Value;

use super::scheduler::{SCHEDULER_CONFIG, diffusion_config_from_scheduler_json, scheduler_sampler};
use super::text::TEXT_ENCODER_DIR;
use crate::config::RunConfig;
use crate::error::TrainError;
use crate::generate::LoadedModel;
use crate::latent::LatentSpace;
use crate::run_dir::{CONFIG_FILE, RunDir, STATE_FILE};
use crate::text::{PretrainedText, TextConditioner};

/// The pipeline's folders, as diffusers names them.
pub(crate) const UNET_DIR: &str = "unet";
pub(crate) const SCHEDULER_DIR: &str = "scheduler";
pub(crate) const VAE_DIR: &str = "vae";
pub(crate) const MODEL_INDEX: &str = "model_index.json";

/// Where the parts of a diffusers model lie.
#[derive(Debug)]
pub(crate) struct DiffusersModel {
    /// The directory as it was named.
    pub root: PathBuf,
    pub unet: PathBuf,
    /// `scheduler_config.json`.
    pub scheduler: PathBuf,
    pub vae: Option<PathBuf>,
    /// The pipeline directory, when it has `text_encoder/` (and `tokenizer/`).
    pub text: Option<PathBuf>,
}

/// Whether `path` is a diffusers directory rather than an oxidiff run or checkpoint (which
/// has `config.toml` or `state.json`, and never diffusers' `config.json`).
pub(crate) fn is_diffusers_dir(path: &Path) -> bool {
    let oxidiff = path.join(STATE_FILE).exists()
        || path.join(CONFIG_FILE).exists()
        || RunDir::new(path).checkpoints_dir().is_dir();
    !oxidiff
        && (path.join(MODEL_INDEX).is_file()
            || path.join(UNET_DIR).is_dir()
            || path.join(CONFIG_JSON).is_file())
}

/// What a command that needs an oxidiff run says of a diffusers directory.
pub(crate) fn not_a_checkpoint(path: &Path) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: "is a diffusers directory, not an oxidiff checkpoint: it holds no training \
                  state, data or held-out split; sample, inpaint and denoise load it, and \
                  what needs a run (eval, train --resume, export) needs the run it came from"
            .into(),
    }
}

/// The diffusers model at `path`; `None` when `path` is no diffusers directory.
///
/// # Errors
/// A pipeline without `unet/config.json` or `scheduler/scheduler_config.json`, a bare
/// `UNet2DModel` directory without a sibling `../scheduler/`, an `AutoencoderKL` directory
/// (each naming the missing file or the directory).
pub(crate) fn find(path: &Path) -> Result<Option<DiffusersModel>, TrainError> {
    if !is_diffusers_dir(path) {
        return Ok(None);
    }
    if path.join(MODEL_INDEX).is_file() || path.join(UNET_DIR).is_dir() {
        return pipeline(path, path.join(UNET_DIR)).map(Some);
    }
    let config = path.join(CONFIG_JSON);
    if class_name(&config)?.as_deref() == Some("AutoencoderKL") {
        return Err(TrainError::diffusers(
            path,
            "is an AutoencoderKL directory (an autoencoder): it reconstructs images, it does \
             not sample them; name the pipeline directory that holds it as vae/ next to unet/ \
             and scheduler/",
        ));
    }
    // A bare UNet2DModel: its schedule (and any autoencoder) lie beside it, when it is a
    // pipeline's unet/.
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let scheduler = parent.join(SCHEDULER_DIR).join(SCHEDULER_CONFIG);
    if !scheduler.is_file() {
        return Err(TrainError::diffusers(
            &scheduler,
            format!(
                "missing: {} is a bare UNet2DModel directory, which holds no noise schedule; \
                 sampling needs the DDPMScheduler's scheduler_config.json of the pipeline it \
                 belongs to (name the pipeline directory with unet/ and scheduler/, or put a \
                 scheduler/ folder next to it)",
                path.display()
            ),
        ));
    }
    pipeline(parent, path.to_path_buf()).map(|mut found| {
        found.root = path.to_path_buf();
        Some(found)
    })
}

/// The parts of the pipeline directory `dir` with its UNet at `unet`.
fn pipeline(dir: &Path, unet: PathBuf) -> Result<DiffusersModel, TrainError> {
    if !unet.join(CONFIG_JSON).is_file() {
        return Err(TrainError::diffusers(
            unet.join(CONFIG_JSON),
            format!(
                "missing: {} is a diffusers pipeline directory, and oxidiff samples from its \
                 UNet2DModel in unet/",
                dir.display()
            ),
        ));
    }
    let scheduler = dir.join(SCHEDULER_DIR).join(SCHEDULER_CONFIG);
    if !scheduler.is_file() {
        return Err(TrainError::diffusers(
            &scheduler,
            format!(
                "missing: the pipeline {} has no noise schedule (a DDPMScheduler's \
                 scheduler/scheduler_config.json), which sampling needs",
                dir.display()
            ),
        ));
    }
    let vae = dir.join(VAE_DIR);
    Ok(DiffusersModel {
        root: dir.to_path_buf(),
        unet,
        scheduler,
        vae: vae.join(CONFIG_JSON).is_file().then_some(vae),
        text: dir
            .join(TEXT_ENCODER_DIR)
            .is_dir()
            .then(|| dir.to_path_buf()),
    })
}

/// `_class_name` of a diffusers `config.json`.
fn class_name(path: &Path) -> Result<Option<String>, TrainError> {
    let json = read_json_value(path)?;
    Ok(json
        .get("_class_name")
        .and_then(Value::as_str)
        .map(str::to_string))
}

pub(crate) fn read_json_value(path: &Path) -> Result<Value, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| TrainError::diffusers(path, format!("not JSON: {e}")))
}

/// The model at `found` on `device`: its UNet, its schedule, a latent model's autoencoder and
/// scaling factor, and the run config they amount to. A diffusers directory has one set of
/// weights, so there is no EMA to choose.
pub(crate) fn load(found: DiffusersModel, device: &Device) -> Result<LoadedModel, TrainError> {
    let (unet, model) = load_diffusers_unet(&found.unet, device)?;
    let scheduler = read_json_value(&found.scheduler)?;
    let diffusion = diffusion_config_from_scheduler_json(&scheduler, &found.scheduler)?;
    let mut config = run_config(&found, &unet, diffusion)?;
    config.sample.sampler = scheduler_sampler(&scheduler);
    let latent = match &found.vae {
        Some(dir) => {
            let (vae_config, vae) = load_diffusers_autoencoder(dir, device)?;
            Some(LatentSpace {
                vae,
                scaling_factor: vae_config.scaling_factor,
            })
        }
        None => None,
    };
    let text = match config.text_source()? {
        Some(source) => Some(TextConditioner::load(&source, None, device)?),
        None => None,
    };
    Ok(LoadedModel {
        diffusion: GaussianDiffusion::new(config.diffusion.clone())?,
        config,
        model,
        checkpoint: found.root,
        standardization: None,
        latent,
        text,
    })
}

/// The run config a diffusers model amounts to: `[model]` its UNet, `[diffusion]` its
/// scheduler, `[latent]` its autoencoder; the rest oxidiff's defaults (`[sample]`: DDIM, 50
/// steps, at most the training timesteps; [`load`] then picks the scheduler's sampler).
fn run_config(
    found: &DiffusersModel,
    unet: &UNetConfig,
    diffusion: oxidiff_diffusion::DiffusionConfig,
) -> Result<RunConfig, TrainError> {
    let unet_json = found.unet.join(CONFIG_JSON);
    let factor = match diffusion.variance_type {
        VarianceType::Fixed => 1,
        VarianceType::Learned => 2,
    };
    if unet.out_channels != factor * unet.in_channels {
        return Err(TrainError::diffusers(
            &unet_json,
            format!(
                "out_channels = {} with in_channels = {} and {}'s variance_type: oxidiff's UNet \
                 predicts its input's channels, twice as many with a learned variance \
                 (variance_type \"learned_range\")",
                unet.out_channels,
                unet.in_channels,
                found.scheduler.display()
            ),
        ));
    }
    let mut config = RunConfig {
        model: ModelConfig::exactly(unet),
        ..RunConfig::default()
    };
    config.sample.steps = config.sample.steps.min(diffusion.num_train_timesteps);
    if let Some(vae) = &found.vae {
        if diffusion.clip_sample {
            return Err(TrainError::diffusers(
                &found.scheduler,
                "clip_sample = true clamps the predicted x0 to [-1, 1], where latents are not \
                 confined, and oxidiff refuses that for a latent model (the pipeline has vae/); \
                 set clip_sample to false",
            ));
        }
        let vae_config = read_json_value(&vae.join(CONFIG_JSON))?;
        let latent_channels = vae_config.get("latent_channels").and_then(Value::as_u64);
        if latent_channels != Some(unet.in_channels as u64) {
            return Err(TrainError::diffusers(
                &unet_json,
                format!(
                    "in_channels = {} but the autoencoder's latent_channels (in {}) is {}: the \
                     UNet of a latent pipeline takes the latents in",
                    unet.in_channels,
                    vae.join(CONFIG_JSON).display(),
                    latent_channels.map_or("absent".into(), |c| c.to_string())
                ),
            ));
        }
        config.latent.autoencoder = Some(vae.clone());
    }
    if let Some(root) = &found.text {
        let source = PretrainedText::resolve(&root.display().to_string())?;
        if unet.cross_attention_dim != Some(source.hidden_size) {
            return Err(TrainError::diffusers(
                &unet_json,
                format!(
                    "cross_attention_dim = {} but the text encoder in {} is {} wide: the UNet \
                     attends to its states",
                    unet.cross_attention_dim
                        .map_or("absent".into(), |d| d.to_string()),
                    source.encoder_dir.display(),
                    source.hidden_size
                ),
            ));
        }
        config.text.encoder = Some(root.display().to_string());
    } else if unet.cross_attention_dim.is_some() {
        return Err(TrainError::diffusers(
            &unet_json,
            format!(
                "is a UNet2DConditionModel, which attends to a text encoder's states, but {} \
                 has no text_encoder/ (and tokenizer/) to make them",
                found.root.display()
            ),
        ));
    }
    config.diffusion = diffusion;
    config.validate().map_err(|message| TrainError::Config {
        origin: found.root.display().to_string(),
        message: format!("the diffusers configs amount to an invalid run config: {message}"),
    })?;
    // The section must build this very network, or sampling would allocate another one.
    if config.unet()? != *unet {
        return Err(TrainError::diffusers(
            &unet_json,
            "does not read back as the same oxidiff UNet from a [model] section (a bug: please \
             report it with this config.json)",
        ));
    }
    Ok(config)
}
