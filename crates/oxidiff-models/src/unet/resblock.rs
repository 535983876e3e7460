use burn::module::Module;

use crate::cpu::{conv2d, group_norm, group_norm_silu};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    Dropout, DropoutConfig, GroupNorm, GroupNormConfig, Initializer, Linear, LinearConfig,
    PaddingConfig2d,
};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor};

use crate::config::TimeInjection;

/// Residual block with timestep conditioning (DDPM / ADM).
#[derive(Module, Debug)]
pub struct ResBlock {
    pub norm_1: GroupNorm,
    pub conv_1: Conv2d,
    /// Projects SiLU(emb) to `out` channels (Add) or `2·out` (scale and shift).
    pub emb_proj: Linear,
    pub norm_2: GroupNorm,
    pub dropout: Dropout,
    pub conv_2: Conv2d,
    /// 1×1 convolution on the skip path when the channel count changes.
    pub skip: Option<Conv2d>,
    pub scale_shift: bool,
    pub out_channels: usize,
}

/// What a [`ResBlock`] is built from.
pub struct ResBlockSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    pub embed_dim: usize,
    pub norm_groups: usize,
    pub dropout: f64,
    pub time_injection: TimeInjection,
}

pub(crate) fn conv3x3(in_channels: usize, out_channels: usize) -> Conv2dConfig {
    Conv2dConfig::new([in_channels, out_channels], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
}

impl ResBlock {
    pub fn new(spec: &ResBlockSpec, device: &Device) -> Self {
        let ResBlockSpec {
            in_channels: i,
            out_channels: o,
            ..
        } = *spec;
        let scale_shift = spec.time_injection == TimeInjection::ScaleShift;
        let emb_out = if scale_shift { 2 * o } else { o };
        Self {
            norm_1: GroupNormConfig::new(spec.norm_groups, i).init(device),
            conv_1: conv3x3(i, o).init(device),
            emb_proj: LinearConfig::new(spec.embed_dim, emb_out).init(device),
            norm_2: GroupNormConfig::new(spec.norm_groups, o).init(device),
            dropout: DropoutConfig::new(spec.dropout).init(),
            // Zero-initialised so every block starts as the identity (ADM's zero_module), which
            // keeps the early training signal of a deep UNet stable.
            conv_2: conv3x3(o, o)
                .with_initializer(Initializer::Zeros)
                .init(device),
            skip: (i != o).then(|| Conv2dConfig::new([i, o], [1, 1]).init(device)),
            scale_shift,
            out_channels: o,
        }
    }

    /// # Shapes
    /// - `x`: `[B, in, H, W]`
    /// - `emb`: `[B, embed_dim]`
    /// - output: `[B, out, H, W]`
    pub fn forward(&self, x: Tensor<4>, emb: Tensor<2>) -> Tensor<4> {
        let [batch, _, _, _] = x.dims();
        let h = conv2d(&self.conv_1, group_norm_silu(&self.norm_1, x.clone()));
        let emb = self.emb_proj.forward(silu(emb));
        let h = if self.scale_shift {
            let o = self.out_channels;
            let scale = emb.clone().narrow(1, 0, o).reshape([batch, o, 1, 1]);
            let shift = emb.narrow(1, o, o).reshape([batch, o, 1, 1]);
            // ADM eq. (use_scale_shift_norm): GN(h)·(1 + scale) + shift.
            let h = group_norm(&self.norm_2, h) * (scale + 1.0) + shift;
            silu(h)
        } else {
            let h = h + emb.reshape([batch, self.out_channels, 1, 1]);
            group_norm_silu(&self.norm_2, h)
        };
        let h = conv2d(&self.conv_2, self.dropout.forward(h));
        let skip = match &self.skip {
            Some(conv) => conv2d(conv, x),
            None => x,
        };
        skip + h
    }
}
