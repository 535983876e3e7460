use burn::module::Module;

use crate::cpu::{attention_tokens, group_norm, linear};
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
        // [B, C, H, W] → [B·HW, C]: one row per token, so each projection below is a single
        // GEMM on a contiguous matrix (on a strided [B, HW, C] view the GEMM packs element by
        // element).
        let h = group_norm(&self.norm, x.clone())
            .reshape([batch, channels, tokens])
            .swap_dims(1, 2)
            .reshape([batch * tokens, channels]);
        let tokens_of = |t: Tensor<2>| t.reshape([batch, tokens, channels]);
        let q = tokens_of(linear(&self.query, h.clone()));
        let k = tokens_of(linear(&self.key, h.clone()));
        let v = tokens_of(linear(&self.value, h));
        // Scaled dot-product attention (Vaswani et al. 2017, eq. 1): softmax(QKᵀ/√d)V, the
        // heads side by side in each token's channels.
        let attended = attention_tokens(q, k, v, heads, None).reshape([batch * tokens, channels]);
        let out = linear(&self.proj_out, attended)
            .reshape([batch, tokens, channels])
            .swap_dims(1, 2)
            .reshape([batch, channels, height, width]);
        x + out
    }
}
