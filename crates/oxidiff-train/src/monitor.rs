//! What a run shows while it trains, besides the progress line: TensorBoard event files
//! (`DIR/tensorboard/`), PNG plots (`DIR/plots/`) and one self-contained page `DIR/report.html`,
//! all redrawn from the run directory's own logs so that they survive a resume unchanged.

use std::path::{Path, PathBuf};

use crate::TrainError;
use crate::config::RunConfig;
use crate::eval::{EvalRecord, read_eval};
use crate::metrics::{StepStats, read_metrics, read_rollbacks};
use crate::plots::{PlotSpec, Series, YScale, draw_line_plot, smoothed};
use crate::report_html::{ReportPage, write_report};
use crate::run_dir::{RunDir, truncate_log};
use crate::tensorboard::TensorBoardWriter;

/// Plots keep at most this many points per series: a browser or PNG cannot show more anyway.
const MAX_POINTS: usize = 2000;

/// Weight on the past of the training loss's smoothed line (TensorBoard's slider, its default
/// 0.6 is too little for a loss this noisy).
const LOSS_SMOOTHING: f64 = 0.98;

/// The TensorBoard writer of a run and the redrawing of its plots and report.
pub struct Monitor {
    run_dir: RunDir,
    tensorboard: TensorBoardWriter,
}

impl Monitor {
    /// Opens a new TensorBoard event file in `DIR/tensorboard` (TensorBoard merges the files of
    /// a resumed run) and drops `eval.jsonl` records past `step` (an interrupted run's evaluations
    /// after its last checkpoint), like the metrics log.
    pub fn open(run_dir: &RunDir, step: u64) -> Result<Self, TrainError> {
        truncate_log(&run_dir.eval_log(), step)?;
        let dir = run_dir.tensorboard_dir();
        let mut tensorboard =
            TensorBoardWriter::create(&dir).map_err(|e| TrainError::io(&dir, e))?;
        if step > 0 {
            tensorboard
                .session_start(step + 1)
                .map_err(|e| TrainError::io(tensorboard.path(), e))?;
        }
        Ok(Self {
            run_dir: run_dir.clone(),
            tensorboard,
        })
    }

    fn tb_error(&self, e: std::io::Error) -> TrainError {
        TrainError::io(self.tensorboard.path(), e)
    }

    /// Training scalars of one step.
    pub fn on_step(&mut self, stats: &StepStats) -> Result<(), TrainError> {
        for (tag, value) in [
            ("train/loss", stats.loss),
            ("train/lr", stats.lr),
            ("train/grad_norm", stats.grad_norm),
            ("train/images_per_sec", stats.images_per_sec),
        ] {
            self.tensorboard
                .scalar(tag, stats.step, value)
                .map_err(|e| self.tb_error(e))?;
        }
        Ok(())
    }

    /// Held-out scalars of one evaluation.
    pub fn on_eval(&mut self, record: &EvalRecord) -> Result<(), TrainError> {
        let mut scalars = Vec::new();
        if let Some(bands) = &record.band_mse {
            for ((lo, hi), mse) in bands.bands.iter().zip(&bands.mse) {
                scalars.push((format!("val/eps_mse_t{lo}-{hi}"), *mse));
            }
        }
        if let Some(nll) = &record.nll {
            scalars.push(("val/bits_per_dim".into(), nll.bpd));
        }
        if let Some(d) = &record.distance {
            scalars.push(("val/fd_oxidiff".into(), d.fd_oxidiff));
        }
        if let Some(r) = &record.reconstruction {
            scalars.push(("val/reconstruction_psnr".into(), r.psnr));
            scalars.push(("val/reconstruction_ssim".into(), r.ssim));
            scalars.push(("val/kl_per_latent_element".into(), r.kl_per_element));
        }
        for (tag, value) in scalars {
            self.tensorboard
                .scalar(&tag, record.step, value)
                .map_err(|e| self.tb_error(e))?;
        }
        self.tensorboard.flush().map_err(|e| self.tb_error(e))
    }

    /// A sample grid PNG as a TensorBoard image.
    pub fn on_grid(&mut self, step: u64, path: &Path) -> Result<(), TrainError> {
        let png = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
        let header = oxidiff_data::PngHeader::parse(&png).ok_or_else(|| TrainError::Image {
            path: path.to_path_buf(),
            message: "not a PNG this program wrote".into(),
        })?;
        self.tensorboard
            .image(
                "samples",
                step,
                &png,
                header.width,
                header.height,
                header.channels,
            )
            .map_err(|e| self.tb_error(e))?;
        self.tensorboard.flush().map_err(|e| self.tb_error(e))
    }

