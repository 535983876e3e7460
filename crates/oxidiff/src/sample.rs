//! `oxidiff sample`: images from a trained model, as a grid or as one PNG each.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use oxidiff_diffusion::sample::{check_eta, heun_error_gain};
use oxidiff_diffusion::{ClassifierFreeGuidance, Denoiser};
use oxidiff_train::{
    LoadedModel, SampleConfig, SamplerKind, generate, load_for_sampling, save_image_grid,
};

use crate::device::DeviceArg;
use crate::enum_arg::{SamplerArg, SpacingArg};

/// Applies `--spacing` to a loaded model.
pub fn apply_spacing(loaded: &mut LoadedModel, spacing: Option<SpacingArg>) {
    if let Some(spacing) = spacing {
        loaded.set_timestep_spacing(spacing.into());
    }
}

/// Above this [`heun_error_gain`] Heun's samples were clearly worse or ruined in
/// docs/samplers.md (gains of 16 and more), below it as good as the other solvers' (5.7 and
/// less).
const HEUN_GAIN_WARNING: f64 = 10.0;

/// Heun's trapezoidal correction blows up on long steps, such as the first step of a cosine
/// schedule from its σ_max ≈ 2·10⁴ with `trailing` spacing; say so before sampling.
fn warn_if_heun_is_unstable(loaded: &LoadedModel, options: &SampleConfig) -> Result<()> {
    let gain = heun_error_gain(&loaded.diffusion, options.steps, &options.karras_options())?;
    if gain > HEUN_GAIN_WARNING {
        eprintln!(
            "warning: one Heun step of this σ schedule multiplies the denoiser's error by {gain:.0}; \
             expect poor samples (try --karras with 10 or more steps; docs/samplers.md)"
        );
    }
    Ok(())
}

/// `oxidiff sample`'s arguments.
#[derive(clap::Args)]
pub struct SampleArgs {
    /// A checkpoint directory, or a run directory (its newest checkpoint).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Sampler (default: the run's `sample.sampler`). Network calls for S steps: S, except heun
    /// 2S − 1.
    #[arg(long, value_enum)]
    pub sampler: Option<SamplerArg>,
    /// Sampling steps (default: the run's `sample.steps`; `ddpm` with S below T is the respaced
    /// ancestral chain, S = T the full one).
    #[arg(long)]
    pub steps: Option<usize>,
    /// DDIM η in [0, 1] (default: the run's `sample.eta`).
    #[arg(long)]
    pub eta: Option<f64>,
    /// Euler, Heun, DPM-Solver++: Karras et al.'s σ schedule (ρ = 7).
    #[arg(long)]
    pub karras: bool,
    /// Timestep spacing (default: the run's `diffusion.timestep_spacing`).
    #[arg(long, value_enum)]
    pub spacing: Option<SpacingArg>,
    /// Euler, Heun: S_churn, noise re-injected along the way (default: the run's `sample.s_churn`).
    #[arg(long)]
    pub s_churn: Option<f64>,
    /// Class-conditional models: draw images of class K (0-based, as in the run's
    /// data_report.json).
    #[arg(long, value_name = "K")]
    pub class: Option<usize>,
    /// Classifier-free guidance scale w with --class: ε(∅) + w·(ε(K) − ε(∅)); 1 is the plain
    /// conditional model, larger values trade diversity for class fidelity.
    #[arg(long, value_name = "W", requires = "class", default_value_t = 1.0)]
    pub guidance: f64,
    /// Number of images.
    #[arg(long, default_value_t = 64)]
    pub num: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sample from the online weights instead of the EMA weights.
    #[arg(long)]
    pub no_ema: bool,
    /// Output PNG grid.
    #[arg(long, required_unless_present = "out_dir", conflicts_with = "out_dir")]
    pub out: Option<PathBuf>,
    /// Output folder: one PNG per image (`sample-0000.png`, …).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
}

pub fn sample_command(args: SampleArgs) -> Result<()> {
    if args.num == 0 {
        bail!("--num must be at least 1");
    }
    let backend = args.device.device()?;
    let mut loaded = load_for_sampling(&args.checkpoint, !args.no_ema, &backend)?;
    apply_spacing(&mut loaded, args.spacing);
    let mut options = loaded.config.sample.clone();
    if let Some(sampler) = args.sampler {
        options.sampler = sampler.into();
    }
    let max = loaded.config.diffusion.num_train_timesteps;
    if let Some(s) = args.steps {
        if s == 0 || s > max {
            bail!("--steps {s}: must be between 1 and the model's {max} training timesteps");
        }
        options.steps = s;
    }
    if let Some(e) = args.eta {
        check_eta(e).map_err(|err| anyhow!("--{err}"))?;
        options.eta = e;
    }
    if let Some(c) = args.s_churn {
        if !(c.is_finite() && c >= 0.0) {
            bail!("--s-churn {c}: must be zero or positive");
        }
        options.s_churn = c;
    }
    options.karras_sigmas |= args.karras;
    if options.sampler == SamplerKind::Heun {
        warn_if_heun_is_unstable(&loaded, &options)?;
    }
    let unet = loaded.config.unet()?;
    let shape = [args.num, unet.in_channels, unet.image_size, unet.image_size];
    eprintln!(
        "sampling {} images from {} with {} ({} network calls per image)",
        args.num,
        loaded.checkpoint.display(),
        options.sampler.name(),
        options.sampler.network_calls(options.steps)
    );
    let bar = indicatif::ProgressBar::new(0);
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut progress = |i: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(i as u64);
    };
    let guided;
    let denoiser: &dyn Denoiser = match args.class {
        None => &loaded.model,
        Some(class) => {
            let Some(null_label) = loaded.model.null_label() else {
                bail!(
                    "--class {class}: {} is not class-conditional (model.num_classes is not set)",
                    loaded.checkpoint.display()
                );
            };
            if class >= null_label {
                bail!(
                    "--class {class}: the model knows classes 0..{}",
                    null_label - 1
                );
            }
            if !args.guidance.is_finite() {
                bail!("--guidance {}: must be a finite number", args.guidance);
            }
            guided = ClassifierFreeGuidance {
                model: &loaded.model,
                diffusion: &loaded.diffusion,
                class,
                null_label,
                scale: args.guidance,
            };
            &guided
        }
    };
    let images = generate(
        &denoiser,
        &loaded.diffusion,
        &options,
        shape,
        args.seed,
        &backend,
        &mut progress,
    )?;
    bar.finish_and_clear();
    if let Some(out) = &args.out {
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        save_image_grid(out, images, loaded.standardization.as_ref())?;
        eprintln!("wrote {}", out.display());
    } else if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for k in 0..args.num {
            let path = dir.join(format!("sample-{k:04}.png"));
            let one = images.clone().narrow(0, k, 1);
            oxidiff_train::save_image(&path, one, loaded.standardization.as_ref())?;
        }
        eprintln!("wrote {} images to {}", args.num, dir.display());
    }
    Ok(())
}
