//! `[model] init_from`: the weights a fresh diffusion run starts from — a diffusers
//! `UNet2DModel` or `UNet2DConditionModel` directory (or a pipeline directory's `unet/`: a
//! `StableDiffusionPipeline` to fine-tune), or an oxidiff diffusion run or
//! checkpoint (its EMA weights, the ones it samples with). Read from its config files first, so
//! an architecture that differs from the run's is refused, naming the first key, before any
//! data is read; the weights are loaded when the trainer builds the network.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use oxidiff_models::vae::CONFIG_JSON;
use oxidiff_models::{
    UNet, UNetConfig, load_diffusers_unet, unet_config_from_unet2d_condition_json,
    unet_config_from_unet2d_json,
};

use super::pipeline::{UNET_DIR, read_json_value};
use crate::autoencoder_config::TaskKind;
use crate::checkpoint::{self, load_config};
use crate::config::RunConfig;
use crate::error::TrainError;
use crate::run_dir::{EMA_FILE, resolve_checkpoint};

/// Where the initial weights are.
#[derive(Clone, Debug, PartialEq)]
enum Source {
    /// A `UNet2DModel` directory.
    Diffusers { dir: PathBuf },
    /// An oxidiff checkpoint's EMA weights.
    Run { weights: PathBuf },
}

/// The weights `model.init_from` names, with the architecture their files describe.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct InitialWeights {
    source: Source,
    config: UNetConfig,
    /// The file that describes the architecture, named in a mismatch.
    described_in: PathBuf,
}

fn bad(path: &Path, message: impl Into<String>) -> TrainError {
    TrainError::Config {
        origin: "model.init_from".into(),
        message: format!("{}: {}", path.display(), message.into()),
    }
}

impl InitialWeights {
    /// Reads what `path` holds from its config files alone.
    pub(crate) fn resolve(path: &Path) -> Result<Self, TrainError> {
        if !path.exists() {
            return Err(bad(
                path,
                "no such directory; name a diffusers UNet2DModel or pipeline directory, or an \
                 oxidiff diffusion run or checkpoint",
            ));
        }
        let unet_dir = if path.join(UNET_DIR).join(CONFIG_JSON).is_file() {
            Some(path.join(UNET_DIR))
        } else if path.join(CONFIG_JSON).is_file() {
            Some(path.to_path_buf())
        } else {
            None
        };
        if let Some(dir) = unet_dir {
            let described_in = dir.join(CONFIG_JSON);
            let json = read_json_value(&described_in)?;
            // A text-to-image pipeline's UNet (fine-tuning Stable Diffusion) or a plain one.
            let config = match json.get("_class_name").and_then(serde_json::Value::as_str) {
                Some("UNet2DConditionModel") => {
                    unet_config_from_unet2d_condition_json(&json, &described_in)?
                }
                _ => unet_config_from_unet2d_json(&json, &described_in)?,
            };
            return Ok(Self {
                source: Source::Diffusers { dir },
                config,
                described_in,
            });
        }
        let checkpoint = resolve_checkpoint(path).map_err(|e| bad(path, e.to_string()))?;
        let run = load_config(&checkpoint, &[])?;
        if run.task != TaskKind::Diffusion {
            return Err(bad(
                path,
                "is an autoencoder run (task = \"autoencoder\"), which has no UNet to start from",
            ));
        }
        Ok(Self {
            config: run.unet()?,
            described_in: checkpoint.join(crate::run_dir::CONFIG_FILE),
            source: Source::Run {
                weights: checkpoint.join(EMA_FILE),
            },
        })
    }

