//! diffusers' `AutoencoderKL`, module for module: `encoder` (conv_in, down blocks, mid block,
//! GN + SiLU, conv_out to 2 × latent channels), `quant_conv`, the diagonal Gaussian posterior,
//! `post_quant_conv`, and the `decoder` mirroring the encoder with one more resnet per level.

use burn::module::Module;
use burn::nn::GroupNorm;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor};

use super::blocks::{Downsample2D, ResnetBlock2D, UNetMidBlock2D, Upsample2D, norm};
use super::config::AutoencoderKLConfig;
use super::posterior::DiagonalGaussian;
use crate::cpu::{conv2d, group_norm_silu};
use crate::unet::conv3x3;

/// One encoder level: `layers_per_block` resnets, then a downsampler (all but the last level).
#[derive(Module, Debug)]
pub struct DownEncoderBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    pub downsamplers: Vec<Downsample2D>,
}

/// One decoder level: `layers_per_block + 1` resnets, then an upsampler (all but the last).
#[derive(Module, Debug)]
pub struct UpDecoderBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    pub upsamplers: Vec<Upsample2D>,
}

#[derive(Module, Debug)]
pub struct Encoder {
    pub conv_in: Conv2d,
    pub down_blocks: Vec<DownEncoderBlock2D>,
    pub mid_block: UNetMidBlock2D,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

impl Encoder {
    fn new(config: &AutoencoderKLConfig, device: &Device) -> Self {
        let (groups, dropout) = (config.norm_num_groups, config.dropout);
        let channels = &config.block_out_channels;
        let mut input = channels[0];
        let down_blocks = channels
            .iter()
            .enumerate()
            .map(|(level, &out)| {
                let resnets = (0..config.layers_per_block)
                    .map(|j| {
                        let from = if j == 0 { input } else { out };
                        ResnetBlock2D::new(from, out, groups, dropout, device)
                    })
                    .collect();
                input = out;
                let last = level + 1 == channels.len();
                DownEncoderBlock2D {
                    resnets,
                    downsamplers: if last {
                        Vec::new()
                    } else {
                        vec![Downsample2D::new(out, device)]
                    },
                }
            })
            .collect();
        let top = *channels.last().expect("validated: at least one level");
        Self {
            conv_in: conv3x3(config.in_channels, channels[0]).init(device),
            down_blocks,
            mid_block: UNetMidBlock2D::new(top, groups, dropout, device),
            conv_norm_out: norm(groups, top, device),
            // Mean and log-variance of every latent channel ("double_z").
            conv_out: conv3x3(top, 2 * config.latent_channels).init(device),
        }
    }

    /// # Shapes
    /// - `x`: `[B, in, S, S]`; output: `[B, 2·latent, S/f, S/f]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut h = conv2d(&self.conv_in, x);
        for block in &self.down_blocks {
            for resnet in &block.resnets {
                h = resnet.forward(h);
            }
            for down in &block.downsamplers {
                h = down.forward(h);
            }
        }
        let h = self.mid_block.forward(h);
        conv2d(&self.conv_out, group_norm_silu(&self.conv_norm_out, h))
    }
}

#[derive(Module, Debug)]
pub struct Decoder {
    pub conv_in: Conv2d,
    pub mid_block: UNetMidBlock2D,
    pub up_blocks: Vec<UpDecoderBlock2D>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

impl Decoder {
    fn new(config: &AutoencoderKLConfig, device: &Device) -> Self {
        let (groups, dropout) = (config.norm_num_groups, config.dropout);
        let reversed: Vec<usize> = config.block_out_channels.iter().rev().copied().collect();
        let mut input = reversed[0];
        let up_blocks = reversed
            .iter()
            .enumerate()
            .map(|(level, &out)| {
                let resnets = (0..=config.layers_per_block)
                    .map(|j| {
                        let from = if j == 0 { input } else { out };
                        ResnetBlock2D::new(from, out, groups, dropout, device)
                    })
                    .collect();
                input = out;
                let last = level + 1 == reversed.len();
                UpDecoderBlock2D {
                    resnets,
                    upsamplers: if last {
                        Vec::new()
                    } else {
                        vec![Upsample2D::new(out, device)]
                    },
                }
            })
            .collect();
        let bottom = config.block_out_channels[0];
        Self {
            conv_in: conv3x3(config.latent_channels, reversed[0]).init(device),
            mid_block: UNetMidBlock2D::new(reversed[0], groups, dropout, device),
            up_blocks,
            conv_norm_out: norm(groups, bottom, device),
            conv_out: conv3x3(bottom, config.out_channels).init(device),
        }
    }

    /// # Shapes
    /// - `z`: `[B, latent, s, s]`; output: `[B, out, s·f, s·f]`
    pub fn forward(&self, z: Tensor<4>) -> Tensor<4> {
        conv2d(&self.conv_out, self.features(z))
    }

    /// Everything before `conv_out`: what the last layer sees (the adaptive weight of the
    /// adversarial loss compares gradients at that layer).
    ///
    /// # Shapes
    /// - `z`: `[B, latent, s, s]`; output: `[B, block_out_channels[0], s·f, s·f]`
    pub fn features(&self, z: Tensor<4>) -> Tensor<4> {
        let mut h = self.mid_block.forward(conv2d(&self.conv_in, z));
        for block in &self.up_blocks {
            for resnet in &block.resnets {
                h = resnet.forward(h);
            }
            for up in &block.upsamplers {
                h = up.forward(h);
            }
        }
        group_norm_silu(&self.conv_norm_out, h)
    }
}

/// A KL-regularised autoencoder (Rombach et al. 2022, §3), diffusers' `AutoencoderKL`.
#[derive(Module, Debug)]
pub struct AutoencoderKL {
    pub encoder: Encoder,
    pub decoder: Decoder,
    pub quant_conv: Conv2d,
    pub post_quant_conv: Conv2d,
}

impl AutoencoderKL {
    pub(super) fn new(config: &AutoencoderKLConfig, device: &Device) -> Self {
        let (l, l2) = (config.latent_channels, 2 * config.latent_channels);
        Self {
            encoder: Encoder::new(config, device),
            decoder: Decoder::new(config, device),
            quant_conv: Conv2dConfig::new([l2, l2], [1, 1]).init(device),
            post_quant_conv: Conv2dConfig::new([l, l], [1, 1]).init(device),
        }
    }

    /// The posterior q(z | x) of images in [-1, 1].
    ///
    /// # Shapes
    /// - `x`: `[B, in, S, S]`; the posterior's mean and log-variance: `[B, latent, S/f, S/f]`
    pub fn encode(&self, x: Tensor<4>) -> DiagonalGaussian {
        DiagonalGaussian::new(conv2d(&self.quant_conv, self.encoder.forward(x)))
    }

    /// Images from latents (unscaled: divide by `scaling_factor` first what a diffusion model
    /// produced).
    ///
    /// # Shapes
    /// - `z`: `[B, latent, s, s]`; output: `[B, out, s·f, s·f]`
    pub fn decode(&self, z: Tensor<4>) -> Tensor<4> {
        self.decoder.forward(conv2d(&self.post_quant_conv, z))
    }

    /// [`Decoder::features`] of latents: `decoder.conv_out` of them is [`Self::decode`].
    ///
    /// # Shapes
    /// - `z`: `[B, latent, s, s]`; output: `[B, block_out_channels[0], s·f, s·f]`
    pub fn decode_features(&self, z: Tensor<4>) -> Tensor<4> {
        self.decoder.features(conv2d(&self.post_quant_conv, z))
    }
}
