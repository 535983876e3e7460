use burn::module::Module;

use crate::cpu::{attention, group_norm};
use burn::nn::{GroupNorm, GroupNormConfig, Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

/// Multi-head self-attention over the spatial positions, with a residual connection.
#[derive(Module, Debug)]
pub struct AttentionBlock {
    pub norm: GroupNorm,
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub proj_out: Linear,
    pub num_heads: usize,
}

impl AttentionBlock {
    pub fn new(channels: usize, num_heads: usize, norm_groups: usize, device: &Device) -> Self {
        let linear = || LinearConfig::new(channels, channels).init(device);
        Self {
            norm: GroupNormConfig::new(norm_groups, channels).init(device),
            query: linear(),
            key: linear(),
            value: linear(),
            // Zero-initialised so the block starts as the identity (ADM's zero_module).
            proj_out: LinearConfig::new(channels, channels)
                .with_initializer(Initializer::Zeros)
                .init(device),
            num_heads,
        }
    }

    /// # Shapes
    /// - `x`: `[B, C, H, W]`
    /// - output: `[B, C, H, W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [batch, channels, height, width] = x.dims();
        let tokens = height * width;
        let heads = self.num_heads;
        let head_dim = channels / heads;
        // [B, C, H, W] → [B·HW, C]: one row per token, so each projection below is a single
        // GEMM on a contiguous matrix (on a strided [B, HW, C] view the GEMM packs element by
        // element).
        let h = group_norm(&self.norm, x.clone())
            .reshape([batch, channels, tokens])
            .swap_dims(1, 2)
            .reshape([batch * tokens, channels]);
        let split = |t: Tensor<2>| t.reshape([batch, tokens, heads, head_dim]).swap_dims(1, 2);
        let q = split(self.query.forward(h.clone()));
        let k = split(self.key.forward(h.clone()));
        let v = split(self.value.forward(h));
        // Scaled dot-product attention (Vaswani et al. 2017, eq. 1): softmax(QKᵀ/√d)V.
        let attended = attention(q, k, v)
            .swap_dims(1, 2)
            .reshape([batch * tokens, channels]);
        let out = self
            .proj_out
            .forward(attended)
            .reshape([batch, tokens, channels])
            .swap_dims(1, 2)
            .reshape([batch, channels, height, width]);
        x + out
    }
}
