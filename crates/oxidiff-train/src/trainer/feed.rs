//! The data feed of a run: the images of every step, in the run's epoch order, augmented with
//! seeds fixed by their position in the run, their labels dropped and their captions drawn for
//! guidance — assembled inline from a cached dataset or prefetched on a background thread from
//! streamed files.

use std::sync::Arc;

use oxidiff_data::{
    Augment, Batch, CaptionOptions, ChannelStats, DataReport, Dataset, EpochOrder, LateSkip,
    Prefetcher, derive_seed,
};

use super::setup::RunData;
use crate::error::TrainError;
use crate::run_dir::{RunDir, write_json};

/// Keeps the label-dropout draws apart from the other streams derived from the run seed.
const LABEL_STREAM: u64 = 0x1ABE_1D80_0000_0002;

/// Keeps the caption draws apart from the other streams derived from the run seed.
const CAPTION_STREAM: u64 = 0xCA97_10A5_0000_0003;

/// Keeps the augmentation draws apart from the other streams derived from the run seed.
const AUGMENT_STREAM: u64 = 0xA5A5_0000_0000_0001;

/// Steps whose batches a streamed dataset prepares ahead: enough to hide a slow file behind
/// the steps before it, few enough to hold only a few batches.
const PREFETCH_STEPS: u64 = 3;

/// Classifier-free guidance's label dropout (Ho & Salimans 2022, Algorithm 1).
#[derive(Debug, Clone, Copy)]
pub struct LabelDropout {
    /// The "no class" label (the model's `num_classes`).
    pub null_label: usize,
    /// Probability of dropping a label.
    pub probability: f64,
}

/// What a task is conditioned on, as the feed prepares it for each step.
#[derive(Debug, Clone, Copy, Default)]
pub struct Conditioning {
    /// Class labels, dropped to "no class" (class-conditional models).
    pub labels: Option<LabelDropout>,
    /// Captions, one drawn per image and step and dropped to the empty prompt
    /// (text-conditioned models); `None` leaves [`Batch::captions`] empty.
    pub captions: Option<CaptionOptions>,
}

/// How a step's images reach it.
enum Loader {
    /// Cached images: assembled when the step needs them (microseconds per batch).
    Inline,
    /// Streamed files: decoded ahead of time on a background thread, `next` being the first
    /// step not yet requested.
    Prefetch { loader: Prefetcher, next: u64 },
}

/// The images a run trains and evaluates on, and the batches of its steps.
pub struct DataFeed {
    /// The images trained on: the whole source minus the validation split (shared with the
    /// prefetch thread when streamed).
    pub dataset: Arc<Dataset>,
    /// The held-out images, never seen by the optimiser.
    pub validation: Dataset,
    /// The per-channel statistics both datasets were standardised with
    /// (`data.standardize = "per-channel"`); `None` for the default [-1, 1] scaling.
    pub standardization: Option<ChannelStats>,
    order: EpochOrder,
    loader: Loader,
    augment: Augment,
    /// Images per optimiser step (`batch_size × grad_accum_steps`).
    per_step: usize,
    seed: u64,
    conditioning: Conditioning,
    /// `data_report.json`, kept to add the files that fail during training.
    report: DataReport,
    run_dir: RunDir,
    /// Files that failed since the driver last looked.
    new_skips: Vec<LateSkip>,
}

impl DataFeed {
    /// The feed of a run continuing after `step` completed steps.
    pub fn new(
        data: RunData,
        run_dir: &RunDir,
        augment: Augment,
        per_step: usize,
        seed: u64,
        conditioning: Conditioning,
        step: u64,
    ) -> Self {
        let dataset = Arc::new(data.train);
        let order = EpochOrder::new(dataset.len(), per_step, seed);
        let loader = if dataset.cached().is_some() {
            Loader::Inline
        } else {
            Loader::Prefetch {
                loader: Prefetcher::new(Arc::clone(&dataset), augment),
                next: step,
            }
        };
        Self {
            dataset,
            validation: data.validation,
            standardization: data.standardization,
            order,
            loader,
            augment,
            per_step,
            seed,
            conditioning,
            report: data.report,
            run_dir: run_dir.clone(),
            new_skips: Vec::new(),
        }
    }

