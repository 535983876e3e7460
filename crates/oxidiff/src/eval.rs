//! `oxidiff eval`: prints what `oxidiff_train::eval::evaluate_checkpoint` measures.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use oxidiff_train::eval::{
    AutoencoderEvalResult, DistanceOptions, EditOptions, EvalOptions, EvalPhase, EvalResult,
    ImageSelection, NllOptions, PromptFollowing, PromptFollowingOptions, evaluate_autoencoder,
    evaluate_checkpoint, is_autoencoder,
};

use oxidiff_diffusion::sample::RePaintOptions;
use oxidiff_train::InpaintMethod;
use oxidiff_train::{RunConfig, SampleConfig};

use crate::device::DeviceArg;
use crate::enum_arg::{EvalSplitArg, SamplerArg, SpacingArg};
use crate::signals::Interrupt;

/// `oxidiff eval`'s arguments.
#[derive(clap::Args)]
pub struct EvalArgs {
    /// A checkpoint directory, or a run directory (its newest checkpoint).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Which images to evaluate on.
    #[arg(long, value_enum, default_value = "val")]
    pub split: EvalSplitArg,
    /// A test source for --split test: a folder, `.npy` or IDX file.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Override a data key of the evaluated source, e.g. `--set data.subset=test`.
    #[arg(long = "set", value_name = "data.KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Evaluate N images of the split, the same number from every class where the counts allow
    /// (seeded by the run's seed).
    #[arg(long)]
    pub images: Option<usize>,
    /// Bits/dim stride k: KL terms t = 1..k one by one, then one per block of k counted k times
    /// (T/k + k network calls per image); 1 = the exact bound (T calls).
    #[arg(long, default_value_t = 20)]
    pub stride: usize,
    /// Skip bits/dim.
    #[arg(long)]
    pub no_bpd: bool,
    /// Also compute FD-oxidiff and precision/recall against generated samples (for an
    /// autoencoder: of its reconstructions against the originals).
    #[arg(long)]
    pub fd: bool,
    /// Samples generated for --fd.
    #[arg(long, default_value_t = 500)]
    pub fd_samples: usize,
    /// Sampler for --fd (default: the run's `sample.sampler`).
    #[arg(long, value_enum)]
    pub sampler: Option<SamplerArg>,
    /// Sampling steps for --fd (default: the run's `sample.steps`).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Karras σ schedule for --fd with euler, heun and dpmpp-*.
    #[arg(long)]
    pub karras: bool,
    /// Timestep spacing for --fd and --inpaint (default: the run's
    /// `diffusion.timestep_spacing`; denoising walks down from its starting t whatever it is).
    #[arg(long, value_enum)]
    pub spacing: Option<SpacingArg>,
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Seeds the evaluation noise and the generated samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Inpaint the centre square (half of each side) of every evaluated image, with known-region
    /// replacement and with RePaint (--jump-length, --resample), and score both: PSNR over the
    /// square, and FD-oxidiff of the filled images against the originals.
    #[arg(long)]
    pub inpaint: bool,
    #[arg(long, default_value_t = 10, requires = "inpaint")]
    pub jump_length: usize,
    #[arg(long, default_value_t = 10, requires = "inpaint")]
    pub resample: usize,
    /// Add Gaussian noise of each σ (8-bit levels, comma-separated) to every evaluated image,
    /// denoise from the matching t, and report the PSNR before and after.
    #[arg(long, value_delimiter = ',', value_name = "SIGMA,...")]
    pub denoise_sigmas: Vec<f64>,
    /// Sampling steps for --inpaint and --denoise-sigmas.
    #[arg(long, default_value_t = 50)]
    pub edit_steps: usize,
    /// A text-to-image model with class labels: draw one sample per evaluated image, prompted
    /// with one of its captions, and report how often the FD-oxidiff classifier puts it in
    /// that image's class, against the rate for random prompts.
    #[arg(long)]
    pub prompt_following: bool,
    /// Classifier-free guidance scale of --prompt-following [default: the run's
    /// sample.guidance_scale].
    #[arg(
        long,
        value_name = "W",
        requires = "prompt_following",
        allow_negative_numbers = true
    )]
    pub guidance: Option<f64>,
    /// Evaluate the online weights instead of the EMA weights.
    #[arg(long)]
    pub no_ema: bool,
    /// Also write the numbers as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
}

