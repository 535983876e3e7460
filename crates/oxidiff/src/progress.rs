//! Training progress: a bar (loss, it/s, ETA) on a terminal, plain log lines otherwise.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use oxidiff_train::{StepStats, TrainEvent};

pub struct Progress {
    bar: Option<ProgressBar>,
    log_every: u64,
    started: Instant,
    start_step: u64,
    total: u64,
    loss_window: Vec<f64>,
}

impl Progress {
    pub fn new(log_every: u64) -> Self {
        Self {
            bar: None,
            log_every,
            started: Instant::now(),
            start_step: 0,
            total: 0,
            loss_window: Vec::new(),
        }
    }

    fn say(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub fn on_event(&mut self, event: TrainEvent<'_>) {
        match event {
            TrainEvent::Started {
                dataset,
                validation,
                report,
                parameters,
                start_step,
                total_steps,
            } => {
                self.start_step = start_step;
                self.total = total_steps;
                self.started = Instant::now();
                eprintln!(
                    "data: {} images: {} for training ({}×{}×{}){}, {validation} held out, {} skipped; model: {parameters} parameters; steps {start_step} → {total_steps}",
                    dataset.len() + validation,
                    dataset.len(),
                    dataset.channels,
                    dataset.size,
                    dataset.size,
                    if dataset.cached().is_some() {
                        ""
                    } else {
                        " (streamed from their files)"
                    },
                    dataset.skipped.len()
                );
                for (path, reason) in dataset.skipped.iter().take(10) {
                    eprintln!("  skipped {}: {reason}", path.display());
                }
                if !dataset.skipped.is_empty() {
                    eprintln!("  every skipped input and its reason: {}", report.display());
                }
                if std::io::stderr().is_terminal() {
                    let bar = ProgressBar::new(total_steps).with_position(start_step);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{bar:30} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]",
                        )
                        .expect("static template"),
                    );
                    self.bar = Some(bar);
                }
            }
            TrainEvent::Step(stats) => self.on_step(stats),
            TrainEvent::Skipped(skip) => self.say(format!(
                "skipped at step {}: {}: {} (added to data_report.json)",
                skip.step, skip.path, skip.reason
            )),
            TrainEvent::Evaluated(record) => self.say(describe_eval(record)),
            TrainEvent::SampleGrid(path) => self.say(format!("samples: {}", path.display())),
            TrainEvent::Checkpoint(path) => self.say(format!("checkpoint: {}", path.display())),
            TrainEvent::RolledBack(record) => self.say(format!(
                "step {}: the {} is {}; rolled back to step {} with the learning rate × {} \
                 (rollback {} in a row)",
                record.rollback.diverged_at,
                record.rollback.quantity,
                record.rollback.value,
                record.step,
                record.rollback.lr_scale,
                record.rollback.in_a_row
            )),
            TrainEvent::OutputFailed { step, what, error } => self.say(format!(
                "warning: step {step}: {what} was not written ({error}); training goes on"
            )),
        }
    }

    fn on_step(&mut self, stats: &StepStats) {
        self.loss_window.push(stats.loss);
        let done = stats.step - self.start_step;
        let it_per_s = done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        if let Some(bar) = &self.bar {
            bar.set_position(stats.step);
            bar.set_message(format!("loss {:.4} | {it_per_s:.2} it/s", stats.loss));
        }
        if stats.step.is_multiple_of(self.log_every) || stats.step == self.total {
            let mean = self.loss_window.iter().sum::<f64>() / self.loss_window.len() as f64;
            self.loss_window.clear();
            if self.bar.is_none() {
                let eta = (self.total - stats.step) as f64 / it_per_s.max(1e-9);
                eprintln!(
                    "step {}/{} loss {mean:.4} lr {:.2e} grad-norm {:.3} {:.1} img/s {it_per_s:.2} it/s eta {eta:.0}s",
                    stats.step, self.total, stats.lr, stats.grad_norm, stats.images_per_sec
                );
            }
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// One line for an in-training evaluation.
fn describe_eval(record: &oxidiff_train::eval::EvalRecord) -> String {
    let mut parts = vec![format!("eval at step {}:", record.step)];
    if let Some(n) = &record.nll {
        parts.push(format!(
            "held-out {:.4} ± {:.4} bits/dim (stride {}, {} images);",
            n.bpd, n.bpd_stderr, n.stride, n.images
        ));
    }
    if let Some(r) = &record.reconstruction {
        parts.push(format!(
            "held-out reconstruction PSNR {:.2} dB, SSIM {:.4}, KL {:.4} per latent element ({} \
             images);",
            r.psnr, r.ssim, r.kl_per_element, r.images
        ));
    }
    if let Some(b) = &record.band_mse {
        let bands: Vec<String> = b
            .bands
            .iter()
            .zip(&b.mse)
            .map(|((lo, hi), m)| format!("[{lo},{hi}) {m:.4}"))
            .collect();
        parts.push(format!("ε-MSE by t band {}", bands.join(" ")));
    }
    parts.join(" ")
}
