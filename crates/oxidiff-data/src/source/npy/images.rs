//! A `.npy` array as images: its shape read as `[N, H, W]` or 4-D in a channel layout
//! ([`NpyLayout`]), values scaled to [0, 1], and samples holding NaN/±Inf handled by an explicit
//! policy ([`MissingValues`]).

use std::path::Path;

use super::format::{NpyArray, NpyData, shape_str};
use crate::DataError;

/// How far outside [0, 1] a float may stray (rounding in the producer) before it is refused.
const RANGE_TOLERANCE: f32 = 1e-6;

/// How a 4-D array orders its axes. Both are common: NumPy/TensorFlow pipelines and image
/// libraries produce `[N, H, W, C]`, PyTorch tensors `[N, C, H, W]`, and the file cannot say
/// which one it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NpyLayout {
    /// `[N, H, W, C]`: channels last, as `np.stack` of PIL/imageio images gives.
    #[default]
    Nhwc,
    /// `[N, C, H, W]`: channels first, as saved from PyTorch tensors.
    Nchw,
}

impl NpyLayout {
    /// The name used in config files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Nhwc => "nhwc",
            Self::Nchw => "nchw",
        }
    }
}

/// What to do with samples holding NaN or ±Inf. A single non-finite pixel turns every loss it
/// touches into NaN and ruins a run silently, so such samples are never passed on as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissingValues {
    /// Drop samples holding NaN/±Inf (and report which ones were dropped).
    #[default]
    Skip,
    /// Replace each non-finite value by its channel's mean over the finite values of the given
    /// (training) samples, so that held-out samples do not leak into the statistics.
    Fill,
    /// Stop with an error naming the file, the first bad sample index and how many values are
    /// bad, for data that is expected to be clean.
    Fail,
}

impl MissingValues {
    /// The name used in config files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::Fill => "fill",
            Self::Fail => "fail",
        }
    }
}

/// Images taken from an `.npy` array, in the layout and value range the rest of the crate uses.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyImages {
    /// `[N, C, H, W]`, row-major, in [0, 1] apart from non-finite values that
    /// [`apply_missing_values`] has not dealt with yet.
    pub pixels: Vec<f32>,
    pub count: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl NpyImages {
    /// The number of values in one sample (`C × H × W`).
    pub fn sample_len(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// Turns a decoded array into images: `[N, H, W]` (one channel) or 4-D in `layout` with 1 or 3
/// channels, moved to `[N, C, H, W]`; bytes are divided by 255, floats must already be in [0, 1]
/// (checked over the finite values, so a wrongly scaled file fails instead of training on
/// garbage). Non-finite values are kept for [`apply_missing_values`] to handle. `path` only names
/// the source in errors.
///
/// # Errors
/// [`DataError::Format`] for any other shape, an empty image (a zero dimension other than N),
/// float values outside [0, 1], or data whose length does not match the shape.
pub fn npy_images(array: NpyArray, layout: NpyLayout, path: &Path) -> Result<NpyImages, DataError> {
    let bad = |message: String| DataError::format(path, message);
    let shape = shape_str(&array.shape);
    let expected_layouts = |layout: NpyLayout| {
        let (four_d, other) = match layout {
            NpyLayout::Nhwc => ("[N, H, W, C]", "nchw for [N, C, H, W]"),
            NpyLayout::Nchw => ("[N, C, H, W]", "nhwc for [N, H, W, C]"),
        };
        format!(
            "expected [N, H, W] (one channel) or {four_d} with C = 1 or 3 (layout {}; use layout \
             {other})",
            layout.name()
        )
    };
    let (count, channels, height, width, channels_last) = match (array.shape.as_slice(), layout) {
        (&[n, h, w], _) => (n, 1, h, w, false),
        (&[n, h, w, c], NpyLayout::Nhwc) => (n, c, h, w, true),
        (&[n, c, h, w], NpyLayout::Nchw) => (n, c, h, w, false),
        _ => {
            return Err(bad(format!(
                "an image array must have 3 or 4 dimensions, shape {shape} has {}; {}",
                array.shape.len(),
                expected_layouts(layout)
            )));
        }
    };
    if channels != 1 && channels != 3 {
        return Err(bad(format!(
            "shape {shape} read as {} has {channels} channels; {}",
            layout.name(),
            expected_layouts(layout)
        )));
    }
    if height == 0 || width == 0 {
        return Err(bad(format!(
            "shape {shape} holds empty images ({height}×{width} pixels); {}",
            expected_layouts(layout)
        )));
    }
    let sample_len = channels * height * width;
    let needed = count.checked_mul(sample_len);
    if needed != Some(array.data.len()) {
        return Err(bad(format!(
            "the array holds {} values, shape {shape} needs {}",
            array.data.len(),
            needed.map_or_else(|| "more than fit in memory".to_string(), |n| n.to_string())
        )));
    }
    let values: Vec<f32> = match array.data {
        NpyData::U8(v) => v.into_iter().map(|b| f32::from(b) / 255.0).collect(),
        NpyData::F32(mut v) => {
            let (lo, hi) = v
                .iter()
                .filter(|x| x.is_finite())
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
                    (lo.min(x), hi.max(x))
                });
            if lo < -RANGE_TOLERANCE || hi > 1.0 + RANGE_TOLERANCE {
                return Err(bad(format!(
                    "float values range over [{lo}, {hi}] (finite values), outside [0, 1]; \
                     rescale to [0, 1] first (e.g. x / 255 for 0–255 data, (x + 1) / 2 for \
                     [-1, 1] data)"
                )));
            }
            // Within tolerance: pull rounding strays back so that the range promise holds.
            for x in v.iter_mut().filter(|x| x.is_finite()) {
                *x = x.clamp(0.0, 1.0);
            }
            v
        }
    };
    let pixels = if channels_last && channels > 1 {
        let plane = height * width;
        let mut out = vec![0.0; values.len()];
        for (n, sample) in values.chunks_exact(sample_len).enumerate() {
            let dst = &mut out[n * sample_len..(n + 1) * sample_len];
            for (p, pixel) in sample.chunks_exact(channels).enumerate() {
                for (c, &v) in pixel.iter().enumerate() {
                    dst[c * plane + p] = v;
                }
            }
        }
        out
    } else {
        values
    };
    Ok(NpyImages {
        pixels,
        count,
        channels,
        height,
        width,
    })
}

