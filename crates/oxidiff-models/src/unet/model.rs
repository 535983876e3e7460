use burn::module::Module;

use crate::cpu::{conv2d, group_norm_silu};
use burn::nn::conv::Conv2d;
use burn::nn::{Embedding, EmbeddingConfig, GroupNorm, GroupNormConfig, Initializer};
use burn::tensor::{Device, Int, Tensor};

use super::attention::AttentionBlock;
use super::embeddings::TimeEmbedding;
use super::resample::{Downsample, Upsample};
use super::resblock::{ResBlock, ResBlockSpec, conv3x3};
use super::transformer::{SpatialTransformer, SpatialTransformerSpec};
use crate::config::UNetConfig;

/// A residual block, optionally followed by self-attention (`attn`, the ADM UNet's) or by a
/// spatial transformer with cross-attention (`transformer`, a UNet with
/// `cross_attention_dim`); never both.
#[derive(Module, Debug)]
pub struct ResAttn {
    pub res: ResBlock,
    pub attn: Option<AttentionBlock>,
    pub transformer: Option<SpatialTransformer>,
}

impl ResAttn {
    /// # Shapes
    /// - `x`: `[B, in, H, W]`, `emb`: `[B, E]`
    /// - output: `[B, out, H, W]`
    pub fn forward(&self, x: Tensor<4>, emb: Tensor<2>) -> Tensor<4> {
        self.forward_with_context(x, emb, None)
    }

    /// [`Self::forward`] with the states a transformer's cross-attention attends to.
    ///
    /// # Shapes
    /// - `x`: `[B, in, H, W]`, `emb`: `[B, E]`, `context`: `[B, L, cross_attention_dim]`
    /// - output: `[B, out, H, W]`
    pub fn forward_with_context(
        &self,
        x: Tensor<4>,
        emb: Tensor<2>,
        context: Option<&Tensor<3>>,
    ) -> Tensor<4> {
        let h = self.res.forward(x, emb);
        let h = match &self.attn {
            Some(attn) => attn.forward(h),
            None => h,
        };
        match &self.transformer {
            Some(transformer) => transformer.forward(h, context),
            None => h,
        }
    }
}

/// One resolution level on the way down: blocks, then a downsample (all but the last level).
#[derive(Module, Debug)]
pub struct DownLevel {
    pub blocks: Vec<ResAttn>,
    pub downsample: Option<Downsample>,
}

/// One resolution level on the way up: blocks that each take one skip, then an upsample (all
/// but the highest-resolution level).
#[derive(Module, Debug)]
pub struct UpLevel {
    pub blocks: Vec<ResAttn>,
    pub upsample: Option<Upsample>,
}

/// ADM-style UNet: skips are pushed after `conv_in`, after every down block and after every
/// downsample, and popped in reverse by the up blocks (DDPM's layout). With
/// `cross_attention_dim` its attention blocks are spatial transformers that attend to a text
/// encoder's states too (latent diffusion's UNet, diffusers' `UNet2DConditionModel`).
#[derive(Module, Debug)]
pub struct UNet {
    pub time_embed: TimeEmbedding,
    pub class_embed: Option<Embedding>,
    pub conv_in: Conv2d,
    pub down: Vec<DownLevel>,
    pub mid_res_1: ResBlock,
    /// The middle self-attention (without cross-attention).
    pub mid_attn: Option<AttentionBlock>,
    /// The middle spatial transformer (with cross-attention).
    pub mid_transformer: Option<SpatialTransformer>,
    pub mid_res_2: ResBlock,
    pub up: Vec<UpLevel>,
    pub out_norm: GroupNorm,
    pub out_conv: Conv2d,
}

