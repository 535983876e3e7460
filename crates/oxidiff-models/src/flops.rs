//! Analytic floating-point operation count of a UNet forward pass.
//!
//! One multiply-add counts as 2 FLOPs. Only the dense work is counted — convolutions, linear
//! layers and the two attention matmuls — because it is what a GFLOP/s figure is measured
//! against; GroupNorm, SiLU, softmax and the residual additions are a few FLOPs per element and
//! are left out (under 1% of the total for the presets). The walk mirrors [`UNet::forward`];
//! a spatial transformer's cross-attention is counted over
//! [`crate::footprint::CONTEXT_TOKENS`] text tokens.

use burn::nn::Linear;
use burn::nn::conv::Conv2d;

use crate::footprint::CONTEXT_TOKENS;
use crate::unet::{
    AttentionBlock, CrossAttention, Projection, ResAttn, ResBlock, SpatialTransformer, UNet,
};

/// FLOPs of one image through the network, split by kind of layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlopCount {
    pub convolution: u64,
    pub linear: u64,
    /// QKᵀ and softmax(·)V.
    pub attention: u64,
}

impl FlopCount {
    pub fn total(&self) -> u64 {
        self.convolution + self.linear + self.attention
    }
}

/// 2·C_in·k_h·k_w FLOPs per output element (plus nothing for the bias: it is one add).
fn conv(c: &Conv2d, resolution: usize) -> (u64, usize) {
    let [c_out, c_in, k_h, k_w] = c.weight.dims();
    let out_res = resolution / c.stride[0];
    let flops = 2 * (c_out * c_in * k_h * k_w * out_res * out_res) as u64;
    (flops, out_res)
}

fn linear(l: &Linear, rows: usize) -> u64 {
    let [d_in, d_out] = l.weight.dims();
    2 * (rows * d_in * d_out) as u64
}

fn resblock(b: &ResBlock, resolution: usize, count: &mut FlopCount) {
    count.convolution += conv(&b.conv_1, resolution).0 + conv(&b.conv_2, resolution).0;
    if let Some(skip) = &b.skip {
        count.convolution += conv(skip, resolution).0;
    }
    count.linear += linear(&b.emb_proj, 1);
}

fn attention(a: &AttentionBlock, resolution: usize, count: &mut FlopCount) {
    let tokens = resolution * resolution;
    let [channels, _] = a.query.weight.dims();
    for l in [&a.query, &a.key, &a.value, &a.proj_out] {
        count.linear += linear(l, tokens);
    }
    // QKᵀ: tokens² dot products of length head_dim per head; softmax·V the same shape again.
    count.attention += 2 * 2 * (tokens * tokens * channels) as u64;
}

/// Attention of `tokens` queries over `keys` keys: the four projections and both matmuls.
fn cross_attention(a: &CrossAttention, tokens: usize, keys: usize, count: &mut FlopCount) {
    let [_, channels] = a.to_q.weight.dims();
    count.linear += linear(&a.to_q, tokens) + linear(&a.to_out, tokens);
    count.linear += linear(&a.to_k, keys) + linear(&a.to_v, keys);
    count.attention += 2 * 2 * (tokens * keys * channels) as u64;
}

fn transformer(t: &SpatialTransformer, resolution: usize, count: &mut FlopCount) {
    let tokens = resolution * resolution;
    for projection in [&t.proj_in, &t.proj_out] {
        match projection {
            Projection::Conv(c) => count.convolution += conv(c, resolution).0,
            Projection::Linear(l) => count.linear += linear(l, tokens),
        }
    }
    let context = CONTEXT_TOKENS;
    for block in &t.transformer_blocks {
        cross_attention(&block.attn1, tokens, tokens, count);
        cross_attention(&block.attn2, tokens, context, count);
        count.linear += linear(&block.ff.proj, tokens) + linear(&block.ff.out, tokens);
    }
}

fn res_attn(block: &ResAttn, resolution: usize, count: &mut FlopCount) {
    resblock(&block.res, resolution, count);
    if let Some(a) = &block.attn {
        attention(a, resolution, count);
    }
    if let Some(t) = &block.transformer {
        transformer(t, resolution, count);
    }
}

impl UNet {
    /// FLOPs of one forward pass of one `image_size × image_size` image.
    ///
    /// A training step costs about three times this per image: the backward pass computes two
    /// products (input gradient and weight gradient) for every one of the forward pass.
    pub fn forward_flops(&self, image_size: usize) -> FlopCount {
        let mut count = FlopCount::default();
        count.linear += linear(&self.time_embed.linear_1, 1) + linear(&self.time_embed.linear_2, 1);
        let mut resolution = image_size;
        count.convolution += conv(&self.conv_in, resolution).0;
        for level in &self.down {
            for block in &level.blocks {
                res_attn(block, resolution, &mut count);
            }
            if let Some(down) = &level.downsample {
                let (flops, out) = conv(&down.conv, resolution);
                count.convolution += flops;
                resolution = out;
            }
        }
        resblock(&self.mid_res_1, resolution, &mut count);
        if let Some(a) = &self.mid_attn {
            attention(a, resolution, &mut count);
        }
        if let Some(t) = &self.mid_transformer {
            transformer(t, resolution, &mut count);
        }
        resblock(&self.mid_res_2, resolution, &mut count);
        for level in &self.up {
            for block in &level.blocks {
                res_attn(block, resolution, &mut count);
            }
            if let Some(up) = &level.upsample {
                resolution *= 2;
                count.convolution += conv(&up.conv, resolution).0;
            }
        }
        count.convolution += conv(&self.out_conv, resolution).0;
        count
    }
}
