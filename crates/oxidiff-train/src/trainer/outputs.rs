//! What follows a training step when it is due: the held-out evaluation, the checkpoint, the
//! sample grid, and the plots and report redrawn from the logs.

use std::path::PathBuf;

use super::{EvalDue, TrainEvent, TrainTask, Trainer};
use crate::error::TrainError;
use crate::eval::{EvalRecord, append_eval};

impl<T: TrainTask> Trainer<T> {
    /// What follows a step: held-out evaluation, checkpoint and sample grid when due (all at
    /// the run's last step), then the plots and report. The checkpoint comes before the grid
    /// and the plots, so an output that fails (a bad `sample.num`, a full disk) loses no
    /// training; such a failure is reported and the run goes on. Asked to stop before the
    /// run's end, it writes only the checkpoint: a scheduler's grace period after SIGTERM may
    /// not last an evaluation.
    pub(super) fn after_step(
        &mut self,
        last: bool,
        observer: &mut dyn FnMut(TrainEvent<'_>),
    ) -> Result<(), TrainError> {
        let step = self.state.step;
        let (sample_every, checkpoint_every) = (
            self.config.train.sample_every,
            self.config.train.checkpoint_every,
        );
        let stopping = self.stop_requested() && step < self.config.train.steps;
        let mut refresh = false;
        if !stopping && let Some(record) = self.evaluate_if_due()? {
            observer(TrainEvent::Evaluated(&record));
            refresh = true;
        }
        if step.is_multiple_of(checkpoint_every) || last {
            let path = self.save_checkpoint()?;
            observer(TrainEvent::Checkpoint(&path));
            refresh = true;
        }
        let grid_due =
            step.is_multiple_of(sample_every) || (last && step == self.config.train.steps);
        if grid_due && !stopping {
            match self
                .save_sample_grid()
                .and_then(|path| self.monitor.on_grid(step, &path).map(|()| path))
            {
                Ok(path) => observer(TrainEvent::SampleGrid(&path)),
                Err(error) => observer(TrainEvent::OutputFailed {
                    step,
                    what: "the sample grid",
                    error: &error,
                }),
            }
            refresh = true;
        }
        if refresh {
            self.metrics.flush()?;
            if let Err(error) = self.monitor.refresh(&self.config, step) {
                observer(TrainEvent::OutputFailed {
                    step,
                    what: "the plots and report",
                    error: &error,
                });
            }
        }
        Ok(())
    }

    /// Samples a grid from the EMA (or online) weights into `samples/step-NNNNNNN.png`.
    pub fn save_sample_grid(&self) -> Result<PathBuf, TrainError> {
        let dir = self.run_dir.samples_dir();
        std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
        let path = self.run_dir.sample_grid(self.state.step);
        let model = self.state.sampling_model(self.config.sample.use_ema);
        let device = self.device.clone().without_autodiff();
        let shown = if self.data.validation.is_empty() {
            &self.data.dataset
        } else {
            &self.data.validation
        };
        self.task.write_samples(
            model.as_ref(),
            &path,
            shown,
            self.data.standardization.as_ref(),
            &device,
        )?;
        Ok(path)
    }

    /// The held-out evaluations due at this step (`train.eval_every`, `train.bpd_every`, and
    /// both at the run's last step), with the weights samples come from; appended to
    /// `eval.jsonl`.
    pub fn evaluate_if_due(&mut self) -> Result<Option<EvalRecord>, TrainError> {
        let steps = self.config.train.steps;
        let step = self.state.step;
        let every = self.config.eval_intervals(!self.data.validation.is_empty());
        let due = |every: u64| every > 0 && (step.is_multiple_of(every) || step == steps);
        let due = EvalDue {
            frequent: due(every.band_mse),
            likelihood: due(every.bpd),
        };
        if !(due.frequent || due.likelihood) || self.data.validation.is_empty() {
            return Ok(None);
        }
        let device = self.device.clone().without_autodiff();
        let model = self.state.sampling_model(self.config.sample.use_ema);
        let record =
            self.task
                .evaluate(model.as_ref(), &self.data.validation, due, step, &device)?;
        append_eval(&self.run_dir.eval_log(), &record)?;
        self.monitor.on_eval(&record)?;
        Ok(Some(record))
    }

    /// Writes a checkpoint of the current state, which becomes the state a divergence rolls
    /// back to.
    pub fn save_checkpoint(&mut self) -> Result<PathBuf, TrainError> {
        self.metrics.flush()?;
        let path = self.state.save(&self.config, &self.run_dir)?;
        if self.last_good.is_some() {
            self.last_good = Some(self.state.clone());
        }
        Ok(path)
    }
}