/// `(sample index, number of non-finite values)` for every sample holding NaN or ±Inf, in index
/// order; what [`apply_missing_values`] acts on, exposed so callers can report before choosing.
pub fn non_finite_samples(images: &NpyImages) -> Vec<(usize, usize)> {
    let sample_len = images.sample_len();
    if sample_len == 0 {
        return Vec::new();
    }
    images
        .pixels
        .chunks_exact(sample_len)
        .enumerate()
        .filter_map(|(i, s)| {
            let bad = s.iter().filter(|x| !x.is_finite()).count();
            (bad > 0).then_some((i, bad))
        })
        .collect()
}

/// Applies `policy` to the samples holding NaN/±Inf and returns the images with what was done to
/// which sample (original index, reason), so the caller can tell the user instead of changing the
/// data silently.
///
/// For [`MissingValues::Fill`], the channel means come only from the samples in `fill_from`
/// (indices into `images`, typically the training split), so that evaluation samples do not
/// influence the training data. `path` names the source in errors.
///
/// # Errors
/// [`DataError::Format`] under [`MissingValues::Fail`] when any sample holds a non-finite value;
/// under [`MissingValues::Fill`] when an index in `fill_from` is out of range or a channel that
/// needs filling has no finite value in the `fill_from` samples.
pub fn apply_missing_values(
    images: NpyImages,
    policy: MissingValues,
    fill_from: &[usize],
    path: &Path,
) -> Result<(NpyImages, Vec<(usize, String)>), DataError> {
    let bad_samples = non_finite_samples(&images);
    if bad_samples.is_empty() {
        return Ok((images, Vec::new()));
    }
    let describe = |n: usize| {
        if n == 1 {
            "1 NaN/Inf value".to_string()
        } else {
            format!("{n} NaN/Inf values")
        }
    };
    let sample_len = images.sample_len();
    match policy {
        MissingValues::Fail => {
            let (first, n) = bad_samples[0];
            let total: usize = bad_samples.iter().map(|&(_, n)| n).sum();
            Err(DataError::format(
                path,
                format!(
                    "sample {first} holds {} ({} in {} of {} samples in all); clean the array \
                     or choose the missing-values policy skip or fill",
                    describe(n),
                    describe(total),
                    bad_samples.len(),
                    images.count
                ),
            ))
        }
        MissingValues::Skip => {
            let mut images = images;
            let mut keep = vec![true; images.count];
            for &(i, _) in &bad_samples {
                keep[i] = false;
            }
            let mut pixels = Vec::with_capacity((images.count - bad_samples.len()) * sample_len);
            for (sample, _) in images
                .pixels
                .chunks_exact(sample_len)
                .zip(&keep)
                .filter(|(_, k)| **k)
            {
                pixels.extend_from_slice(sample);
            }
            images.pixels = pixels;
            images.count -= bad_samples.len();
            let report = bad_samples
                .into_iter()
                .map(|(i, n)| (i, describe(n)))
                .collect();
            Ok((images, report))
        }
        MissingValues::Fill => {
            let mut images = images;
            let plane = images.height * images.width;
            let mut chosen = vec![false; images.count];
            for &i in fill_from {
                let Some(c) = chosen.get_mut(i) else {
                    return Err(DataError::format(
                        path,
                        format!(
                            "cannot fill NaN/Inf values: sample {i} (given to compute the channel \
                             means from) is out of range for {} samples",
                            images.count
                        ),
                    ));
                };
                *c = true;
            }
            // Means in f64: summing 10^5 samples of 10^3 values in f32 loses digits.
            let mut sums = vec![(0.0f64, 0usize); images.channels];
            for (sample, _) in images
                .pixels
                .chunks_exact(sample_len)
                .zip(&chosen)
                .filter(|(_, c)| **c)
            {
                for (channel, values) in sample.chunks_exact(plane).enumerate() {
                    for &v in values.iter().filter(|v| v.is_finite()) {
                        sums[channel].0 += f64::from(v);
                        sums[channel].1 += 1;
                    }
                }
            }
            let used = chosen.iter().filter(|c| **c).count();
            let mut report = Vec::with_capacity(bad_samples.len());
            for (i, n) in bad_samples {
                let sample = &mut images.pixels[i * sample_len..(i + 1) * sample_len];
                for (channel, values) in sample.chunks_exact_mut(plane).enumerate() {
                    for v in values.iter_mut().filter(|v| !v.is_finite()) {
                        let (sum, finite) = sums[channel];
                        if finite == 0 {
                            return Err(DataError::format(
                                path,
                                format!(
                                    "cannot fill the NaN/Inf values of sample {i}: channel \
                                     {channel} has no finite value in the {used} samples given \
                                     to compute the channel means from"
                                ),
                            ));
                        }
                        *v = (sum / finite as f64) as f32;
                    }
                }
                report.push((i, format!("{} filled with the channel mean", describe(n))));
            }
            Ok((images, report))
        }
    }
}
