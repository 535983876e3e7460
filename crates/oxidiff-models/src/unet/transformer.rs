//! The cross-attention block of latent diffusion (Rombach et al. 2022, sec. 3.3: LDM's
//! `SpatialTransformer`, diffusers' `Transformer2DModel` over continuous inputs): the image's
//! positions become tokens that attend to themselves and to a text encoder's states.
//!
//! Module for module as diffusers 0.42.1 builds it for `UNet2DConditionModel`: GroupNorm
//! (eps 1e-6), `proj_in`, `BasicTransformerBlock`s (LayerNorm → self-attention → LayerNorm →
//! cross-attention → LayerNorm → GEGLU feed-forward, each with a residual), `proj_out`, and the
//! residual with the block's input. Attention projections have no bias, their output
//! projection has one; the feed-forward is 4× wide. Nothing here drops out: diffusers builds
//! these blocks without dropout inside a `UNet2DConditionModel`.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    GroupNorm, GroupNormConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::tensor::{Device, Tensor};

use crate::cpu::{attention_tokens, conv2d, geglu, group_norm, layer_norm, linear_tokens};

/// diffusers' `Transformer2DModel` GroupNorm epsilon.
const NORM_EPS: f64 = 1e-6;
/// diffusers' `BasicTransformerBlock` LayerNorm epsilon (its `norm_eps`).
const LAYER_NORM_EPS: f64 = 1e-5;
/// Width of the feed-forward's hidden layer, in multiples of the channels (diffusers' `mult`).
const FF_MULT: usize = 4;

/// How a [`SpatialTransformer`] maps between channels and token widths.
#[derive(Module, Debug)]
pub enum Projection {
    /// A 1×1 convolution on `[B, C, H, W]` (LDM's, diffusers' default).
    Conv(Conv2d),
    /// A linear layer on the tokens (diffusers' `use_linear_projection`, SD 2.x).
    Linear(Linear),
}

impl Projection {
    /// `zeros`: zero-initialised weights and bias; else burn's default initialisation.
    fn new(channels: usize, linear: bool, zeros: bool, device: &Device) -> Self {
        if linear {
            let config = LinearConfig::new(channels, channels);
            let config = if zeros {
                config.with_initializer(Initializer::Zeros)
            } else {
                config
            };
            Self::Linear(config.init(device))
        } else {
            let config = Conv2dConfig::new([channels, channels], [1, 1]);
            let config = if zeros {
                config.with_initializer(Initializer::Zeros)
            } else {
                config
            };
            Self::Conv(config.init(device))
        }
    }
}

/// `[B, C, H, W]` → `[B, H·W, C]`.
fn to_tokens(x: Tensor<4>) -> Tensor<3> {
    let [batch, channels, height, width] = x.dims();
    x.reshape([batch, channels, height * width]).swap_dims(1, 2)
}

/// `[B, H·W, C]` → `[B, C, H, W]`.
fn from_tokens(x: Tensor<3>, height: usize, width: usize) -> Tensor<4> {
    let [batch, _, channels] = x.dims();
    x.swap_dims(1, 2).reshape([batch, channels, height, width])
}

/// Multi-head attention of image tokens over a sequence (diffusers' `Attention`): itself for
/// self-attention, a text encoder's states for cross-attention.
#[derive(Module, Debug)]
pub struct CrossAttention {
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    pub to_out: Linear,
    pub heads: usize,
}

impl CrossAttention {
    /// Queries of width `channels`, keys and values from states of width `context_dim`.
    pub fn new(channels: usize, context_dim: usize, heads: usize, device: &Device) -> Self {
        let projection = |i: usize| LinearConfig::new(i, channels).with_bias(false).init(device);
        Self {
            to_q: projection(channels),
            to_k: projection(context_dim),
            to_v: projection(context_dim),
            to_out: LinearConfig::new(channels, channels).init(device),
            heads,
        }
    }

    /// softmax(Q Kᵀ/√d) V per head (Vaswani et al. 2017, eq. 1), Q from `x`, K and V from
    /// `context` (from `x` itself when `None`: self-attention).
    ///
    /// # Shapes
    /// - `x`: `[B, N, C]`
    /// - `context`: `[B, L, context_dim]`
    /// - output: `[B, N, C]`
    pub fn forward(&self, x: Tensor<3>, context: Option<&Tensor<3>>) -> Tensor<3> {
        let source = context.cloned().unwrap_or_else(|| x.clone());
        let q = linear_tokens(&self.to_q, x);
        let k = linear_tokens(&self.to_k, source.clone());
        let v = linear_tokens(&self.to_v, source);
        linear_tokens(&self.to_out, attention_tokens(q, k, v, self.heads, None))
    }
}

/// The gated feed-forward (Shazeer 2020, GEGLU): `out(h · gelu(g))` with `[h, g] = proj(x)`
/// (diffusers' `ff.net.0.proj` and `ff.net.2`).
#[derive(Module, Debug)]
pub struct FeedForward {
    pub proj: Linear,
    pub out: Linear,
}

