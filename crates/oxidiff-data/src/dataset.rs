//! The dataset handed to the trainer: images in memory or the files to stream them from, with
//! their labels, and the batches drawn from it. Loading one is [`crate::load_dataset`].

use std::borrow::Cow;
use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};

use crate::DataError;
use crate::augment::{Augment, crop_into};
use crate::captions::Captions;
use crate::captions::draw::{CaptionOptions, draw_caption};
use crate::config::{ErrorPolicy, ResizeFilter};
use crate::decode::DecodeOptions;
use crate::parallel::parallel_map;
use crate::source::image_files::load_image;
use crate::standardize::ChannelStats;

/// Where a dataset's pixels are.
#[derive(Debug, Clone, PartialEq)]
pub enum Images {
    /// Decoded once at load (`data.cache = true`, the default):
    /// `[N, channels, stored_size, stored_size]` flattened, values in [-1, 1] (or standardised,
    /// see [`Dataset::standardize`]).
    Cached(Vec<f32>),
    /// Decoded from the files again whenever a batch needs them (`data.cache = false`).
    Streamed(FileStream),
}

/// The image files of a streamed dataset and how to turn each into the model's layout.
#[derive(Debug, Clone, PartialEq)]
pub struct FileStream {
    /// `[N]`: the file of each image.
    pub paths: Vec<PathBuf>,
    pub options: DecodeOptions,
    pub filter: ResizeFilter,
    /// A file that fails at batch time (deleted or rewritten since the load checked it): skip
    /// it, using another image of the same batch in its place, or stop.
    pub on_error: ErrorPolicy,
    /// Applied to each image after decoding.
    pub standardization: Option<ChannelStats>,
}

/// The images of one batch on the host, ready to become a tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `[B, channels, size, size]` flattened.
    pub pixels: Vec<f32>,
    /// `[B, channels, size, size]`.
    pub shape: [usize; 4],
    /// `[B]`: the label of each image actually in the batch (a skipped file's stand-in brings
    /// its own label).
    pub labels: Vec<usize>,
    /// `[B]`: the dataset index of each image actually in the batch (a skipped file's
    /// stand-in gives its own), for what else belongs to it (its captions).
    pub indices: Vec<usize>,
    /// `[B]` or empty: the caption each image is shown with at this step. Assembling leaves it
    /// empty; the trainer's feed draws it (per-step seeds, caption dropout) with
    /// [`Dataset::draw_captions`] over `indices`, for a dataset with captions.
    pub captions: Vec<String>,
    /// Files of a streamed dataset that could not be read for this batch, with the reason;
    /// always empty for a cached one.
    pub failed: Vec<(PathBuf, String)>,
}

impl Batch {
    /// The batch as a tensor on `device`.
    ///
    /// # Shapes
    /// - returns: `[B, channels, size, size]`
    pub fn to_tensor(&self, device: &Device) -> Tensor<4> {
        Tensor::<4>::from_data(TensorData::new(self.pixels.clone(), self.shape), device)
    }

    /// Images `range` of the batch (a micro-batch of it), as a tensor on `device`.
    ///
    /// # Shapes
    /// - returns: `[range.len(), channels, size, size]`
    pub fn slice_tensor(&self, range: std::ops::Range<usize>, device: &Device) -> Tensor<4> {
        let [_, c, h, w] = self.shape;
        let per = c * h * w;
        let pixels = self.pixels[range.start * per..range.end * per].to_vec();
        Tensor::<4>::from_data(TensorData::new(pixels, [range.len(), c, h, w]), device)
    }
}

