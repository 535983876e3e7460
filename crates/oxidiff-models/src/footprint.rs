//! What a UNet config will occupy, computed from the config alone (nothing is allocated), so a
//! size that cannot fit is refused before a run starts instead of aborting the process.
//!
//! The walk mirrors [`UNetConfig::init`] and [`crate::UNet::forward`]. Parameters are exact (a
//! test pins them against the built network); activations are an estimate of the tensors a
//! training step keeps for its backward pass (about 3 per input and 7 per output element of a
//! residual block, 7 per element and 2 attention matrices of an attention block) and of the
//! peak a forward pass without autodiff holds (the skip connections plus the largest layer).
//! A spatial transformer (with `cross_attention_dim`) counts as about 20 values per element
//! and, per block, its two attention matrices, the cross-attention's over
//! [`CONTEXT_TOKENS`] text tokens.
//! Counts are `f64` so that absurd configs (10⁵ channels, 10⁹ timesteps) give huge numbers, not
//! an overflow.

use crate::config::{TimeInjection, UNetConfig};

/// Sizes in numbers of `f32` values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Footprint {
    /// Trainable parameters.
    pub parameters: f64,
    /// Values a training step keeps per image for its backward pass.
    pub train_activations_per_image: f64,
    /// Peak values live per image during a forward pass without autodiff (sampling).
    pub inference_activations_per_image: f64,
}

fn conv3x3(i: f64, o: f64) -> f64 {
    9.0 * i * o + o
}

fn linear(i: f64, o: f64) -> f64 {
    i * o + o
}

fn group_norm(c: f64) -> f64 {
    2.0 * c
}

/// Text tokens a cross-attention is assumed to attend to (CLIP's context length, which Stable
/// Diffusion pads every prompt to) where the config does not know the text encoder: its
/// footprint, FLOP count and benchmark.
pub const CONTEXT_TOKENS: usize = 77;

/// Adds up the walk.
#[derive(Default)]
struct Walk {
    parameters: f64,
    train: f64,
    /// The largest single layer's working set (inference).
    widest: f64,
    /// Values of the skip connections (inference: all alive at the middle block).
    skips: f64,
}

impl Walk {
    fn res_block(&mut self, config: &UNetConfig, i: f64, o: f64, pixels: f64) {
        let emb = config.time_embed_dim as f64;
        let emb_out = match config.time_injection {
            TimeInjection::ScaleShift => 2.0 * o,
            TimeInjection::Add => o,
        };
        let skip = if i != o { i * o + o } else { 0.0 };
        self.parameters += group_norm(i)
            + conv3x3(i, o)
            + linear(emb, emb_out)
            + group_norm(o)
            + conv3x3(o, o)
            + skip;
        self.train += (3.0 * i + 7.0 * o) * pixels;
        self.widest = self.widest.max((i + 3.0 * o) * pixels);
    }

    /// The attention of a block at `level`: self-attention, or a spatial transformer.
    fn attention(&mut self, config: &UNetConfig, level: usize, c: f64, pixels: f64) {
        let heads = config.heads_at(level) as f64;
        let Some(context_dim) = config.cross_attention_dim else {
            self.parameters += group_norm(c) + 4.0 * linear(c, c);
            let scores = heads * pixels * pixels;
            self.train += 7.0 * c * pixels + 2.0 * scores;
            self.widest = self.widest.max(5.0 * c * pixels + 2.0 * scores);
            return;
        };
        let d = context_dim as f64;
        // proj_in and proj_out (a 1×1 convolution or a linear layer: the same count).
        self.parameters += group_norm(c) + 2.0 * linear(c, c);
        let block = 3.0 * group_norm(c)
            // attn1: q, k, v without bias, the output projection with one.
            + 3.0 * c * c + linear(c, c)
            // attn2: q from the image tokens, k and v from the text states.
            + c * c + 2.0 * d * c + linear(c, c)
            // GEGLU: C → 2·4C, then 4C → C.
            + linear(c, 8.0 * c) + linear(4.0 * c, c);
        let layers = config.transformer_layers_per_block as f64;
        self.parameters += layers * block;
        let scores = heads * pixels * (pixels + CONTEXT_TOKENS as f64);
        self.train += layers * (20.0 * c * pixels + 2.0 * scores) + 4.0 * c * pixels;
        self.widest = self.widest.max(12.0 * c * pixels + 2.0 * scores);
    }
}

