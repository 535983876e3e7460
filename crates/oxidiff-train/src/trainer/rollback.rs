//! What the loop does when a step diverges (its loss or gradient norm NaN or infinite): back
//! to the state of the last checkpoint, kept in memory, with half the learning rate, at most
//! `train.max_rollbacks` times in a row.

use super::{TrainTask, Trainer};
use crate::error::TrainError;
use crate::metrics::{MetricsLog, Rollback, RollbackRecord};
use crate::monitor::Monitor;

impl<T: TrainTask> Trainer<T> {
    /// `Err(Diverged)` for a NaN or infinite `value` at the step under way.
    pub(super) fn check_finite(
        &self,
        quantity: &'static str,
        value: f64,
    ) -> Result<(), TrainError> {
        if value.is_finite() {
            return Ok(());
        }
        let max = self.config.train.max_rollbacks;
        let note = match (max, self.state.divergence.in_a_row) {
            (0, _) => String::new(),
            (_, n) if n >= max => format!(
                "; rolled back {n} times in a row to the last checkpoint, halving the learning \
                 rate each time (train.max_rollbacks = {max})"
            ),
            _ => String::new(),
        };
        Err(TrainError::Diverged {
            step: self.state.step + 1,
            quantity,
            value,
            note,
        })
    }

    pub(super) fn rollbacks_left(&self) -> bool {
        self.last_good.is_some() && self.state.divergence.in_a_row < self.config.train.max_rollbacks
    }

    /// Returns to the last good state (the last checkpoint's) after step `diverged_at` gave a
    /// non-finite `quantity`, with half the learning rate from then on. The logs drop what the
    /// abandoned steps wrote and record the rollback; the data feed starts again at the
    /// restored step.
    pub(super) fn roll_back(
        &mut self,
        diverged_at: u64,
        quantity: &'static str,
        value: f64,
    ) -> Result<RollbackRecord, TrainError> {
        let mut divergence = self.state.divergence.clone();
        divergence.lr_scale *= 0.5;
        divergence.in_a_row += 1;
        divergence.diverged_at = Some(divergence.diverged_at.unwrap_or(0).max(diverged_at));
        self.state = self
            .last_good
            .clone()
            .expect("rollbacks_left checked the snapshot");
        self.state.divergence = divergence;
        let step = self.state.step;
        self.metrics.flush()?;
        self.metrics = MetricsLog::open(&self.run_dir.metrics(), step)?;
        self.monitor = Monitor::open(&self.run_dir, step)?;
        self.data.rewind();
        let record = RollbackRecord {
            step,
            rollback: Rollback {
                diverged_at,
                quantity: quantity.into(),
                value: value.to_string(),
                lr_scale: self.state.divergence.lr_scale,
                in_a_row: self.state.divergence.in_a_row,
            },
        };
        self.metrics.append_rollback(&record)?;
        Ok(record)
    }
}
