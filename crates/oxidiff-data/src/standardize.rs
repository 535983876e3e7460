//! Per-channel standardisation: `(v − mean) / std` with the statistics of the training split.
//!
//! The default maps [0, 1] to [-1, 1] (DDPM's convention) and needs nothing saved. With
//! `data.standardize = "per-channel"` the model sees zero-mean, unit-variance channels instead;
//! the statistics come from the training images only (so the held-out ones stay unseen), are
//! saved with the run as `standardization.json`, and every image written out is mapped back.

use serde::{Deserialize, Serialize};

use crate::Dataset;
use crate::inspect::channel_stats;

/// Mean and standard deviation of each channel, in [0, 1] pixel units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelStats {
    pub mean: Vec<f64>,
    /// Never zero: a constant channel gets 1, so that it is only shifted.
    pub std: Vec<f64>,
}

impl ChannelStats {
    /// The statistics of the images of `data` at `indices` (the training split).
    pub fn of(data: &Dataset, indices: &[usize]) -> Self {
        let (mean, std) = channel_stats(data, indices);
        let std = std
            .into_iter()
            .map(|s| if s > 1e-8 { s } else { 1.0 })
            .collect();
        Self { mean, std }
    }

    /// Maps stored values in [-1, 1] to standardised ones, in place.
    ///
    /// # Shapes
    /// - `values`: `[N, C, H, W]` flattened, with C = `self.mean.len()` and `plane` = H·W
    pub fn apply(&self, values: &mut [f32], plane: usize) {
        self.map(values, plane, |v, m, s| {
            (((f64::from(v) + 1.0) * 0.5 - m) / s) as f32
        });
    }

    /// Maps standardised values back to [-1, 1] pixel space (not clamped), in place: the
    /// inverse of [`ChannelStats::apply`].
    pub fn invert(&self, values: &mut [f32], plane: usize) {
        self.map(values, plane, |z, m, s| {
            ((f64::from(z) * s + m) * 2.0 - 1.0) as f32
        });
    }

    fn map(&self, values: &mut [f32], plane: usize, f: impl Fn(f32, f64, f64) -> f32) {
        let channels = self.mean.len();
        for image in values.chunks_exact_mut((channels * plane).max(1)) {
            for (c, channel) in image.chunks_exact_mut(plane.max(1)).enumerate() {
                let (m, s) = (self.mean[c], self.std[c]);
                for v in channel {
                    *v = f(*v, m, s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standardisation_round_trips_and_centres_the_training_images() {
        let stats = ChannelStats {
            mean: vec![0.25, 0.7],
            std: vec![0.1, 0.3],
        };
        let original: Vec<f32> = (0..2 * 2 * 9)
            .map(|i| (i as f32 / 36.0) * 2.0 - 1.0)
            .collect();
        let mut values = original.clone();
        stats.apply(&mut values, 9);
        stats.invert(&mut values, 9);
        for (a, b) in values.iter().zip(&original) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