/// A dataset in the model's layout, with its labels: images held in memory, or (with
/// `data.cache = false`) the files to decode them from.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub images: Images,
    /// `[N]`, each in `0..num_classes`.
    pub labels: Vec<usize>,
    /// Number of classes (`class_names.len()`); 1 for a source without classes.
    pub num_classes: usize,
    /// `[num_classes]`: the name of each label ("0".."9" for the digits, sub-folder names for a
    /// folder, the folder's own name when it has no sub-folders).
    pub class_names: Vec<String>,
    pub channels: usize,
    /// Side of the images handed to the model.
    pub size: usize,
    /// Side of the stored images (`data.resize`, at least `size`): batches are crops of them.
    pub stored_size: usize,
    /// Files that were skipped, with the reason (empty for the embedded digits).
    pub skipped: Vec<(PathBuf, String)>,
    /// `[N]`: each image's identity within its source — its path relative to the folder, its
    /// path as written in a manifest, or `#index` for array sources — used by the validation
    /// split.
    pub keys: Vec<String>,
    /// The images' captions (`data.captions`); `None` for a dataset without any.
    pub captions: Option<Captions>,
}

impl Dataset {
    /// A dataset of `images`, each `channels` planes of `stored_size`×`stored_size`, with their
    /// `labels` (indices into `class_names`) and `keys` (see [`Dataset::keys`]), all `[N]`.
    ///
    /// The model gets the stored images whole until [`Dataset::cropped_to`] says otherwise, and
    /// nothing is recorded as skipped until [`Dataset::with_skipped`]. Every source builds its
    /// dataset here, so `num_classes` is always `class_names.len()`.
    pub fn new(
        images: Images,
        channels: usize,
        stored_size: usize,
        labels: Vec<usize>,
        class_names: Vec<String>,
        keys: Vec<String>,
    ) -> Self {
        debug_assert_eq!(labels.len(), keys.len(), "one key per image");
        debug_assert!(match &images {
            Images::Cached(values) => values.len() == labels.len() * channels * stored_size.pow(2),
            Images::Streamed(stream) => stream.paths.len() == labels.len(),
        });
        Self {
            images,
            labels,
            num_classes: class_names.len(),
            class_names,
            channels,
            size: stored_size,
            stored_size,
            skipped: Vec::new(),
            keys,
            captions: None,
        }
    }

    /// The dataset with `captions` for its images (`None`: without captions).
    pub fn with_captions(mut self, captions: Option<Captions>) -> Self {
        debug_assert!(match &captions {
            Some(Captions::PerImage(per_image)) => per_image.len() == self.len(),
            _ => true,
        });
        self.captions = captions;
        self
    }