    /// Forgets the batches prefetched for the steps ahead (a rollback goes back to earlier
    /// steps); the next [`step_batch`](Self::step_batch) starts the queue again there.
    pub fn rewind(&mut self) {
        if let Loader::Prefetch { loader, .. } = &mut self.loader {
            *loader = Prefetcher::new(Arc::clone(&self.dataset), self.augment);
        }
    }

    /// The images of (0-based) step `step`, augmented, labels dropped, captions drawn. Files
    /// that failed are recorded in `data_report.json` and queued for
    /// [`DataFeed::take_skips`].
    pub fn step_batch(&mut self, step: u64) -> Result<Batch, TrainError> {
        let mut batch = match &mut self.loader {
            Loader::Inline => {
                let seeds = augment_seeds(self.seed, step, self.per_step);
                self.dataset
                    .assemble(&self.order.batch_indices(step), self.augment, |k| seeds[k])?
            }
            Loader::Prefetch { loader, next } => {
                // The queue holds steps step..next in order; empty (at the start, or after a
                // batch was lost to an error) it starts again here.
                if loader.pending() == 0 {
                    *next = step;
                }
                while *next < step + PREFETCH_STEPS {
                    let s = *next;
                    loader.request(
                        s,
                        self.order.batch_indices(s),
                        augment_seeds(self.seed, s, self.per_step),
                    );
                    *next += 1;
                }
                loader.receive(step)?
            }
        };
        if !batch.failed.is_empty() {
            let added = self.report.add_late_skips(&batch.failed, step + 1);
            if !added.is_empty() {
                write_json(&self.run_dir.data_report(), &self.report)?;
                self.new_skips.extend(added);
            }
        }
        if let Some(dropout) = self.conditioning.labels {
            drop_labels(&mut batch.labels, dropout, self.seed, step);
        }
        if let Some(options) = self.conditioning.captions {
            // Seeded by each image's position in the whole run, like its augmentation.
            let first = step * self.per_step as u64;
            batch.captions = self.dataset.draw_captions(&batch.indices, &options, |k| {
                derive_seed(self.seed ^ CAPTION_STREAM, first + k as u64)
            });
        }
        Ok(batch)
    }

    /// Files that failed since the last call (`data.on_error = "skip"`).
    pub fn take_skips(&mut self) -> Vec<LateSkip> {
        std::mem::take(&mut self.new_skips)
    }
}

/// Drops each label of step `step` to "no class" with the dropout's probability, drawn per image
/// from its own seeded stream (by its position in the whole run), so a resumed run drops the
/// same labels.
fn drop_labels(labels: &mut [usize], dropout: LabelDropout, seed: u64, step: u64) {
    let per_step = labels.len() as u64;
    for (pos, label) in labels.iter_mut().enumerate() {
        let u = derive_seed(seed ^ LABEL_STREAM, step * per_step + pos as u64);
        if ((u >> 11) as f64) / ((1u64 << 53) as f64) < dropout.probability {
            *label = dropout.null_label;
        }
    }
}

/// The augmentation seed of every image of step `step` (`per_step` images): a function of the
/// run seed and the image's position in the whole run, so a resumed or prefetched run crops
/// and flips exactly as an uninterrupted one.
fn augment_seeds(seed: u64, step: u64, per_step: usize) -> Vec<Option<u64>> {
    (0..per_step as u64)
        .map(|pos| {
            Some(derive_seed(
                seed ^ AUGMENT_STREAM,
                step * per_step as u64 + pos,
            ))
        })
        .collect()
}
