//! `data_report.json`: what a run's data turned out to be, written before training starts.
//!
//! Why a file and not only log lines: a run over a messy folder can skip hundreds of files, and
//! the reasons (truncated, zero-sized, over the pixel limit, …) are what a user needs to clean
//! the folder; the report sits next to the checkpoints, so the run stays explainable later.

use serde::{Deserialize, Serialize};

use crate::{DataConfig, Dataset, Split};

/// One class and its image counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCount {
    pub name: String,
    pub train: usize,
    pub validation: usize,
}

/// One input left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedInput {
    pub path: String,
    pub reason: String,
}

/// The content of `data_report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataReport {
    /// The source in words ("folder /data/cats", "Fashion-MNIST (train files in …)").
    pub source: String,
    /// Usable images, before the split.
    pub images: usize,
    pub train: usize,
    pub validation: usize,
    /// `[channels, size, size]` as handed to the model.
    pub shape: [usize; 3],
    pub classes: Vec<ClassCount>,
    pub skipped: Vec<SkippedInput>,
    /// Streamed files (`data.cache = false`) that failed after the load had checked them —
    /// deleted, truncated or replaced while the run was going — each listed once, with the step
    /// it was first met at. The trainer rewrites the report when one is added.
    #[serde(default)]
    pub skipped_during_training: Vec<LateSkip>,
    /// The captions, for a dataset that has them (`data.captions` not `"none"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captions: Option<CaptionReport>,
}

/// How many images have captions, over the whole dataset (before the split).
///
/// Token lengths need the tokenizer, which lives with the models: [`CaptionReport::tokens`] is
/// filled where both are known (the trainer, `oxidiff data inspect`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptionReport {
    /// `data.captions`: `metadata`, `sidecar`, `manifest` or `templates`.
    pub source: String,
    /// Images with at least one caption.
    pub captioned: usize,
    /// Images with none, trained with the empty caption; their keys are in `missing_images`.
    pub missing: usize,
    /// Images with more than one caption (one drawn per step).
    pub several: usize,
    /// The keys (paths relative to the folder, or as the manifest writes them) of the images
    /// without a caption, in dataset order.
    pub missing_images: Vec<String>,
    /// The captions' lengths in tokens; `None` until a tokenizer measured them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TokenLengths>,
}

/// The distinct captions' lengths in tokens under a tokenizer, special tokens included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenLengths {
    /// Which tokenizer measured them (e.g. `CLIP BPE`, or the tokenizer file).
    pub tokenizer: String,
    /// The text encoder's context: longer captions are truncated to it.
    pub context_length: usize,
    /// Distinct captions measured.
    pub captions: usize,
    pub min: usize,
    pub median: usize,
    pub max: usize,
    /// Distinct captions longer than the context, whose end the encoder never sees.
    pub truncated: usize,
    /// The first few of them.
    pub truncated_examples: Vec<String>,
}

impl TokenLengths {
    /// The lengths `count_tokens` gives the distinct captions of `data` (templates expanded
    /// over the class names), up to `examples` truncated ones kept.
    pub fn measure(
        data: &Dataset,
        tokenizer: &str,
        context_length: usize,
        mut count_tokens: impl FnMut(&str) -> usize,
        examples: usize,
    ) -> Self {
        let mut distinct: Vec<String> = (0..data.len())
            .flat_map(|i| data.captions_of(i).into_owned())
            .collect();
        distinct.sort_unstable();
        distinct.dedup();
        let mut lengths: Vec<(usize, &String)> =
            distinct.iter().map(|c| (count_tokens(c), c)).collect();
        let truncated: Vec<String> = lengths
            .iter()
            .filter(|(n, _)| *n > context_length)
            .map(|(_, c)| (*c).clone())
            .collect();
        lengths.sort_unstable_by_key(|(n, _)| *n);
        let at = |q: usize| lengths.get(q).map_or(0, |(n, _)| *n);
        Self {
            tokenizer: tokenizer.to_string(),
            context_length,
            captions: lengths.len(),
            min: at(0),
            median: at(lengths.len() / 2),
            max: lengths.last().map_or(0, |(n, _)| *n),
            truncated: truncated.len(),
            truncated_examples: truncated.into_iter().take(examples).collect(),
        }
    }
}

impl CaptionReport {
    /// The caption counts of `data`; `None` when it has no captions.
    pub fn new(config: &DataConfig, data: &Dataset) -> Option<Self> {
        data.captions.as_ref()?;
        let mut report = Self {
            source: config.captions.name().to_string(),
            captioned: 0,
            missing: 0,
            several: 0,
            missing_images: Vec::new(),
            tokens: None,
        };
        for i in 0..data.len() {
            match data.captions_of(i).len() {
                0 => {
                    report.missing += 1;
                    report.missing_images.push(data.keys[i].clone());
                }
                n => {
                    report.captioned += 1;
                    report.several += usize::from(n > 1);
                }
            }
        }
        Some(report)
    }
}

/// A streamed file that failed during training.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateSkip {
    pub path: String,
    pub reason: String,
    /// The optimiser step whose batch met it first (1-based, as in `metrics.jsonl`).
    pub step: u64,
}

impl DataReport {
    pub fn new(config: &DataConfig, data: &Dataset, split: &Split) -> Self {
        let mut classes: Vec<ClassCount> = data
            .class_names
            .iter()
            .map(|name| ClassCount {
                name: name.clone(),
                train: 0,
                validation: 0,
            })
            .collect();
        for &i in &split.train {
            if let Some(c) = classes.get_mut(data.labels[i]) {
                c.train += 1;
            }
        }
        for &i in &split.validation {
            if let Some(c) = classes.get_mut(data.labels[i]) {
                c.validation += 1;
            }
        }
        Self {
            source: config.describe_source(),
            images: data.len(),
            train: split.train.len(),
            validation: split.validation.len(),
            shape: [data.channels, data.size, data.size],
            classes,
            skipped: data
                .skipped
                .iter()
                .map(|(path, reason)| SkippedInput {
                    path: path.display().to_string(),
                    reason: reason.clone(),
                })
                .collect(),
            skipped_during_training: Vec::new(),
            captions: CaptionReport::new(config, data),
        }
    }

    /// Adds the files of `failed` not listed yet, as first met at `step`; returns those added.
    pub fn add_late_skips(
        &mut self,
        failed: &[(std::path::PathBuf, String)],
        step: u64,
    ) -> Vec<LateSkip> {
        let mut added = Vec::new();
        for (path, reason) in failed {
            let path = path.display().to_string();
            if self.skipped_during_training.iter().any(|s| s.path == path)
                || added.iter().any(|s: &LateSkip| s.path == path)
            {
                continue;
            }
            added.push(LateSkip {
                path,
                reason: reason.clone(),
                step,
            });
        }
        self.skipped_during_training.extend(added.iter().cloned());
        added
    }
}