    /// Redraws the plots and `report.html` from the logs, up to `step`.
    ///
    /// # Errors
    /// A log that cannot be read or a plot or page that cannot be written.
    pub fn refresh(&mut self, config: &RunConfig, step: u64) -> Result<PathBuf, TrainError> {
        self.tensorboard.flush().map_err(|e| self.tb_error(e))?;
        let metrics_path = self.run_dir.metrics();
        let metrics = if metrics_path.is_file() {
            read_metrics(&metrics_path)?
        } else {
            Vec::new()
        };
        let evals = read_eval(&self.run_dir.eval_log(), Some(step))?;
        let plots = self.draw_plots(&metrics, &evals)?;
        let grids = sample_grids(&self.run_dir.samples_dir());
        let summary = vec![
            ("run".to_string(), self.run_dir.path().display().to_string()),
            (
                "step".to_string(),
                format!("{step} of {}", config.train.steps),
            ),
            ("data".to_string(), config.data.describe_source()),
            (
                "objective".to_string(),
                format!(
                    "{:?} loss, {:?} variance, {:?} prediction, T = {}",
                    config.diffusion.loss,
                    config.diffusion.variance_type,
                    config.diffusion.prediction,
                    config.diffusion.num_train_timesteps
                ),
            ),
        ];
        let rollbacks = if metrics_path.is_file() {
            read_rollbacks(&metrics_path)?
        } else {
            Vec::new()
        };
        let mut summary = summary;
        if !rollbacks.is_empty() {
            let lines: Vec<String> = rollbacks
                .iter()
                .map(|r| {
                    format!(
                        "step {} ({} {}): back to step {}, learning rate × {}",
                        r.rollback.diverged_at,
                        r.rollback.quantity,
                        r.rollback.value,
                        r.step,
                        r.rollback.lr_scale
                    )
                })
                .collect();
            summary.push(("rollbacks".to_string(), lines.join("; ")));
        }
        let metrics_table = latest_numbers(&metrics, &evals);
        let data_report = std::fs::read_to_string(self.run_dir.data_report())
            .unwrap_or_else(|_| "(no data_report.json)".into());
        let config_toml = config.to_toml();
        let path = self.run_dir.report_page();
        write_report(
            &path,
            &ReportPage {
                title: "oxidiff training report",
                summary: &summary,
                plots: &plots,
                grids: &grids,
                metrics: &metrics_table,
                config_toml: &config_toml,
                data_report_json: &data_report,
            },
        )
        .map_err(|e| TrainError::io(&path, e))?;
        Ok(path)
    }

    fn draw_plots(
        &self,
        metrics: &[StepStats],
        evals: &[EvalRecord],
    ) -> Result<Vec<(String, PathBuf)>, TrainError> {
        let dir = self.run_dir.plots_dir();
        std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
        let series = |name: &str, points: Vec<(f64, f64)>| Series {
            name: name.to_string(),
            points: thin(points),
            faint: false,
        };
        let mut plots = Vec::new();
        let mut draw = |file: &str, caption: &str, spec: PlotSpec<'_>| -> Result<(), TrainError> {
            let path = dir.join(file);
            draw_line_plot(&path, &spec, 720, 420).map_err(|e| TrainError::Image {
                path: path.clone(),
                message: e.to_string(),
            })?;
            plots.push((caption.to_string(), path));
            Ok(())
        };
        // The per-step loss is dominated by the noise of t and ε: draw it pale, under its
        // smoothed line.
        let raw: Vec<(f64, f64)> = metrics.iter().map(|m| (m.step as f64, m.loss)).collect();
        let loss = [
            Series {
                faint: true,
                ..series("training loss, per step", raw.clone())
            },
            series(
                &format!("smoothed (EMA {LOSS_SMOOTHING})"),
                smoothed(&raw, LOSS_SMOOTHING),
            ),
        ];
        draw(
            "loss.png",
            "Training loss per step",
            PlotSpec {
                title: "training loss",
                x_label: "step",
                y_label: "loss",
                y_scale: YScale::Log,
                series: &loss,
            },
        )?;
        let lr = [series(
            "learning rate",
            metrics.iter().map(|m| (m.step as f64, m.lr)).collect(),
        )];
        draw(
            "lr.png",
            "Learning rate per step",
            PlotSpec {
                title: "learning rate",
                x_label: "step",
                y_label: "lr",
                y_scale: YScale::Linear,
                series: &lr,
            },
        )?;
        let band_records: Vec<_> = evals
            .iter()
            .filter_map(|r| r.band_mse.as_ref().map(|b| (r.step, b)))
            .collect();
        if let Some((_, first)) = band_records.first() {
            let bands: Vec<Series> = first
                .bands
                .iter()
                .enumerate()
                .map(|(k, (lo, hi))| {
                    series(
                        &format!("t in [{lo}, {hi})"),
                        band_records
                            .iter()
                            .filter_map(|(step, b)| b.mse.get(k).map(|&v| (*step as f64, v)))
                            .collect(),
                    )
                })
                .collect();
            draw(
                "val_mse.png",
                "Held-out ε-MSE per band of t (fixed noise)",
                PlotSpec {
                    title: "held-out ε-MSE by timestep band",
                    x_label: "step",
                    y_label: "ε-MSE",
                    y_scale: YScale::Log,
                    series: &bands,
                },
            )?;
        }
        let bpd: Vec<(f64, f64)> = evals
            .iter()
            .filter_map(|r| r.nll.as_ref().map(|n| (r.step as f64, n.bpd)))
            .collect();
        if !bpd.is_empty() {
            let bpd = [series("held-out NLL bound", bpd)];
            draw(
                "bits_per_dim.png",
                "Held-out negative log-likelihood bound, bits/dim",
                PlotSpec {
                    title: "held-out bits/dim",
                    x_label: "step",
                    y_label: "bits/dim",
                    y_scale: YScale::Linear,
                    series: &bpd,
                },
            )?;
        }
        Ok(plots)
    }
}

