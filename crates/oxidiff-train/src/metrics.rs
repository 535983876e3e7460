//! `metrics.jsonl`: one JSON object per optimiser step.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::TrainError;

/// What one optimiser step measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// Optimiser steps completed, this one included.
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    /// Global L2 norm of the gradients before clipping.
    pub grad_norm: f64,
    /// Training images per second over this step (forward, backward and update).
    pub images_per_sec: f64,
}

/// Appends step records to `metrics.jsonl`.
pub struct MetricsLog {
    path: PathBuf,
    writer: BufWriter<File>,
}

impl MetricsLog {
    /// Opens the log for appending, first dropping records of steps after `step` (written by an
    /// interrupted run after its last checkpoint, or by a failed earlier start), so the log reads
    /// like one uninterrupted run.
    pub fn open(path: &Path, step: u64) -> Result<Self, TrainError> {
        if path.is_file() {
            let file = File::open(path).map_err(|e| TrainError::io(path, e))?;
            let kept: Vec<String> = BufReader::new(file)
                .lines()
                .map_while(Result::ok)
                .filter(|line| {
                    serde_json::from_str::<StepStats>(line).is_ok_and(|s| s.step <= step)
                })
                .collect();
            let mut text = kept.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            crate::run_dir::write_atomic(path, text.as_bytes())?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| TrainError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: BufWriter::new(file),
        })
    }

    pub fn append(&mut self, stats: &StepStats) -> Result<(), TrainError> {
        let line = serde_json::to_string(stats).expect("StepStats serialises");
        writeln!(self.writer, "{line}").map_err(|e| TrainError::io(&self.path, e))
    }

    pub fn flush(&mut self) -> Result<(), TrainError> {
        self.writer
            .flush()
            .map_err(|e| TrainError::io(&self.path, e))
    }
}

/// Reads every record of a `metrics.jsonl`.
pub fn read_metrics(path: &Path) -> Result<Vec<StepStats>, TrainError> {
    let file = File::open(path).map_err(|e| TrainError::io(path, e))?;
    BufReader::new(file)
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let line = line.map_err(|e| TrainError::io(path, e))?;
            serde_json::from_str(&line).map_err(|e| TrainError::RunFile {
                path: path.to_path_buf(),
                message: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}