impl UNetConfig {
    /// Parameters and activation sizes of this network (see the module notes).
    pub fn footprint(&self) -> Footprint {
        let mc = self.model_channels as f64;
        let emb = self.time_embed_dim as f64;
        let mut walk = Walk {
            parameters: linear(mc, emb) + linear(emb, emb) + conv3x3(self.in_channels as f64, mc),
            ..Walk::default()
        };
        if let Some(n) = self.num_classes {
            walk.parameters += (n as f64 + 1.0) * emb;
        }
        let side = self.image_size as f64;
        let mut pixels = side * side;
        walk.train += (self.in_channels as f64 + mc) * pixels;
        let mut skip_channels = vec![mc];
        walk.skips += mc * pixels;
        let mut channels = mc;
        let mut resolution = self.image_size;
        for (level, &mult) in self.channel_mult.iter().enumerate() {
            let out = mc * mult as f64;
            for _ in 0..self.num_res_blocks {
                walk.res_block(self, channels, out, pixels);
                if self.attends_at(resolution) {
                    walk.attention(self, level, out, pixels);
                }
                channels = out;
                skip_channels.push(channels);
                walk.skips += channels * pixels;
            }
            if level + 1 < self.num_levels() {
                walk.parameters += conv3x3(channels, channels);
                resolution /= 2;
                pixels /= 4.0;
                walk.train += channels * pixels;
                skip_channels.push(channels);
                walk.skips += channels * pixels;
            }
        }
        walk.res_block(self, channels, channels, pixels);
        walk.attention(self, self.num_levels() - 1, channels, pixels);
        walk.res_block(self, channels, channels, pixels);
        for (level, &mult) in self.channel_mult.iter().enumerate().rev() {
            let out = mc * mult as f64;
            for _ in 0..=self.num_res_blocks {
                let skip = skip_channels.pop().unwrap_or(0.0);
                // The concatenation of the skip is a tensor of its own.
                walk.train += (channels + skip) * pixels;
                walk.res_block(self, channels + skip, out, pixels);
                if self.attends_at(resolution) {
                    walk.attention(self, level, out, pixels);
                }
                channels = out;
            }
            if level > 0 {
                walk.parameters += conv3x3(channels, channels);
                resolution *= 2;
                pixels *= 4.0;
                // Nearest upsampling, then the convolution.
                walk.train += 2.0 * channels * pixels;
            }
        }
        let out = self.out_channels as f64;
        walk.parameters += group_norm(channels) + conv3x3(channels, out);
        walk.train += (3.0 * channels + out) * pixels;
        Footprint {
            parameters: walk.parameters,
            train_activations_per_image: walk.train,
            inference_activations_per_image: walk.skips + walk.widest,
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Module;
    use burn::tensor::Device;

    use crate::{Preset, TimeInjection};

    #[test]
    fn parameters_match_the_built_network() {
        for preset in Preset::ALL {
            let mut configs = vec![preset.config()];
            let mut varied = preset.config();
            varied.time_injection = TimeInjection::ScaleShift;
            varied.num_classes = Some(10);
            varied.out_channels *= 2;
            configs.push(varied);
            for config in configs {
                let built = config.init(&Device::flex()).num_params();
                assert_eq!(config.footprint().parameters, built as f64, "{config:?}");
            }
        }
    }

    #[test]
    fn absurd_sizes_give_huge_numbers_not_overflow() {
        let mut config = Preset::Tiny.config();
        config.model_channels = 100_000;
        config.time_embed_dim = 400_000;
        let footprint = config.footprint();
        assert!(footprint.parameters > 1e11, "{footprint:?}");
        assert!(footprint.train_activations_per_image.is_finite());
    }
}