/// Every `samples/step-NNNNNNN.png`, oldest first.
fn sample_grids(dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut grids: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name
                .strip_prefix("step-")?
                .strip_suffix(".png")?
                .parse()
                .ok()?;
            Some((step, e.path()))
        })
        .collect();
    grids.sort();
    grids
}

/// At most [`MAX_POINTS`] evenly chosen points, the last one always kept.
fn thin(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points;
    }
    let every = points.len().div_ceil(MAX_POINTS);
    let last = points.len() - 1;
    points
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0 || *i == last)
        .map(|(_, p)| p)
        .collect()
}

/// The report's table: the last training step and the latest of each evaluation.
fn latest_numbers(metrics: &[StepStats], evals: &[EvalRecord]) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    if let Some(m) = metrics.last() {
        rows.push((
            format!("training loss (step {})", m.step),
            format!("{:.5}", m.loss),
        ));
        rows.push(("images/s".into(), format!("{:.1}", m.images_per_sec)));
    }
    if let Some((step, b)) = evals
        .iter()
        .rev()
        .find_map(|r| r.band_mse.as_ref().map(|b| (r.step, b)))
    {
        for ((lo, hi), mse) in b.bands.iter().zip(&b.mse) {
            rows.push((
                format!("held-out ε-MSE, t in [{lo}, {hi}) (step {step})"),
                format!("{mse:.5}"),
            ));
        }
    }
    if let Some((step, n)) = evals
        .iter()
        .rev()
        .find_map(|r| r.nll.as_ref().map(|n| (r.step, n)))
    {
        rows.push((
            format!("held-out bits/dim, stride {} (step {step})", n.stride),
            format!("{:.4} ± {:.4}", n.bpd, n.bpd_stderr),
        ));
    }
    if let Some((step, r)) = evals
        .iter()
        .rev()
        .find_map(|r| r.reconstruction.as_ref().map(|x| (r.step, x)))
    {
        rows.push((
            format!("held-out reconstruction PSNR (step {step})"),
            format!("{:.2} dB", r.psnr),
        ));
        rows.push((
            format!("held-out reconstruction SSIM (step {step})"),
            format!("{:.4}", r.ssim),
        ));
        rows.push((
            format!("KL per latent element (step {step})"),
            format!("{:.5}", r.kl_per_element),
        ));
        let channels: Vec<String> = r
            .latent_mean
            .iter()
            .zip(&r.latent_std)
            .map(|(m, s)| format!("{m:.3} ± {s:.3}"))
            .collect();
        rows.push((
            format!("latent channels, mean ± std (step {step})"),
            channels.join(", "),
        ));
    }
    if let Some((step, d)) = evals
        .iter()
        .rev()
        .find_map(|r| r.distance.as_ref().map(|d| (r.step, d)))
    {
        rows.push((
            format!("FD-oxidiff, not FID (step {step})"),
            format!(
                "{:.3} (precision {:.3}, recall {:.3})",
                d.fd_oxidiff, d.precision, d.recall
            ),
        ));
    }
    rows
}