impl UNetConfig {
    /// Builds the network with freshly initialised weights on `device`.
    ///
    /// The configuration must have passed [`UNetConfig::validate`].
    pub fn init(&self, device: &Device) -> UNet {
        let mc = self.model_channels;
        let spec = |i: usize, o: usize| ResBlockSpec {
            in_channels: i,
            out_channels: o,
            embed_dim: self.time_embed_dim,
            norm_groups: self.norm_groups,
            dropout: self.dropout,
            time_injection: self.time_injection,
        };
        // The attention of a block at `level` (`None` where it has none): self-attention, or
        // a spatial transformer with cross-attention.
        let attention = |level: usize,
                         channels: usize|
         -> (Option<AttentionBlock>, Option<SpatialTransformer>) {
            let heads = self.heads_at(level);
            match self.cross_attention_dim {
                None => (
                    Some(AttentionBlock::new(
                        channels,
                        heads,
                        self.norm_groups,
                        device,
                    )),
                    None,
                ),
                Some(context_dim) => {
                    let spec = SpatialTransformerSpec {
                        channels,
                        heads,
                        context_dim,
                        layers: self.transformer_layers_per_block,
                        norm_groups: self.norm_groups,
                        linear_projection: self.use_linear_projection,
                    };
                    (None, Some(SpatialTransformer::new(&spec, device)))
                }
            }
        };
        let block = |level: usize, resolution: usize, i: usize, o: usize| {
            // The residual block first: a seeded device draws the weights in the same order.
            let res = ResBlock::new(&spec(i, o), device);
            let (attn, transformer) = if self.attends_at(resolution) {
                attention(level, o)
            } else {
                (None, None)
            };
            ResAttn {
                res,
                attn,
                transformer,
            }
        };

        let mut skip_channels = vec![mc];
        let mut channels = mc;
        let mut resolution = self.image_size;
        let mut down = Vec::new();
        for (level, &mult) in self.channel_mult.iter().enumerate() {
            let out = mc * mult;
            let mut blocks = Vec::new();
            for _ in 0..self.num_res_blocks {
                blocks.push(block(level, resolution, channels, out));
                channels = out;
                skip_channels.push(channels);
            }
            let downsample = (level + 1 < self.num_levels()).then(|| {
                skip_channels.push(channels);
                resolution /= 2;
                Downsample::new(channels, device)
            });
            down.push(DownLevel { blocks, downsample });
        }

        let mid_res_1 = ResBlock::new(&spec(channels, channels), device);
        let (mid_attn, mid_transformer) = attention(self.num_levels() - 1, channels);
        let mid_res_2 = ResBlock::new(&spec(channels, channels), device);

        let mut up = Vec::new();
        for (level, &mult) in self.channel_mult.iter().enumerate().rev() {
            let out = mc * mult;
            let mut blocks = Vec::new();
            for _ in 0..=self.num_res_blocks {
                let skip = skip_channels.pop().expect("one skip per up block");
                blocks.push(block(level, resolution, channels + skip, out));
                channels = out;
            }
            let upsample = (level > 0).then(|| {
                resolution *= 2;
                Upsample::new(channels, device)
            });
            up.push(UpLevel { blocks, upsample });
        }

        UNet {
            time_embed: TimeEmbedding::new(mc, self.time_embed_dim, device),
            // One row per class and one more, the "no class" label that training drops labels
            // to (classifier-free guidance's unconditional model).
            class_embed: self
                .num_classes
                .map(|n| EmbeddingConfig::new(n + 1, self.time_embed_dim).init(device)),
            conv_in: conv3x3(self.in_channels, mc).init(device),
            down,
            mid_res_1,
            mid_attn,
            mid_transformer,
            mid_res_2,
            up,
            out_norm: GroupNormConfig::new(self.norm_groups, channels).init(device),
            // Zero-initialised: the untrained network predicts 0, the mean of every target.
            out_conv: conv3x3(channels, self.out_channels)
                .with_initializer(Initializer::Zeros)
                .init(device),
        }
    }
}

impl UNet {
    /// Predicts the diffusion target for noisy images at the given timesteps.
    ///
    /// # Shapes
    /// - `x`: `[B, in_channels, S, S]`
    /// - `timesteps`: `[B]` (float, may be fractional)
    /// - `class_labels`: `[B]` when the model is class-conditional, each in 0..=num_classes
    ///   (num_classes is the "no class" label); `None` adds no class embedding at all
    /// - output: `[B, out_channels, S, S]`
    pub fn forward(
        &self,
        x: Tensor<4>,
        timesteps: Tensor<1>,
        class_labels: Option<Tensor<1, Int>>,
    ) -> Tensor<4> {
        self.forward_with_context(x, timesteps, class_labels, None)
    }

