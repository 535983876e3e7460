//! A latent run's data: its images encoded once by the frozen autoencoder, in chunks (a
//! streamed collection is never held as pixels), scaled, and cached in the run's
//! `latents.safetensors` keyed by the autoencoder's weights and the images, so that a resumed
//! run reads them back and a stale cache is never used.

use std::collections::HashMap;

use burn::tensor::Device;
use oxidiff_data::{Dataset, Images};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use sha2::{Digest, Sha256};

use super::config::{LatentCache, LatentSection};
use super::first_stage::{FirstStage, hex};
use super::space::{LatentRecord, LatentSpace, check_same_weights};
use crate::error::TrainError;
use crate::run_dir::{RunDir, read_json, to_json, write_atomic};
use crate::trainer::RunData;

/// Names the cache's format, so that a file of another layout is re-encoded, not misread.
const CACHE_FORMAT: &str = "oxidiff-latents-1";

/// What [`encode_run_data`] did, for the driver to report.
#[derive(Clone, Debug, PartialEq)]
pub struct LatentsMade {
    pub record: LatentRecord,
    /// Images encoded now (0: all read from the cache).
    pub encoded: usize,
    /// Why a cache on disk was not used, when there was one.
    pub stale_cache: Option<String>,
}

/// The run's training and held-out images as scaled latents, and its latent space: read from
/// the run's cache when it matches, else encoded (chunks of `batch` images) and cached. A
/// fresh run fixes the scaling factor in `latent.json`; a resumed run keeps that one and
/// refuses an autoencoder whose weights changed.
pub fn encode_run_data(
    first: &FirstStage,
    section: &LatentSection,
    data: RunData,
    run_dir: &RunDir,
    batch: usize,
    device: &Device,
) -> Result<(RunData, LatentSpace, LatentsMade), TrainError> {
    let weights = first.weights_sha256()?;
    let record_path = run_dir.latent_record();
    let saved: Option<LatentRecord> = if record_path.is_file() {
        let record = read_json(&record_path)?;
        check_same_weights(&weights, first, &record, &record_path)?;
        Some(record)
    } else {
        None
    };
    let vae = first.load(device)?;
    let digest = data_digest(&data.train, &data.validation)?;
    let cache_path = run_dir.latent_cache();
    let mut stale_cache = None;
    let cached = match section.cache {
        LatentCache::Disk if cache_path.is_file() => {
            match read_cache(&cache_path, &weights, &digest) {
                Ok(latents) => Some(latents),
                Err(why) => {
                    stale_cache = Some(why);
                    None
                }
            }
        }
        _ => None,
    };
    let unscaled_space = LatentSpace {
        vae,
        scaling_factor: 1.0,
    };
    let shape = latent_shape(first, data.train.size);
    let (train, validation, encoded) = match cached {
        Some(latents) => latents,
        None => {
            let train = encode(&unscaled_space, &data.train, batch, device)?;
            let validation = encode(&unscaled_space, &data.validation, batch, device)?;
            if section.cache == LatentCache::Disk {
                let bytes = cache_bytes((&train, &validation), shape, &weights, &digest)?;
                write_atomic(&cache_path, &bytes)?;
            }
            let n = data.train.len() + data.validation.len();
            (train, validation, n)
        }
    };
    let record = match saved {
        Some(record) => record,
        None => {
            let (scaling_factor, scaling_from) = match (section.scaling_factor, first.given_scaling)
            {
                (Some(s), _) => (s, "latent.scaling_factor".to_string()),
                (None, Some(s)) => (s, "the autoencoder's config.json".to_string()),
                (None, None) => (
                    1.0 / std_of(&train).max(1e-12),
                    format!("1/σ of {} training latents", data.train.len()),
                ),
            };
            let record = LatentRecord {
                autoencoder: first.path.clone(),
                autoencoder_sha256: weights,
                scaling_factor,
                scaling_from,
                latent_shape: shape,
            };
            write_atomic(&record_path, to_json(&record_path, &record)?.as_bytes())?;
            record
        }
    };
    let space = LatentSpace {
        vae: unscaled_space.vae,
        scaling_factor: record.scaling_factor,
    };
    let to_dataset = |pixels: &Dataset, mut values: Vec<f32>| {
        let s = record.scaling_factor as f32;
        values.iter_mut().for_each(|v| *v *= s);
        Dataset::new(
            Images::Cached(values),
            shape[0],
            shape[1],
            pixels.labels.clone(),
            pixels.class_names.clone(),
            pixels.keys.clone(),
        )
        .with_captions(pixels.captions.clone())
        .with_skipped(pixels.skipped.clone())
    };
    let latents = RunData {
        train: to_dataset(&data.train, train),
        validation: to_dataset(&data.validation, validation),
        standardization: None,
        report: data.report,
    };
    Ok((
        latents,
        space,
        LatentsMade {
            record,
            encoded,
            stale_cache,
        },
    ))
}

