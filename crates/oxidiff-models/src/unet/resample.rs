use burn::module::Module;

use crate::cpu::conv2d;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor};

use super::resblock::conv3x3;

/// Halves the resolution with a strided 3×3 convolution.
#[derive(Module, Debug)]
pub struct Downsample {
    pub conv: Conv2d,
}

impl Downsample {
    pub fn new(channels: usize, device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([channels, channels], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
        }
    }

    /// # Shapes
    /// - `x`: `[B, C, H, W]`
    /// - output: `[B, C, H/2, W/2]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv2d(&self.conv, x)
    }
}

/// Doubles the resolution: nearest-neighbour ×2, then a 3×3 convolution.
#[derive(Module, Debug)]
pub struct Upsample {
    pub conv: Conv2d,
}

impl Upsample {
    pub fn new(channels: usize, device: &Device) -> Self {
        Self {
            conv: conv3x3(channels, channels).init(device),
        }
    }

    /// # Shapes
    /// - `x`: `[B, C, H, W]`
    /// - output: `[B, C, 2H, 2W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv2d(&self.conv, nearest_2x(x))
    }
}

/// Nearest-neighbour ×2 by broadcasting, so the semantics (each pixel becomes a 2×2 block) do not
/// depend on a backend's corner-alignment convention.
///
/// # Shapes
/// - `x`: `[B, C, H, W]`
/// - output: `[B, C, 2H, 2W]`
pub fn nearest_2x(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h, 1, w, 1])
        .expand([b, c, h, 2, w, 2])
        .reshape([b, c, 2 * h, 2 * w])
}
