//! Augmentation at batch time: a crop of the stored image (centre or random) and an optional
//! horizontal flip, each drawn from a seed that is a pure function of (run seed, step, position
//! in the batch) — so a resumed run draws exactly the crops an uninterrupted one would.
//!
//! Images are stored at `data.resize` (the shorter side, then centre-cropped square; the model's
//! size by default) and cropped to the model's size here.

use serde::{Deserialize, Serialize};

use crate::seeds::SplitMix64;

/// Which part of the stored image a training batch sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CropMode {
    /// Always the centre (also what validation and previews use).
    #[default]
    Center,
    /// A uniformly random position, fresh for every image of every batch.
    Random,
}

/// The batch-time transforms of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Augment {
    pub crop: CropMode,
    /// Mirror left–right with probability ½.
    pub flip: bool,
}

/// Appends to `dst` the `[channels, size, size]` view of one stored `[channels, stored, stored]`
/// image: cropped per `augment` (centre when `seed` is `None`) and maybe flipped.
///
/// # Panics
/// If `size > stored` or `src` is not `channels·stored²` long (both fixed when the dataset is
/// loaded, never user input at this point).
pub fn crop_into(
    src: &[f32],
    channels: usize,
    stored: usize,
    size: usize,
    augment: Augment,
    seed: Option<u64>,
    dst: &mut Vec<f32>,
) {
    assert!(size <= stored && src.len() == channels * stored * stored);
    let slack = stored - size;
    let (top, left, flip) = match seed {
        None => (slack / 2, slack / 2, false),
        Some(seed) => {
            // One SplitMix64 draw: independent-looking bits from consecutive seeds.
            let r = SplitMix64::new(seed).next_u64();
            let (top, left) = match augment.crop {
                CropMode::Center => (slack / 2, slack / 2),
                CropMode::Random => (
                    (r % (slack as u64 + 1)) as usize,
                    ((r >> 20) % (slack as u64 + 1)) as usize,
                ),
            };
            (top, left, augment.flip && (r >> 63) == 1)
        }
    };
    for c in 0..channels {
        let plane = &src[c * stored * stored..][..stored * stored];
        for y in 0..size {
            let row = &plane[(top + y) * stored + left..][..size];
            if flip {
                dst.extend(row.iter().rev());
            } else {
                dst.extend_from_slice(row);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_keep_shape_and_values_and_flips_mirror() {
        let (channels, stored, size) = (2, 6, 4);
        let src: Vec<f32> = (0..channels * stored * stored)
            .map(|v| v as f32 / 100.0 - 0.5)
            .collect();
        let random = Augment {
            crop: CropMode::Random,
            flip: true,
        };
        let mut seen_offsets = std::collections::HashSet::new();
        let mut flipped = 0;
        for seed in 0..200 {
            let mut out = Vec::new();
            crop_into(&src, channels, stored, size, random, Some(seed), &mut out);
            assert_eq!(out.len(), channels * size * size);
            assert!(
                out.iter().all(|v| src.contains(v)),
                "values come from the source"
            );
            // Rows stay contiguous runs of the source, in one direction or the other.
            let step = out[1] - out[0];
            assert!((step.abs() - 0.01).abs() < 1e-6);
            if step < 0.0 {
                flipped += 1;
            }
            seen_offsets.insert(((out[0] + 0.5) * 100.0).round() as i64);
        }
        assert!(
            seen_offsets.len() > 6,
            "random crops move: {seen_offsets:?}"
        );
        assert!(
            (60..140).contains(&flipped),
            "about half flipped: {flipped}"
        );
        let mut centre = Vec::new();
        crop_into(&src, channels, stored, size, random, None, &mut centre);
        assert_eq!(centre[0], src[stored + 1]);
    }
}