/// `[channels, side, side]` of the latent of a `size`×`size` image.
pub(crate) fn latent_shape(first: &FirstStage, size: usize) -> [usize; 3] {
    let side = size / first.factor();
    [first.config.latent_channels, side, side]
}

/// The posterior modes of every image of `data` (`space`'s factor applied), `[N, c, s, s]`
/// flattened, encoded `batch` images at a time.
pub fn encode(
    space: &LatentSpace,
    data: &Dataset,
    batch: usize,
    device: &Device,
) -> Result<Vec<f32>, TrainError> {
    let mut values = Vec::new();
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(batch.max(1)) {
        let images = data.batch(chunk, device)?;
        let latents = space.encode(images);
        values.extend(
            latents
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| TrainError::Eval {
                    message: format!("cannot read the latents back: {e:?}"),
                })?,
        );
    }
    Ok(values)
}

/// The standard deviation of all values (latent-diffusion's `z.flatten().std()`).
pub(crate) fn std_of(values: &[f32]) -> f64 {
    let n = values.len().max(1) as f64;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / (n - 1.0).max(1.0);
    var.sqrt()
}

/// SHA-256 over the shape, keys and pixels of the training then the held-out images.
fn data_digest(train: &Dataset, validation: &Dataset) -> Result<String, TrainError> {
    let mut hasher = Sha256::new();
    for data in [train, validation] {
        hasher.update(format!(
            "{}x{}x{}x{};",
            data.len(),
            data.channels,
            data.size,
            data.size
        ));
        for i in 0..data.len() {
            hasher.update(data.keys[i].as_bytes());
            let pixels = data.load(i).map_err(|(path, message)| {
                TrainError::Data(oxidiff_data::DataError::Image { path, message })
            })?;
            for v in pixels.iter() {
                hasher.update(v.to_le_bytes());
            }
        }
    }
    Ok(hex(&hasher.finalize()))
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// `[N, c, s, s]` over `bytes` of f32 latents of `shape`.
fn view<'a>(bytes: &'a [u8], shape: [usize; 3]) -> TensorView<'a> {
    let n = bytes.len() / 4 / shape.iter().product::<usize>().max(1);
    TensorView::new(Dtype::F32, vec![n, shape[0], shape[1], shape[2]], bytes)
        .expect("whole latents")
}

fn cache_bytes(
    (train, validation): (&[f32], &[f32]),
    shape: [usize; 3],
    weights: &str,
    digest: &str,
) -> Result<Vec<u8>, TrainError> {
    let (train, validation) = (f32_bytes(train), f32_bytes(validation));
    let metadata = HashMap::from([
        ("format".to_string(), CACHE_FORMAT.to_string()),
        ("autoencoder_sha256".to_string(), weights.to_string()),
        ("data_sha256".to_string(), digest.to_string()),
    ]);
    safetensors::serialize(
        [
            ("train", view(&train, shape)),
            ("validation", view(&validation, shape)),
        ],
        Some(metadata),
    )
    .map_err(|e| TrainError::Eval {
        message: format!("cannot write the latent cache: {e}"),
    })
}

/// The cached latents when the file is this autoencoder's latents of these images, else why
/// not.
fn read_cache(
    path: &std::path::Path,
    weights: &str,
    digest: &str,
) -> Result<(Vec<f32>, Vec<f32>, usize), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("unreadable: {e}"))?;
    let (_, metadata) =
        SafeTensors::read_metadata(&bytes).map_err(|e| format!("unreadable: {e}"))?;
    let info = metadata.metadata().clone().unwrap_or_default();
    let field = |key: &str| info.get(key).map(String::as_str).unwrap_or("");
    if field("format") != CACHE_FORMAT {
        return Err("not a latent cache of this version".into());
    }
    if field("autoencoder_sha256") != weights {
        return Err("made by an autoencoder with other weights".into());
    }
    if field("data_sha256") != digest {
        return Err("made from other images".into());
    }
    let file = SafeTensors::deserialize(&bytes).map_err(|e| format!("unreadable: {e}"))?;
    let read = |name: &str| -> Result<Vec<f32>, String> {
        let view = file.tensor(name).map_err(|e| format!("no `{name}`: {e}"))?;
        Ok(view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    };
    Ok((read("train")?, read("validation")?, 0))
}
