//! `task` and the `[autoencoder]` section: what a run trains, and the KL autoencoder of latent
//! diffusion with its training objective (latent-diffusion's `LPIPSWithDiscriminator`, less
//! the perceptual term, whose ImageNet weights cannot be had offline).

use oxidiff_models::vae::{AutoencoderKLConfig, NLayerDiscriminatorConfig};
use serde::{Deserialize, Serialize};

oxidiff_diffusion::named_enum! {
    /// What a run trains.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub enum TaskKind {
        /// A diffusion UNet (`[model]`, `[diffusion]`) on the images.
        #[default]
        Diffusion = "diffusion",
        /// A KL autoencoder (`[autoencoder]`) that reconstructs the images, the first stage of
        /// latent diffusion.
        Autoencoder = "autoencoder",
    }
}

oxidiff_diffusion::named_enum! {
    /// The autoencoder's architecture to start from.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub enum AutoencoderPreset {
        /// 32/64/64 channels, one resnet per level, f = 4, 4 latent channels.
        #[default]
        Small = "small",
        /// Stable Diffusion's: 128/256/512/512 channels, two resnets per level, f = 8.
        StableDiffusion = "stable-diffusion",
    }
}

oxidiff_diffusion::named_enum! {
    /// The reconstruction term.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub enum ReconstructionLoss {
        /// |x − x̂|, latent-diffusion's default.
        #[default]
        L1 = "l1",
        /// (x − x̂)².
        L2 = "l2",
    }
}

/// The `[autoencoder]` section: a preset with optional overrides (diffusers' key names), and
/// the objective.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoencoderSection {
    pub preset: AutoencoderPreset,
    /// Side of the (square) training images; a multiple of the downsampling factor.
    pub image_size: usize,
    pub in_channels: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_out_channels: Option<Vec<usize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layers_per_block: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latent_channels: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub norm_num_groups: Option<usize>,
    pub reconstruction: ReconstructionLoss,
    /// Weight of KL(q(z|x) ‖ N(0, I)) per image (latent-diffusion: 1e-6).
    pub kl_weight: f64,
    /// Start of the learned log-variance that scales the reconstruction term.
    pub logvar_init: f64,
    /// The step from which a PatchGAN discriminator joins the objective (hinge loss, adaptive
    /// weight; latent-diffusion's `disc_start`). Unset: no discriminator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disc_start: Option<u64>,
    /// Weight of the adversarial term on top of the adaptive weight (`disc_weight`).
    pub disc_weight: f64,
    /// The discriminator's stride-2 layers (`disc_num_layers`).
    pub disc_layers: usize,
    /// Channels of its first layer (pix2pix's `ndf`).
    pub disc_channels: usize,
}

impl Default for AutoencoderSection {
    fn default() -> Self {
        Self {
            preset: AutoencoderPreset::Small,
            image_size: 32,
            in_channels: 3,
            block_out_channels: None,
            layers_per_block: None,
            latent_channels: None,
            norm_num_groups: None,
            reconstruction: ReconstructionLoss::L1,
            kl_weight: 1e-6,
            logvar_init: 0.0,
            disc_start: None,
            disc_weight: 0.5,
            disc_layers: 3,
            disc_channels: 64,
        }
    }
}

impl AutoencoderSection {
    /// The preset with the overrides applied, validated (messages name `autoencoder.KEY`).
    pub fn resolve(&self) -> Result<AutoencoderKLConfig, String> {
        let mut config = match self.preset {
            AutoencoderPreset::Small => AutoencoderKLConfig::small(self.in_channels),
            AutoencoderPreset::StableDiffusion => AutoencoderKLConfig {
                in_channels: self.in_channels,
                out_channels: self.in_channels,
                ..AutoencoderKLConfig::stable_diffusion()
            },
        };
        if let Some(channels) = &self.block_out_channels {
            config = AutoencoderKLConfig {
                down_block_types: vec![config.down_block_types[0].clone(); channels.len()],
                up_block_types: vec![config.up_block_types[0].clone(); channels.len()],
                block_out_channels: channels.clone(),
                ..config
            };
        }
        if let Some(v) = self.layers_per_block {
            config.layers_per_block = v;
        }
        if let Some(v) = self.latent_channels {
            config.latent_channels = v;
        }
        if let Some(v) = self.norm_num_groups {
            config.norm_num_groups = v;
        }
        config.sample_size = self.image_size;
        let prefixed = |e: oxidiff_models::ModelError| {
            format!(
                "autoencoder.{}",
                e.to_string().trim_start_matches("autoencoder ")
            )
        };
        config.validate().map_err(prefixed)?;
        config
            .check_image_size(self.image_size)
            .map_err(|e| format!("autoencoder.{}", e.to_string().trim_start_matches("model.")))?;
        let non_negative = [
            ("autoencoder.kl_weight", self.kl_weight),
            ("autoencoder.disc_weight", self.disc_weight),
            ("autoencoder.logvar_init", self.logvar_init.abs()),
        ];
        for (key, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!(
                    "{key}: must be a finite number (≥ 0 for the weight), got {v}"
                ));
            }
        }
        if self.disc_start.is_some() {
            self.discriminator()
                .check(self.image_size)
                .map_err(prefixed)?;
        }
        Ok(config)
    }

    /// The PatchGAN discriminator's shape (used when `disc_start` is set).
    pub fn discriminator(&self) -> NLayerDiscriminatorConfig {
        NLayerDiscriminatorConfig {
            in_channels: self.in_channels,
            channels: self.disc_channels,
            n_layers: self.disc_layers,
        }
    }
}
