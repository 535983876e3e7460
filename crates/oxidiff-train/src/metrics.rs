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

/// A divergence the run rolled back from, logged in `metrics.jsonl` between the step rows:
/// `{"step": 40, "rollback": {"diverged_at": 57, "quantity": "loss", "value": "NaN", …}}`. Its
/// `step` is the step rolled back to, so the rows after it are those of the retried steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RollbackRecord {
    pub step: u64,
    pub rollback: Rollback,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rollback {
    /// The step whose loss or gradient norm was not finite.
    pub diverged_at: u64,
    /// "loss" or "gradient norm".
    pub quantity: String,
    /// Its value in words ("NaN", "inf"), which JSON numbers cannot hold.
    pub value: String,
    /// The learning-rate scale from here on (halved by each rollback).
    pub lr_scale: f64,
    /// Rollbacks since training last got past a diverged step.
    pub in_a_row: u32,
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
        crate::run_dir::truncate_log(path, step)?;
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

    pub fn append_rollback(&mut self, record: &RollbackRecord) -> Result<(), TrainError> {
        let line = serde_json::to_string(record).expect("RollbackRecord serialises");
        writeln!(self.writer, "{line}").map_err(|e| TrainError::io(&self.path, e))?;
        self.flush()
    }

    pub fn flush(&mut self) -> Result<(), TrainError> {
        self.writer
            .flush()
            .map_err(|e| TrainError::io(&self.path, e))
    }
}

/// Reads every step record of a `metrics.jsonl` (rollback rows: [`read_rollbacks`]).
pub fn read_metrics(path: &Path) -> Result<Vec<StepStats>, TrainError> {
    Ok(read_rows(path)?
        .into_iter()
        .filter_map(|row| match row {
            Row::Step(stats) => Some(stats),
            Row::Rollback(_) => None,
        })
        .collect())
}

/// The rollbacks a run made, from its `metrics.jsonl`.
pub fn read_rollbacks(path: &Path) -> Result<Vec<RollbackRecord>, TrainError> {
    Ok(read_rows(path)?
        .into_iter()
        .filter_map(|row| match row {
            Row::Rollback(record) => Some(record),
            Row::Step(_) => None,
        })
        .collect())
}

enum Row {
    Rollback(RollbackRecord),
    Step(StepStats),
}

impl Row {
    /// A row with a `rollback` key is a rollback, any other a step (whose error, if it is
    /// not one, names the missing or bad field).
    fn parse(line: &str) -> serde_json::Result<Self> {
        let value: serde_json::Value = serde_json::from_str(line)?;
        if value.get("rollback").is_some() {
            serde_json::from_value(value).map(Row::Rollback)
        } else {
            serde_json::from_value(value).map(Row::Step)
        }
    }
}

fn read_rows(path: &Path) -> Result<Vec<Row>, TrainError> {
    let file = File::open(path).map_err(|e| TrainError::io(path, e))?;
    BufReader::new(file)
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let line = line.map_err(|e| TrainError::io(path, e))?;
            Row::parse(&line).map_err(|e| TrainError::RunFile {
                path: path.to_path_buf(),
                message: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}