pub fn eval_command(args: EvalArgs) -> Result<()> {
    if args.stride == 0 || args.batch == 0 {
        bail!("--stride and --batch must be at least 1");
    }
    if args.fd && args.fd_samples < 2 {
        bail!("--fd-samples must be at least 2");
    }
    if let Some(bad) = args
        .overrides
        .iter()
        .find(|o| !o.trim_start().starts_with("data."))
    {
        bail!("--set {bad}: only data.* keys choose what is evaluated");
    }
    let mut data_overrides = match &args.data {
        Some(path) => crate::data::source_overrides(path)?,
        None => Vec::new(),
    };
    data_overrides.extend(args.overrides.iter().cloned());
    let options = EvalOptions {
        images: ImageSelection {
            split: args.split.into(),
            data_overrides,
            max_images: args.images,
        },
        batch_size: args.batch,
        seed: args.seed,
        use_ema: !args.no_ema,
        timestep_spacing: args.spacing.map(Into::into),
        nll: (!args.no_bpd).then_some(NllOptions {
            stride: args.stride,
        }),
        distance: DistanceOptions {
            samples: args.fd.then_some(args.fd_samples),
            sample: sampling(&args)?,
        },
        editing: EditOptions {
            inpaint: if args.inpaint {
                vec![
                    InpaintMethod::Replacement,
                    InpaintMethod::RePaint(RePaintOptions {
                        jump_length: args.jump_length,
                        resample_count: args.resample,
                    }),
                ]
            } else {
                Vec::new()
            },
            denoise_sigmas: args.denoise_sigmas.clone(),
            steps: args.edit_steps,
        },
        prompts: args.prompt_following.then_some(PromptFollowingOptions {
            guidance: args.guidance,
        }),
    };
    let interrupt = Interrupt::install("finishing the measurement under way; nothing is written")?;
    let device = args.device.device()?;
    let bar = indicatif::ProgressBar::new(0);
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut progress = |phase: EvalPhase, done: usize, total: usize| {
        bar.set_message(match phase {
            EvalPhase::Nll => "bits/dim",
            EvalPhase::FeatureNet => "training the FD-oxidiff feature network",
            EvalPhase::Sampling => "sampling for FD-oxidiff",
            EvalPhase::Inpainting => "inpainting",
            EvalPhase::Denoising => "denoising",
            EvalPhase::Prompting => "sampling from the images' captions",
        });
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let evaluating = || format!("evaluating {}", args.checkpoint.display());
    let json = if is_autoencoder(&args.checkpoint)? {
        let result = evaluate_autoencoder(&args.checkpoint, &options, &device, &mut progress)
            .with_context(evaluating)?;
        bar.finish_and_clear();
        interrupted(&interrupt)?;
        print_autoencoder_result(&result, !args.no_ema);
        serde_json::to_string_pretty(&result)
    } else {
        let result = evaluate_checkpoint(&args.checkpoint, &options, &device, &mut progress)
            .with_context(evaluating)?;
        bar.finish_and_clear();
        interrupted(&interrupt)?;
        print_result(&result, !args.no_ema);
        serde_json::to_string_pretty(&result)
    };
    if let Some(path) = &args.json {
        let text = json.context("serialising the result")?;
        oxidiff_train::write_atomic(path, text.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Stops with the signal's exit code when one came while measuring (nothing is written).
fn interrupted(interrupt: &Interrupt) -> Result<()> {
    if interrupt.requested() {
        eprintln!("{}: nothing written", interrupt.interrupted());
        return Err(interrupt.interrupted().into());
    }
    Ok(())
}

fn print_autoencoder_result(r: &AutoencoderEvalResult, ema: bool) {
    println!(
        "checkpoint: {} (autoencoder, step {}, {} weights)",
        r.checkpoint.display(),
        r.step,
        if ema { "EMA" } else { "online" }
    );
    let s = &r.scores;
    println!("images: {} from {}", s.images, r.source);
    println!(
        "reconstruction (posterior mean): PSNR {:.2} dB, SSIM {:.4}; KL {:.5} per latent element",
        s.psnr, s.ssim, s.kl_per_element
    );
    let channels: Vec<String> = s
        .latent_mean
        .iter()
        .zip(&s.latent_std)
        .map(|(m, sd)| format!("{m:.3} ± {sd:.3}"))
        .collect();
    println!("latent channels (mean ± std): {}", channels.join(", "));
    if let Some(d) = &r.distance {
        println!(
            "FD-oxidiff of the reconstructions {:.3} (Fréchet distance of this project's own \
             feature network; not FID); precision {:.3}, recall {:.3}",
            d.fd_oxidiff, d.precision, d.recall
        );
    }
}

/// The run's `[sample]` settings with `--sampler`, `--steps` and `--karras` applied, when any
/// is given.
fn sampling(args: &EvalArgs) -> Result<Option<SampleConfig>> {
    if args.sampler.is_none() && args.steps.is_none() && !args.karras {
        return Ok(None);
    }
    let dir = oxidiff_train::resolve_checkpoint(&args.checkpoint)?;
    let config = RunConfig::load(&dir.join(oxidiff_train::CONFIG_FILE), &[])?;
    let mut sample = config.sample;
    if let Some(sampler) = args.sampler {
        sample.sampler = sampler.into();
    }
    if let Some(steps) = args.steps {
        let max = config.diffusion.num_train_timesteps;
        if steps == 0 || steps > max {
            bail!("--steps {steps}: must be between 1 and the model's {max} training timesteps");
        }
        sample.steps = steps;
    }
    sample.karras_sigmas |= args.karras;
    Ok(Some(sample))
}

fn print_result(r: &EvalResult, ema: bool) {
    println!(
        "checkpoint: {} (step {}, {} weights)",
        r.checkpoint.display(),
        r.step,
        if ema { "EMA" } else { "online" }
    );
    println!("images: {} from {}", r.images, r.source);
    if let Some(n) = &r.nll {
        let how = if n.stride == 1 {
            "every term of the bound".to_string()
        } else {
            format!(
                "KL terms t = 1..{0} one by one, then one per block of {0}, counted {0} times",
                n.stride
            )
        };
        println!(
            "NLL bound: {:.4} ± {:.4} bits/dim (mean ± standard error over {} images; {how})",
            n.bpd, n.bpd_stderr, n.images
        );
        println!(
            "  prior L_T {:.5} + decoder L_0 {:.4} + diffusion Σ L_t-1 {:.4}",
            n.prior, n.decoder, n.diffusion
        );
    }
    let bands: Vec<String> = r
        .band_mse
        .bands
        .iter()
        .zip(&r.band_mse.mse)
        .map(|((lo, hi), mse)| format!("t∈[{lo},{hi}) {mse:.4}"))
        .collect();
    println!("held-out ε-MSE by band: {}", bands.join("  "));
    if let Some(d) = &r.distance {
        println!(
            "FD-oxidiff {:.3} (Fréchet distance of this project's own feature network; not FID); precision {:.3}, recall {:.3} ({} generated with {} vs {} real)",
            d.fd_oxidiff, d.precision, d.recall, d.generated, r.sampler, d.real
        );
        if let Some(accuracy) = d.feature_accuracy {
            println!(
                "  feature network: a classifier trained on the run's training split, {:.1}% right on the evaluated images",
                100.0 * accuracy
            );
        }
    }
    for score in &r.inpaint {
        println!(
            "inpainting ({}, {} steps, centre square of {} images): PSNR {:.2} dB in the square{}",
            score.method,
            score.steps,
            score.images,
            score.psnr_masked,
            score.fd_oxidiff.map_or(String::new(), |fd| format!(
                ", FD-oxidiff {fd:.2} vs the originals"
            ))
        );
    }
    for score in &r.denoise {
        println!(
            "denoising σ = {} (8-bit levels, {} steps, {} images): PSNR {:.2} dB noisy → {:.2} dB denoised",
            score.sigma, score.steps, score.images, score.psnr_noisy, score.psnr_denoised
        );
    }
    if let Some(p) = &r.prompt_following {
        print_prompt_following(p, &r.sampler);
    }
}

fn print_prompt_following(p: &PromptFollowing, sampler: &str) {
    println!(
        "prompt following (guidance {}, {sampler}; {} samples, each prompted with a caption of \
         one evaluated image): {:.1}% in the prompt's class, against {:.1}% for random prompts",
        p.guidance,
        p.samples,
        100.0 * p.rate,
        100.0 * p.chance
    );
    if let Some(rate) = p.unseen_rate {
        println!(
            "  prompts in no training caption: {} of them, {:.1}% in the prompt's class",
            p.unseen_prompts,
            100.0 * rate
        );
    }
    println!(
        "  the classifier (FD-oxidiff's, trained on the run's training split) is {:.1}% right on \
         the real evaluated images",
        100.0 * p.classifier_accuracy
    );
    let classes: Vec<String> = p
        .per_class
        .iter()
        .map(|c| format!("{} {}/{}", c.class, c.right, c.samples))
        .collect();
    println!("  per class: {}", classes.join(", "));
}