    /// [`Self::forward`] with the states a text encoder gave for each image's caption, which
    /// the spatial transformers' cross-attention attends to (a UNet with
    /// `cross_attention_dim`; one without ignores them). `None` leaves cross-attention out
    /// altogether (the image-only network); a text model's unconditional answer is rather
    /// the empty caption's states.
    ///
    /// # Shapes
    /// - `x`: `[B, in_channels, S, S]`
    /// - `timesteps`: `[B]` (float, may be fractional)
    /// - `class_labels`: as for [`Self::forward`]
    /// - `context`: `[B, L, cross_attention_dim]`, any length `L`
    /// - output: `[B, out_channels, S, S]`
    ///
    /// # Panics
    /// A context whose width is not the model's `cross_attention_dim`, or whose batch is not
    /// `x`'s.
    pub fn forward_with_context(
        &self,
        x: Tensor<4>,
        timesteps: Tensor<1>,
        class_labels: Option<Tensor<1, Int>>,
        context: Option<Tensor<3>>,
    ) -> Tensor<4> {
        let context = context.as_ref();
        let mut emb = self.time_embed.forward(timesteps);
        if let (Some(embedding), Some(labels)) = (&self.class_embed, class_labels) {
            let [batch] = labels.dims();
            let class_emb = embedding.forward(labels.reshape([batch, 1]));
            let [_, _, width] = class_emb.dims();
            emb = emb + class_emb.reshape([batch, width]);
        }

        let mut h = conv2d(&self.conv_in, x);
        let mut skips = vec![h.clone()];
        for level in &self.down {
            for block in &level.blocks {
                h = block.forward_with_context(h, emb.clone(), context);
                skips.push(h.clone());
            }
            if let Some(down) = &level.downsample {
                h = down.forward(h);
                skips.push(h.clone());
            }
        }

        h = self.mid_res_1.forward(h, emb.clone());
        if let Some(attn) = &self.mid_attn {
            h = attn.forward(h);
        }
        if let Some(transformer) = &self.mid_transformer {
            h = transformer.forward(h, context);
        }
        h = self.mid_res_2.forward(h, emb.clone());

        for level in &self.up {
            for block in &level.blocks {
                let skip = skips.pop().expect("one skip per up block");
                h = block.forward_with_context(Tensor::cat(vec![h, skip], 1), emb.clone(), context);
            }
            if let Some(up) = &level.upsample {
                h = up.forward(h);
            }
        }

        conv2d(&self.out_conv, group_norm_silu(&self.out_norm, h))
    }
}

impl UNet {
    /// The "no class" label of a class-conditional model (`None` when unconditional): the
    /// label training drops labels to and guidance asks for the unconditional answer with.
    pub fn null_label(&self) -> Option<usize> {
        self.class_embed
            .as_ref()
            .map(|e| e.weight.dims()[0].saturating_sub(1))
    }
}

impl oxidiff_diffusion::ConditionalDenoiser for UNet {
    fn denoise_with_labels(
        &self,
        x_t: Tensor<4>,
        t: Tensor<1>,
        labels: Tensor<1, Int>,
    ) -> Tensor<4> {
        self.forward(x_t, t, Some(labels))
    }
}

/// The answer for text states; a class-conditional model is given its "no class" label.
impl oxidiff_diffusion::ContextDenoiser for UNet {
    fn denoise_with_context(&self, x_t: Tensor<4>, t: Tensor<1>, context: Tensor<3>) -> Tensor<4> {
        let labels = self.null_labels(&x_t);
        self.forward_with_context(x_t, t, labels, Some(context))
    }
}

impl UNet {
    /// The "no class" label for every image of `x` (`None` when unconditional).
    fn null_labels(&self, x: &Tensor<4>) -> Option<Tensor<1, Int>> {
        self.null_label().map(|null| {
            let batch = x.dims()[0];
            Tensor::<1, Int>::from_data(
                burn::tensor::TensorData::new(vec![null as i64; batch], [batch]),
                &x.device(),
            )
        })
    }
}

/// The unconditional answer: a class-conditional model is given its "no class" label.
impl oxidiff_diffusion::Denoiser for UNet {
    fn denoise(&self, x_t: Tensor<4>, t: Tensor<1>) -> Tensor<4> {
        let labels = self.null_labels(&x_t);
        self.forward(x_t, t, labels)
    }
}