impl FeedForward {
    pub fn new(channels: usize, device: &Device) -> Self {
        let inner = FF_MULT * channels;
        Self {
            proj: LinearConfig::new(channels, 2 * inner).init(device),
            out: LinearConfig::new(inner, channels).init(device),
        }
    }

    /// # Shapes
    /// - `x`: `[B, N, C]`
    /// - output: `[B, N, C]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        // Exact (erf) GELU, as PyTorch's F.gelu.
        linear_tokens(&self.out, geglu(linear_tokens(&self.proj, x)))
    }
}

/// diffusers' `BasicTransformerBlock` (pre-LayerNorm, each sub-layer residual).
#[derive(Module, Debug)]
pub struct BasicTransformerBlock {
    pub norm1: LayerNorm,
    pub attn1: CrossAttention,
    pub norm2: LayerNorm,
    pub attn2: CrossAttention,
    pub norm3: LayerNorm,
    pub ff: FeedForward,
}

impl BasicTransformerBlock {
    pub fn new(channels: usize, context_dim: usize, heads: usize, device: &Device) -> Self {
        let norm = || {
            LayerNormConfig::new(channels)
                .with_epsilon(LAYER_NORM_EPS)
                .init(device)
        };
        Self {
            norm1: norm(),
            attn1: CrossAttention::new(channels, channels, heads, device),
            norm2: norm(),
            attn2: CrossAttention::new(channels, context_dim, heads, device),
            norm3: norm(),
            ff: FeedForward::new(channels, device),
        }
    }

    /// Self-attention, cross-attention to `context`, feed-forward. Without a context the
    /// cross-attention sub-layer is left out (its residual passes the tokens unchanged).
    ///
    /// # Shapes
    /// - `x`: `[B, N, C]`
    /// - `context`: `[B, L, context_dim]`
    /// - output: `[B, N, C]`
    pub fn forward(&self, x: Tensor<3>, context: Option<&Tensor<3>>) -> Tensor<3> {
        let norm = |layer: &LayerNorm, x: Tensor<3>| layer_norm(layer, LAYER_NORM_EPS, x);
        let x = x.clone() + self.attn1.forward(norm(&self.norm1, x), None);
        let x = match context {
            Some(context) => x.clone() + self.attn2.forward(norm(&self.norm2, x), Some(context)),
            None => x,
        };
        x.clone() + self.ff.forward(norm(&self.norm3, x))
    }
}

/// What a [`SpatialTransformer`] is built from.
#[derive(Debug, Clone, Copy)]
pub struct SpatialTransformerSpec {
    pub channels: usize,
    pub heads: usize,
    pub context_dim: usize,
    pub layers: usize,
    pub norm_groups: usize,
    pub linear_projection: bool,
}

/// LDM's spatial transformer (diffusers' `Transformer2DModel`), with a residual connection.
#[derive(Module, Debug)]
pub struct SpatialTransformer {
    pub norm: GroupNorm,
    pub proj_in: Projection,
    pub transformer_blocks: Vec<BasicTransformerBlock>,
    pub proj_out: Projection,
}

impl SpatialTransformer {
    pub fn new(spec: &SpatialTransformerSpec, device: &Device) -> Self {
        let c = spec.channels;
        Self {
            norm: GroupNormConfig::new(spec.norm_groups, c)
                .with_epsilon(NORM_EPS)
                .init(device),
            proj_in: Projection::new(c, spec.linear_projection, false, device),
            transformer_blocks: (0..spec.layers)
                .map(|_| BasicTransformerBlock::new(c, spec.context_dim, spec.heads, device))
                .collect(),
            // Zero-initialised so the block starts as the identity (LDM's zero_module).
            proj_out: Projection::new(c, spec.linear_projection, true, device),
        }
    }

    /// Attention heads of every block.
    pub fn heads(&self) -> usize {
        self.transformer_blocks.first().map_or(1, |b| b.attn1.heads)
    }

    /// # Shapes
    /// - `x`: `[B, C, H, W]`
    /// - `context`: `[B, L, context_dim]`; `None` leaves cross-attention out
    /// - output: `[B, C, H, W]`
    pub fn forward(&self, x: Tensor<4>, context: Option<&Tensor<3>>) -> Tensor<4> {
        let [_, _, height, width] = x.dims();
        let h = group_norm(&self.norm, x.clone());
        let mut tokens = match &self.proj_in {
            Projection::Conv(conv) => to_tokens(conv2d(conv, h)),
            Projection::Linear(linear) => linear_tokens(linear, to_tokens(h)),
        };
        for block in &self.transformer_blocks {
            tokens = block.forward(tokens, context);
        }
        let out = match &self.proj_out {
            Projection::Conv(conv) => conv2d(conv, from_tokens(tokens, height, width)),
            Projection::Linear(linear) => from_tokens(linear_tokens(linear, tokens), height, width),
        };
        x + out
    }
}
