//! The autoencoder's building blocks, named and laid out as diffusers' (`ResnetBlock2D` without
//! a time embedding, the mid block's `Attention`, `Downsample2D`, `Upsample2D`), so that every
//! parameter's path is the tensor name diffusers writes. GroupNorm's ε is diffusers' 1e-6.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Dropout, DropoutConfig, GroupNorm, GroupNormConfig, Linear, LinearConfig};
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Tensor};

use crate::cpu::{attention, conv2d, group_norm, group_norm_silu};
use crate::unet::{conv3x3, nearest_2x};

/// diffusers' GroupNorm ε in the autoencoder.
pub(crate) const NORM_EPS: f64 = 1e-6;

pub(crate) fn norm(groups: usize, channels: usize, device: &Device) -> GroupNorm {
    GroupNormConfig::new(groups, channels)
        .with_epsilon(NORM_EPS)
        .init(device)
}

/// A residual block without time embedding: GN → SiLU → conv → GN → SiLU → dropout → conv,
/// plus the input (through a 1×1 `conv_shortcut` when the channel count changes).
#[derive(Module, Debug)]
pub struct ResnetBlock2D {
    pub norm1: GroupNorm,
    pub conv1: Conv2d,
    pub norm2: GroupNorm,
    pub dropout: Dropout,
    pub conv2: Conv2d,
    pub conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock2D {
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        groups: usize,
        dropout: f64,
        device: &Device,
    ) -> Self {
        Self {
            norm1: norm(groups, in_channels, device),
            conv1: conv3x3(in_channels, out_channels).init(device),
            norm2: norm(groups, out_channels, device),
            dropout: DropoutConfig::new(dropout).init(),
            conv2: conv3x3(out_channels, out_channels).init(device),
            conv_shortcut: (in_channels != out_channels)
                .then(|| Conv2dConfig::new([in_channels, out_channels], [1, 1]).init(device)),
        }
    }

    /// # Shapes
    /// - `x`: `[B, in, H, W]`; output: `[B, out, H, W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = conv2d(&self.conv1, group_norm_silu(&self.norm1, x.clone()));
        let h = group_norm_silu(&self.norm2, h);
        let h = conv2d(&self.conv2, self.dropout.forward(h));
        let skip = match &self.conv_shortcut {
            Some(conv) => conv2d(conv, x),
            None => x,
        };
        skip + h
    }
}

/// Single-head self-attention over the pixels with a residual connection, as diffusers' VAE mid
/// block (`Attention` with `heads = 1`, `dim_head = channels`; `to_out.0` is its projection).
#[derive(Module, Debug)]
pub struct VaeAttention {
    pub group_norm: GroupNorm,
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    pub to_out: Vec<Linear>,
}

impl VaeAttention {
    pub fn new(channels: usize, groups: usize, device: &Device) -> Self {
        let linear = || LinearConfig::new(channels, channels).init(device);
        Self {
            group_norm: norm(groups, channels, device),
            to_q: linear(),
            to_k: linear(),
            to_v: linear(),
            to_out: vec![linear()],
        }
    }

    /// # Shapes
    /// - `x`, output: `[B, C, H, W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [batch, channels, height, width] = x.dims();
        let tokens = height * width;
        // [B, C, H, W] → [B·HW, C], one row per pixel (see `AttentionBlock::forward`).
        let h = group_norm(&self.group_norm, x.clone())
            .reshape([batch, channels, tokens])
            .swap_dims(1, 2)
            .reshape([batch * tokens, channels]);
        let heads = |t: Tensor<2>| t.reshape([batch, 1, tokens, channels]);
        let q = heads(self.to_q.forward(h.clone()));
        let k = heads(self.to_k.forward(h.clone()));
        let v = heads(self.to_v.forward(h));
        // softmax(QKᵀ/√C)V (Vaswani et al. 2017, eq. 1).
        let attended = attention(q, k, v).reshape([batch * tokens, channels]);
        let out = self.to_out[0]
            .forward(attended)
            .reshape([batch, tokens, channels])
            .swap_dims(1, 2)
            .reshape([batch, channels, height, width]);
        x + out
    }
}

/// Halves the resolution: zero padding on the right and bottom only, then a stride-2 3×3
/// convolution without padding (diffusers' `Downsample2D` with `padding = 0`).
#[derive(Module, Debug)]
pub struct Downsample2D {
    pub conv: Conv2d,
}

impl Downsample2D {
    pub fn new(channels: usize, device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([channels, channels], [3, 3])
                .with_stride([2, 2])
                .init(device),
        }
    }

    /// # Shapes
    /// - `x`: `[B, C, H, W]`; output: `[B, C, H/2, W/2]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        // (left, right, top, bottom), as torch's F.pad(x, (0, 1, 0, 1)).
        conv2d(&self.conv, x.pad((0, 1, 0, 1), PadMode::Constant(0.0)))
    }
}

/// Doubles the resolution: nearest neighbour, then a 3×3 convolution.
#[derive(Module, Debug)]
pub struct Upsample2D {
    pub conv: Conv2d,
}

impl Upsample2D {
    pub fn new(channels: usize, device: &Device) -> Self {
        Self {
            conv: conv3x3(channels, channels).init(device),
        }
    }

    /// # Shapes
    /// - `x`: `[B, C, H, W]`; output: `[B, C, 2H, 2W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv2d(&self.conv, nearest_2x(x))
    }
}

/// The middle of the encoder and of the decoder: resnet, attention, resnet.
#[derive(Module, Debug)]
pub struct UNetMidBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<VaeAttention>,
}

impl UNetMidBlock2D {
    pub fn new(channels: usize, groups: usize, dropout: f64, device: &Device) -> Self {
        let resnet = || ResnetBlock2D::new(channels, channels, groups, dropout, device);
        Self {
            resnets: vec![resnet(), resnet()],
            attentions: vec![VaeAttention::new(channels, groups, device)],
        }
    }

    /// # Shapes
    /// - `x`, output: `[B, C, H, W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = self.resnets[0].forward(x);
        let h = self.attentions[0].forward(h);
        self.resnets[1].forward(h)
    }
}
