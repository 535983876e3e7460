//! `oxidiff data inspect`: what a data source holds, before a run is spent on it.
//!
//! The same `[data]` section a run uses is loaded the same way (so the same files are skipped
//! for the same reasons), then summarised: counts, label histogram, per-channel statistics at the
//! model's resolution, and — for folders — the stored sizes and colour layouts of the files,
//! read from their headers only.

use std::collections::BTreeMap;

use image::ImageReader;

use crate::source::folder::scan_folder_with;
use crate::{DataConfig, DataError, DataSource, Dataset, load_dataset};

/// A summary of one source, as loaded for a model of `size`×`size`×`channels`.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    pub dataset: Dataset,
    /// Files found (folder sources; the image count otherwise), usable or not.
    pub found: usize,
    /// Stored image sizes (`"W×H"`) and how many files have each, most frequent first (folder
    /// sources; a single entry for array sources).
    pub sizes: Vec<(String, usize)>,
    /// Stored colour layouts (`"Rgb8"`, `"La16"`, …) and their counts (folder sources).
    pub color_types: Vec<(String, usize)>,
    /// Per-channel mean and standard deviation of the loaded pixels in [0, 1].
    pub channel_mean: Vec<f64>,
    pub channel_std: Vec<f64>,
}

/// Loads `config`'s source for a model of `size` and `channels` and summarises it.
///
/// # Errors
/// Whatever [`load_dataset`] reports (a bad config, an unreadable folder, an empty source, a
/// broken file under `on_error = "fail"`).
pub fn inspect(config: &DataConfig, size: usize, channels: usize) -> Result<Inspection, DataError> {
    let dataset = load_dataset(config, size, channels)?;
    let (found, sizes, color_types) = match (config.source, config.path.as_deref()) {
        (DataSource::Folder, Some(root)) => {
            let scan = scan_folder_with(root, config.folder_labels)?;
            let mut sizes = BTreeMap::new();
            let mut colors = BTreeMap::new();
            for entry in &scan.entries {
                let Ok(reader) =
                    ImageReader::open(&entry.path).and_then(|r| r.with_guessed_format())
                else {
                    continue;
                };
                if let Ok(decoder) = reader.into_decoder() {
                    use image::ImageDecoder;
                    let (w, h) = decoder.dimensions();
                    *sizes.entry(format!("{w}×{h}")).or_insert(0) += 1;
                    *colors
                        .entry(format!("{:?}", decoder.original_color_type()))
                        .or_insert(0) += 1;
                }
            }
            (
                scan.entries.len() + scan.skipped.len(),
                by_count(sizes),
                by_count(colors),
            )
        }
        _ => (dataset.len(), Vec::new(), Vec::new()),
    };
    let all: Vec<usize> = (0..dataset.len()).collect();
    let (channel_mean, channel_std) = channel_stats(&dataset, &all);
    Ok(Inspection {
        dataset,
        found,
        sizes,
        color_types,
        channel_mean,
        channel_std,
    })
}

fn by_count(counts: BTreeMap<String, usize>) -> Vec<(String, usize)> {
    let mut v: Vec<(String, usize)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// Mean and standard deviation of each channel over the images at `indices`, in [0, 1] (the
/// loaded values are in [-1, 1]); accumulated in f64 so that millions of pixels do not lose
/// precision. Reads cached images in place (no copy of a training split is made to measure it)
/// and decodes streamed ones one at a time; a streamed file that fails is left out of the
/// statistics (training reports it when it meets it).
///
/// # Panics
/// If an index is out of range.
pub fn channel_stats(data: &Dataset, indices: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let plane = data.stored_size * data.stored_size;
    let mut sum = vec![0.0f64; data.channels];
    let mut sum_sq = vec![0.0f64; data.channels];
    let mut counted = 0usize;
    for &i in indices {
        let Ok(image) = data.load(i) else { continue };
        counted += 1;
        for (c, values) in image.chunks_exact(plane.max(1)).enumerate() {
            for &v in values {
                let unit = (f64::from(v) + 1.0) * 0.5;
                sum[c] += unit;
                sum_sq[c] += unit * unit;
            }
        }
    }
    let n = (counted * plane).max(1) as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let std = sum_sq
        .iter()
        .zip(&mean)
        .map(|(sq, m)| (sq / n - m * m).max(0.0).sqrt())
        .collect();
    (mean, std)
}
