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