    /// The captions of image `i`: empty when it has none (or the dataset has no captions).
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn captions_of(&self, i: usize) -> Cow<'_, [String]> {
        match &self.captions {
            None => Cow::Borrowed(&[]),
            Some(captions) => {
                let class = self
                    .class_names
                    .get(self.labels[i])
                    .map_or("", String::as_str);
                captions.of(i, class)
            }
        }
    }

    /// The caption each image at `indices` is shown with at one step: image `k` of the batch
    /// drawn per `options` with the seed `seed_of(k)` (see [`draw_caption`]).
    ///
    /// # Shapes
    /// - `indices`: `[B]`; returns `[B]`
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn draw_captions(
        &self,
        indices: &[usize],
        options: &CaptionOptions,
        seed_of: impl Fn(usize) -> u64,
    ) -> Vec<String> {
        indices
            .iter()
            .enumerate()
            .map(|(k, &i)| draw_caption(&self.captions_of(i), options, seed_of(k)))
            .collect()
    }

    /// The dataset with `skipped` recorded as the files left out while loading it.
    pub fn with_skipped(mut self, skipped: Vec<(PathBuf, String)>) -> Self {
        self.skipped = skipped;
        self
    }

    /// The dataset handing the model `size`×`size` crops of its stored images
    /// (`size <= stored_size`; how each batch crops is [`Dataset::assemble`]'s `augment`).
    pub fn cropped_to(mut self, size: usize) -> Self {
        debug_assert!(
            size <= self.stored_size,
            "crops lie inside the stored images"
        );
        self.size = size;
        self
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per stored image: channels × stored_size².
    pub fn image_len(&self) -> usize {
        self.channels * self.stored_size * self.stored_size
    }

    /// The decoded images when they are held in memory; `None` when streamed.
    ///
    /// # Shapes
    /// - returns: `[N, channels, stored_size, stored_size]`, flattened
    pub fn cached(&self) -> Option<&[f32]> {
        match &self.images {
            Images::Cached(values) => Some(values),
            Images::Streamed(_) => None,
        }
    }

    /// Image `i` of a cached dataset.
    ///
    /// # Shapes
    /// - returns: `[channels, stored_size, stored_size]`, flattened
    ///
    /// # Panics
    /// If `i >= self.len()` or the dataset is streamed: code that may meet either kind uses
    /// [`Dataset::load`].
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_len();
        let values = self
            .cached()
            .expect("Dataset::image on a streamed dataset; use Dataset::load");
        &values[i * n..(i + 1) * n]
    }

    /// Image `i`, borrowed from memory or decoded from its file.
    ///
    /// # Shapes
    /// - returns: `[channels, stored_size, stored_size]`, flattened
    ///
    /// # Errors
    /// The file and the reason it cannot be used (streamed datasets only: a file deleted,
    /// truncated or replaced since the load checked it).
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn load(&self, i: usize) -> Result<Cow<'_, [f32]>, (PathBuf, String)> {
        match &self.images {
            Images::Cached(_) => Ok(Cow::Borrowed(self.image(i))),
            Images::Streamed(stream) => {
                let path = &stream.paths[i];
                let mut pixels = load_image(
                    path,
                    self.stored_size,
                    self.channels,
                    &stream.options,
                    stream.filter.filter_type(),
                )
                .map_err(|reason| (path.clone(), reason))?;
                if let Some(stats) = &stream.standardization {
                    stats.apply(&mut pixels, self.stored_size * self.stored_size);
                }
                Ok(Cow::Owned(pixels))
            }
        }
    }

    /// Standardises every image with `stats` from now on: in place when cached, after each
    /// decode when streamed.
    pub fn standardize(&mut self, stats: &ChannelStats) {
        let plane = self.stored_size * self.stored_size;
        match &mut self.images {
            Images::Cached(values) => stats.apply(values, plane),
            Images::Streamed(stream) => stream.standardization = Some(stats.clone()),
        }
    }

    /// Gathers the images at `indices` into one tensor on `device` (centre crops, no flips).
    ///
    /// # Shapes
    /// - `indices`: `[B]`
    /// - returns: `[B, channels, size, size]`
    ///
    /// # Errors
    /// As [`Dataset::assemble`].
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn batch(&self, indices: &[usize], device: &Device) -> Result<Tensor<4>, DataError> {
        self.batch_with(indices, Augment::default(), |_| None, device)
    }

    /// [`Dataset::assemble`] as a tensor on `device`.
    ///
    /// # Shapes
    /// - `indices`: `[B]`
    /// - returns: `[B, channels, size, size]`
    pub fn batch_with(
        &self,
        indices: &[usize],
        augment: Augment,
        seed_of: impl Fn(usize) -> Option<u64>,
        device: &Device,
    ) -> Result<Tensor<4>, DataError> {
        Ok(self.assemble(indices, augment, seed_of)?.to_tensor(device))
    }

    /// Gathers the images at `indices` as a training batch: each cropped and flipped per
    /// `augment`, image `k` of the batch with the seed `seed_of(k)` (`None` = the centre, no
    /// flip). A streamed dataset decodes the files on all cores.
    ///
    /// A streamed file that fails is reported in [`Batch::failed`] and, under
    /// `on_error = "skip"`, replaced by the next image of the same batch that loaded (with its
    /// label and its own crop), so the batch keeps its size and one bad file never stops a run.
    ///
    /// # Shapes
    /// - `indices`: `[B]`
    /// - returns: pixels `[B, channels, size, size]`, labels `[B]`
    ///
    /// # Errors
    /// - [`DataError::Unusable`] for a failed file under `on_error = "fail"`;
    /// - [`DataError::Empty`] when every file of the batch failed.
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn assemble(
        &self,
        indices: &[usize],
        augment: Augment,
        seed_of: impl Fn(usize) -> Option<u64>,
    ) -> Result<Batch, DataError> {
        let per_image = self.channels * self.size * self.size;
        let mut pixels = Vec::with_capacity(indices.len() * per_image);
        let shape = [indices.len(), self.channels, self.size, self.size];
        let crop = |image: &[f32], k: usize, out: &mut Vec<f32>| {
            crop_into(
                image,
                self.channels,
                self.stored_size,
                self.size,
                augment,
                seed_of(k),
                out,
            )
        };
        let Images::Streamed(stream) = &self.images else {
            for (k, &i) in indices.iter().enumerate() {
                crop(self.image(i), k, &mut pixels);
            }
            return Ok(Batch {
                pixels,
                shape,
                labels: self.labels_of(indices),
                indices: indices.to_vec(),
                captions: Vec::new(),
                failed: Vec::new(),
            });
        };
        let loaded = parallel_map(
            indices,
            |&i| self.load(i).map(Cow::into_owned),
            || Err((PathBuf::new(), "decoding thread panicked".to_string())),
        );
        let failed: Vec<(PathBuf, String)> = loaded
            .iter()
            .filter_map(|r| r.as_ref().err().cloned())
            .collect();
        if let (ErrorPolicy::Fail, Some((path, reason))) = (stream.on_error, failed.first()) {
            return Err(DataError::Unusable {
                path: path.clone(),
                reason: format!("{reason} (at batch time, after the load had checked it)"),
            });
        }
        let mut labels = Vec::with_capacity(indices.len());
        let mut used = Vec::with_capacity(indices.len());
        for k in 0..indices.len() {
            // The first image at or after k (cyclically) that loaded stands in for k.
            let Some(j) = (0..indices.len())
                .map(|d| (k + d) % indices.len())
                .find(|&j| loaded[j].is_ok())
            else {
                let (path, reason) = &failed[0];
                return Err(DataError::Empty {
                    origin: format!("a batch of {} streamed images", indices.len()),
                    note: format!(
                        " (every file failed at batch time; first: {}: {reason})",
                        path.display()
                    ),
                });
            };
            if let Ok(image) = &loaded[j] {
                crop(image, k, &mut pixels);
            }
            labels.push(self.labels[indices[j]]);
            used.push(indices[j]);
        }
        Ok(Batch {
            pixels,
            shape,
            labels,
            indices: used,
            captions: Vec::new(),
            failed,
        })
    }

    /// The labels at `indices`.
    ///
    /// # Shapes
    /// - `indices`: `[B]`; returns `[B]`
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn labels_of(&self, indices: &[usize]) -> Vec<usize> {
        indices.iter().map(|&i| self.labels[i]).collect()
    }

    /// The images at `indices`, in that order, as a dataset of their own (class names and
    /// captions kept; a streamed dataset's subset streams the same files).
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let images = match &self.images {
            Images::Cached(_) => {
                let mut values = Vec::with_capacity(indices.len() * self.image_len());
                for &i in indices {
                    values.extend_from_slice(self.image(i));
                }
                Images::Cached(values)
            }
            Images::Streamed(stream) => Images::Streamed(FileStream {
                paths: indices.iter().map(|&i| stream.paths[i].clone()).collect(),
                ..stream.clone()
            }),
        };
        Dataset::new(
            images,
            self.channels,
            self.stored_size,
            self.labels_of(indices),
            self.class_names.clone(),
            indices.iter().map(|&i| self.keys[i].clone()).collect(),
        )
        .with_skipped(self.skipped.clone())
        .with_captions(self.captions.as_ref().map(|c| c.subset(indices)))
        .cropped_to(self.size)
    }

    /// Number of images per class.
    ///
    /// # Shapes
    /// - returns: `[num_classes]`
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l) {
                *c += 1;
            }
        }
        counts
    }
}