    /// Refuses weights of another architecture than `expected` (the run's), naming the first
    /// key that differs. Dropout is no architecture: a run may fine-tune with its own.
    pub(crate) fn check(&self, expected: &UNetConfig) -> Result<(), TrainError> {
        let (a, b) = (expected, &self.config);
        let keys: [(&str, String, String); 15] = [
            (
                "image_size",
                a.image_size.to_string(),
                b.image_size.to_string(),
            ),
            (
                "in_channels",
                a.in_channels.to_string(),
                b.in_channels.to_string(),
            ),
            (
                "model_channels",
                a.model_channels.to_string(),
                b.model_channels.to_string(),
            ),
            (
                "channel_mult",
                format!("{:?}", a.channel_mult),
                format!("{:?}", b.channel_mult),
            ),
            (
                "num_res_blocks",
                a.num_res_blocks.to_string(),
                b.num_res_blocks.to_string(),
            ),
            (
                "attention_resolutions",
                format!("{:?}", sorted(&a.attention_resolutions)),
                format!("{:?}", sorted(&b.attention_resolutions)),
            ),
            (
                "num_heads",
                a.num_heads.to_string(),
                b.num_heads.to_string(),
            ),
            (
                "norm_groups",
                a.norm_groups.to_string(),
                b.norm_groups.to_string(),
            ),
            (
                "time_embed_dim",
                a.time_embed_dim.to_string(),
                b.time_embed_dim.to_string(),
            ),
            (
                "time_injection",
                format!("\"{}\"", a.time_injection.name()),
                format!("\"{}\"", b.time_injection.name()),
            ),
            ("num_classes", option(a.num_classes), option(b.num_classes)),
            (
                "cross_attention_dim (the text encoder's width)",
                option(a.cross_attention_dim),
                option(b.cross_attention_dim),
            ),
            (
                "transformer_layers_per_block",
                a.transformer_layers_per_block.to_string(),
                b.transformer_layers_per_block.to_string(),
            ),
            (
                "use_linear_projection",
                a.use_linear_projection.to_string(),
                b.use_linear_projection.to_string(),
            ),
            (
                "heads_per_level",
                format!("{:?}", a.heads_per_level),
                format!("{:?}", b.heads_per_level),
            ),
        ];
        if let Some((key, ours, theirs)) = keys.iter().find(|(_, ours, theirs)| ours != theirs) {
            return Err(bad(
                &self.described_in,
                format!(
                    "describes model.{key} = {theirs}, but this run's UNet has {ours}: the \
                     weights fit only the architecture they were trained with (set \
                     model.{key} = {theirs}, or start from other weights)"
                ),
            ));
        }
        if a.out_channels != b.out_channels {
            return Err(bad(
                &self.described_in,
                format!(
                    "describes a UNet with {} output channels, but this run's has {}: a learned \
                     variance (diffusion.variance_type = \"learned\") doubles them; set \
                     diffusion.variance_type as the weights were trained",
                    b.out_channels, a.out_channels
                ),
            ));
        }
        Ok(())
    }

    /// The weights, in a network built from `expected` (the run's config, with its dropout)
    /// on `device`.
    pub(crate) fn load(&self, expected: &UNetConfig, device: &Device) -> Result<UNet, TrainError> {
        let fresh = expected.init(device);
        let loaded = match &self.source {
            Source::Diffusers { dir } => load_diffusers_unet(dir, device)?.1,
            Source::Run { weights } => checkpoint::load_weights(self.config.init(device), weights)?,
        };
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            fresh.try_load_record(loaded.into_record())
        }));
        match applied {
            Ok(Ok(unet)) => Ok(unet),
            Ok(Err(e)) => Err(bad(
                &self.described_in,
                format!("the weights do not apply: {e}"),
            )),
            Err(_) => Err(bad(&self.described_in, "the weights could not be applied")),
        }
    }
}

fn sorted(values: &[usize]) -> Vec<usize> {
    let mut values = values.to_vec();
    values.sort_unstable();
    values
}

fn option(value: Option<usize>) -> String {
    value.map_or("unset".into(), |v| v.to_string())
}

impl RunConfig {
    /// `model.init_from` read and checked against this run's UNet; `None` when unset.
    ///
    /// # Errors
    /// A path that is no UNet, an architecture that differs (naming the first key).
    pub(crate) fn initial_weights(&self) -> Result<Option<InitialWeights>, TrainError> {
        let Some(path) = &self.model.init_from else {
            return Ok(None);
        };
        let weights = InitialWeights::resolve(path)?;
        weights.check(&self.unet()?)?;
        Ok(Some(weights))
    }
}
