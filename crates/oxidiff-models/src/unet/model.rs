use burn::module::Module;

use crate::cpu::{conv2d, group_norm_silu};
use burn::nn::conv::Conv2d;
use burn::nn::{Embedding, EmbeddingConfig, GroupNorm, GroupNormConfig, Initializer};
use burn::tensor::{Device, Int, Tensor};

use super::attention::AttentionBlock;
use super::embeddings::TimeEmbedding;
use super::resample::{Downsample, Upsample};
use super::resblock::{ResBlock, ResBlockSpec, conv3x3};
use crate::config::UNetConfig;

/// A residual block, optionally followed by self-attention.
#[derive(Module, Debug)]
pub struct ResAttn {
    pub res: ResBlock,
    pub attn: Option<AttentionBlock>,
}

impl ResAttn {
    /// # Shapes
    /// - `x`: `[B, in, H, W]`, `emb`: `[B, E]`
    /// - output: `[B, out, H, W]`
    pub fn forward(&self, x: Tensor<4>, emb: Tensor<2>) -> Tensor<4> {
        let h = self.res.forward(x, emb);
        match &self.attn {
            Some(attn) => attn.forward(h),
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
/// downsample, and popped in reverse by the up blocks (DDPM's layout).
#[derive(Module, Debug)]
pub struct UNet {
    pub time_embed: TimeEmbedding,
    pub class_embed: Option<Embedding>,
    pub conv_in: Conv2d,
    pub down: Vec<DownLevel>,
    pub mid_res_1: ResBlock,
    pub mid_attn: AttentionBlock,
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
        let attn_at = |resolution: usize, channels: usize| {
            self.attention_resolutions
                .contains(&resolution)
                .then(|| AttentionBlock::new(channels, self.num_heads, self.norm_groups, device))
        };

        let mut skip_channels = vec![mc];
        let mut channels = mc;
        let mut resolution = self.image_size;
        let mut down = Vec::new();
        for (level, &mult) in self.channel_mult.iter().enumerate() {
            let out = mc * mult;
            let mut blocks = Vec::new();
            for _ in 0..self.num_res_blocks {
                blocks.push(ResAttn {
                    res: ResBlock::new(&spec(channels, out), device),
                    attn: attn_at(resolution, out),
                });
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
        let mid_attn = AttentionBlock::new(channels, self.num_heads, self.norm_groups, device);
        let mid_res_2 = ResBlock::new(&spec(channels, channels), device);

        let mut up = Vec::new();
        for (level, &mult) in self.channel_mult.iter().enumerate().rev() {
            let out = mc * mult;
            let mut blocks = Vec::new();
            for _ in 0..=self.num_res_blocks {
                let skip = skip_channels.pop().expect("one skip per up block");
                blocks.push(ResAttn {
                    res: ResBlock::new(&spec(channels + skip, out), device),
                    attn: attn_at(resolution, out),
                });
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
                h = block.forward(h, emb.clone());
                skips.push(h.clone());
            }
            if let Some(down) = &level.downsample {
                h = down.forward(h);
                skips.push(h.clone());
            }
        }

        h = self.mid_res_1.forward(h, emb.clone());
        h = self.mid_attn.forward(h);
        h = self.mid_res_2.forward(h, emb.clone());

        for level in &self.up {
            for block in &level.blocks {
                let skip = skips.pop().expect("one skip per up block");
                h = block.forward(Tensor::cat(vec![h, skip], 1), emb.clone());
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

/// The unconditional answer: a class-conditional model is given its "no class" label.
impl oxidiff_diffusion::Denoiser for UNet {
    fn denoise(&self, x_t: Tensor<4>, t: Tensor<1>) -> Tensor<4> {
        let labels = self.null_label().map(|null| {
            let batch = x_t.dims()[0];
            Tensor::<1, Int>::from_data(
                burn::tensor::TensorData::new(vec![null as i64; batch], [batch]),
                &x_t.device(),
            )
        });
        self.forward(x_t, t, labels)
    }
}
