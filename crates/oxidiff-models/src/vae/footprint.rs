//! What an autoencoder config will occupy, from the config alone (see [`crate::Footprint`]).

use super::AutoencoderKLConfig;
use crate::Footprint;

fn conv(k: f64, i: f64, o: f64) -> f64 {
    k * k * i * o + o
}

impl AutoencoderKLConfig {
    /// Parameters (exact: a test pins them against the built network) and an estimate of the
    /// activations a training step keeps per image (encoder and decoder, about ten values per
    /// resnet output element and two attention matrices) and of a forward pass's peak.
    pub fn footprint(&self) -> Footprint {
        let channels: Vec<f64> = self.block_out_channels.iter().map(|&c| c as f64).collect();
        let (lpb, latent) = (self.layers_per_block, self.latent_channels as f64);
        let resnet = |i: f64, o: f64| {
            let shortcut = if i != o { i * o + o } else { 0.0 };
            2.0 * i + conv(3.0, i, o) + 2.0 * o + conv(3.0, o, o) + shortcut
        };
        let attention = |c: f64| 2.0 * c + 4.0 * (c * c + c);
        let top = *channels.last().unwrap_or(&0.0);
        let mid = 2.0 * resnet(top, top) + attention(top);
        let levels = channels.len();
        let side = self.sample_size as f64;
        let (mut parameters, mut train, mut widest) = (0.0, 0.0, 0.0_f64);
        // Encoder.
        parameters += conv(3.0, self.in_channels as f64, channels[0]);
        let mut input = channels[0];
        let mut pixels = side * side;
        for (level, &out) in channels.iter().enumerate() {
            for j in 0..lpb {
                parameters += resnet(if j == 0 { input } else { out }, out);
                train += 10.0 * out * pixels;
                widest = widest.max(4.0 * out * pixels);
            }
            input = out;
            if level + 1 < levels {
                parameters += conv(3.0, out, out);
                pixels /= 4.0;
            }
        }
        parameters += mid + 2.0 * top + conv(3.0, top, 2.0 * latent);
        train += 30.0 * top * pixels + 2.0 * pixels * pixels;
        // quant_conv, post_quant_conv.
        parameters += conv(1.0, 2.0 * latent, 2.0 * latent) + conv(1.0, latent, latent);
        // Decoder.
        parameters += conv(3.0, latent, top) + mid;
        train += 30.0 * top * pixels + 2.0 * pixels * pixels;
        let mut input = top;
        for (level, &out) in channels.iter().rev().enumerate() {
            for j in 0..=lpb {
                parameters += resnet(if j == 0 { input } else { out }, out);
                train += 10.0 * out * pixels;
                widest = widest.max(4.0 * out * pixels);
            }
            input = out;
            if level + 1 < levels {
                parameters += conv(3.0, out, out);
                pixels *= 4.0;
                train += 2.0 * out * pixels;
            }
        }
        parameters += 2.0 * channels[0] + conv(3.0, channels[0], self.out_channels as f64);
        Footprint {
            parameters,
            train_activations_per_image: train,
            inference_activations_per_image: 2.0 * widest,
        }
    }
}
