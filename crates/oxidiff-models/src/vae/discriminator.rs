//! The PatchGAN discriminator of latent-diffusion's autoencoder objective (pix2pix's
//! `NLayerDiscriminator`, Isola et al. 2017): `n_layers` stride-2 4×4 convolutions, then two
//! stride-1 ones, each but the first and last normalised and followed by LeakyReLU(0.2); one
//! logit per overlapping patch.
//!
//! The normalisation is batch normalisation with the batch's own statistics: the discriminator
//! only ever runs inside a training step, so it keeps no running averages. Its middle
//! convolutions keep a bias (redundant before the normalisation) so that they run on
//! oxidiff's CPU kernels.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::activation::leaky_relu;
use burn::tensor::{Device, Tensor};

use crate::ModelError;
use crate::cpu::conv2d;

/// The discriminator's shape.
#[derive(Clone, Debug, PartialEq)]
pub struct NLayerDiscriminatorConfig {
    pub in_channels: usize,
    /// Channels of the first layer (pix2pix's `ndf`), doubled per layer up to 8×.
    pub channels: usize,
    /// Stride-2 layers (pix2pix's `n_layers`, latent-diffusion's `disc_num_layers`).
    pub n_layers: usize,
}

/// Batch normalisation with the batch's statistics and a learned scale and shift.
#[derive(Module, Debug)]
pub struct BatchStatNorm {
    /// `[C]`
    pub gamma: Param<Tensor<1>>,
    /// `[C]`
    pub beta: Param<Tensor<1>>,
}

impl BatchStatNorm {
    /// # Shapes
    /// - `x`: `[B, C, H, W]`; output: the same
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, c, _, _] = x.dims();
        let mean = x.clone().mean_dim(0).mean_dim(2).mean_dim(3);
        let centred = x - mean;
        let var = centred.clone().square().mean_dim(0).mean_dim(2).mean_dim(3);
        let normed = centred / (var + 1e-5).sqrt();
        normed * self.gamma.val().reshape([1, c, 1, 1]) + self.beta.val().reshape([1, c, 1, 1])
    }
}

/// One layer: a 4×4 convolution, optionally normalised, then LeakyReLU(0.2) unless it is the
/// last.
#[derive(Module, Debug)]
pub struct DiscriminatorLayer {
    pub conv: Conv2d,
    pub norm: Option<BatchStatNorm>,
    pub activate: bool,
}

/// pix2pix's PatchGAN discriminator.
#[derive(Module, Debug)]
pub struct NLayerDiscriminator {
    pub layers: Vec<DiscriminatorLayer>,
}

impl NLayerDiscriminatorConfig {
    /// Side of the logit map for `size`×`size` images: halved `n_layers` times, then two
    /// 4×4 convolutions with padding 1 take one each.
    pub fn output_size(&self, size: usize) -> usize {
        (size >> self.n_layers).saturating_sub(2)
    }

    /// Refuses a shape with no layers or channels, and an image side too small for the
    /// layers (naming the keys of `[autoencoder]`).
    pub fn check(&self, size: usize) -> Result<(), ModelError> {
        if self.n_layers == 0 || self.channels == 0 {
            return Err(ModelError::InvalidAutoencoder {
                key: "disc_layers / disc_channels".into(),
                message: "must be at least 1".into(),
            });
        }
        if self.output_size(size) == 0 || !size.is_multiple_of(1 << self.n_layers) {
            let largest = (0..self.n_layers)
                .rev()
                .find(|&n| (size >> n) >= 3 && size.is_multiple_of(1 << n))
                .unwrap_or(0);
            return Err(ModelError::InvalidAutoencoder {
                key: "disc_layers".into(),
                message: format!(
                    "{} stride-2 layers leave no patches of {size}×{size} images (the side must \
                     be a multiple of 2^layers and at least 3·2^layers); at most {largest} here",
                    self.n_layers
                ),
            });
        }
        Ok(())
    }

    /// The discriminator with pix2pix's initialisation: convolution weights N(0, 0.02), scales
    /// N(1, 0.02), biases and shifts 0.
    pub fn init(&self, device: &Device) -> NLayerDiscriminator {
        let conv = |i: usize, o: usize, stride: usize| {
            Conv2dConfig::new([i, o], [4, 4])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                })
                .init(device)
        };
        let norm = |c: usize| BatchStatNorm {
            gamma: Initializer::Normal {
                mean: 1.0,
                std: 0.02,
            }
            .init([c], device),
            beta: Initializer::Zeros.init([c], device),
        };
        let width = |n: usize| self.channels * (1usize << n).min(8);
        let mut layers = vec![DiscriminatorLayer {
            conv: zero_bias(conv(self.in_channels, self.channels, 2), device),
            norm: None,
            activate: true,
        }];
        for n in 1..self.n_layers {
            layers.push(DiscriminatorLayer {
                conv: zero_bias(conv(width(n - 1), width(n), 2), device),
                norm: Some(norm(width(n))),
                activate: true,
            });
        }
        let last = width(self.n_layers);
        layers.push(DiscriminatorLayer {
            conv: zero_bias(conv(width(self.n_layers - 1), last, 1), device),
            norm: Some(norm(last)),
            activate: true,
        });
        layers.push(DiscriminatorLayer {
            conv: zero_bias(conv(last, 1, 1), device),
            norm: None,
            activate: false,
        });
        NLayerDiscriminator { layers }
    }
}

fn zero_bias(mut conv: Conv2d, device: &Device) -> Conv2d {
    if let Some(bias) = &conv.bias {
        let shape = bias.val().dims();
        conv.bias = Some(Initializer::Zeros.init(shape, device));
    }
    conv
}

impl NLayerDiscriminator {
    /// # Shapes
    /// - `x`: `[B, C, S, S]`; output: `[B, 1, s, s]` logits, s = [`NLayerDiscriminatorConfig::output_size`]
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.layers.iter().fold(x, |h, layer| {
            let mut h = conv2d(&layer.conv, h);
            if let Some(norm) = &layer.norm {
                h = norm.forward(h);
            }
            if layer.activate {
                h = leaky_relu(h, 0.2);
            }
            h
        })
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    #[test]
    fn patch_maps_have_pix2pix_sizes_and_small_images_are_refused() {
        let device = Device::flex();
        // pix2pix at 256×256 with 3 layers gives 30×30 patches.
        let config = NLayerDiscriminatorConfig {
            in_channels: 3,
            channels: 8,
            n_layers: 3,
        };
        assert_eq!(config.output_size(256), 30);
        let d = config.init(&device);
        let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Uniform(-1.0, 1.0), &device);
        assert_eq!(d.forward(x).dims(), [2, 1, 2, 2]);
        // latent-diffusion's default (3 channels, 64, 3 layers) has 2,765,633 parameters with
        // bias-free middle convolutions (the structure rebuilt in torch, `sum(p.numel())`);
        // ours keep their 128 + 256 + 512 biases.
        let full = NLayerDiscriminatorConfig {
            in_channels: 3,
            channels: 64,
            n_layers: 3,
        }
        .init(&device);
        assert_eq!(full.num_params(), 2_765_633 + 128 + 256 + 512);
        let err = NLayerDiscriminatorConfig {
            in_channels: 1,
            channels: 8,
            n_layers: 2,
        }
        .check(8)
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("disc_layers") && err.contains("at most 1"),
            "{err}"
        );
    }
}
