//! `oxidiff sample`: images from a trained model, as a grid or as one PNG each.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use oxidiff_data::derive_seed;
use oxidiff_diffusion::sample::{check_eta, heun_error_gain};
use oxidiff_diffusion::{ClassifierFreeGuidance, Denoiser};
use oxidiff_train::{
    LoadedModel, Prompt, SampleConfig, SamplerKind, generate, load_for_sampling, save_image_grid,
};

use crate::device::DeviceArg;
use crate::enum_arg::{SamplerArg, SpacingArg};
use crate::signals::Interrupt;

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

/// How many images one `generate` call may draw: as many as fit in a quarter of the machine's
/// memory (the rest is the model, the other buffers and everything else running), at least 1.
fn chunk_size(loaded: &LoadedModel, num: usize) -> Result<usize> {
    let per_image = loaded.sampling_bytes_per_image()?;
    let Some(memory) = oxidiff_train::machine_memory() else {
        return Ok(num);
    };
    let fit = (memory as f64 / 4.0 / per_image).floor();
    Ok(if fit >= num as f64 {
        num
    } else {
        (fit as usize).max(1)
    })
}

/// `oxidiff sample`'s arguments.
#[derive(clap::Args)]
pub struct SampleArgs {
    /// A checkpoint directory, a run directory (its newest checkpoint), or a diffusers
    /// directory (also given as --pipeline): a pipeline with unet/ and scheduler/ (and vae/
    /// for a latent model, text_encoder/ + tokenizer/ for a text-to-image one such as a
    /// StableDiffusionPipeline), or a UNet2DModel directory with its scheduler/ beside it.
    #[arg(long, visible_alias = "pipeline")]
    pub checkpoint: PathBuf,
    /// Sampler (default: the run's `sample.sampler`; a pipeline's PNDMScheduler means pndm).
    /// Network calls for S steps: S, except heun 2S − 1 and pndm S + 1.
    #[arg(long, value_enum)]
    pub sampler: Option<SamplerArg>,
    /// Sampling steps (default: the run's `sample.steps`; `ddpm` with S below T is the respaced
    /// ancestral chain, S = T the full one).
    #[arg(long)]
    pub steps: Option<usize>,
    /// DDIM η in [0, 1] (default: the run's `sample.eta`).
    #[arg(long, allow_negative_numbers = true)]
    pub eta: Option<f64>,
    /// Euler, Heun, DPM-Solver++: Karras et al.'s σ schedule (ρ = 7).
    #[arg(long)]
    pub karras: bool,
    /// Timestep spacing (default: the run's `diffusion.timestep_spacing`).
    #[arg(long, value_enum)]
    pub spacing: Option<SpacingArg>,
    /// Euler, Heun: S_churn, noise re-injected along the way (default: the run's `sample.s_churn`).
    #[arg(long, allow_negative_numbers = true)]
    pub s_churn: Option<f64>,
    /// Class-conditional models: draw images of class K (0-based, as in the run's
    /// data_report.json).
    #[arg(long, value_name = "K")]
    pub class: Option<usize>,
    /// Text-to-image models: draw images of this prompt (without it, such a model draws from
    /// the empty prompt: its unconditional model).
    #[arg(long, conflicts_with = "class")]
    pub prompt: Option<String>,
    /// With --prompt: guide away from this prompt instead of the empty one.
    #[arg(long, requires = "prompt")]
    pub negative_prompt: Option<String>,
    /// Classifier-free guidance scale w with --class or --prompt: ε(∅) + w·(ε(c) − ε(∅)); 1 is
    /// the plain conditional model, larger values trade diversity for fidelity to the
    /// condition (default: 1 with --class, the run's `sample.guidance_scale` with --prompt).
    #[arg(long, value_name = "W", allow_negative_numbers = true)]
    pub guidance: Option<f64>,
    /// Number of images. As many as fit in memory are drawn at once from --seed; beyond that
    /// (--out-dir only) in chunks, chunk k from a seed derived from --seed and k.
    #[arg(long, default_value_t = 64)]
    pub num: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sample from the online weights instead of the EMA weights (a diffusers directory has
    /// one set of weights, used either way).
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
    let interrupt =
        Interrupt::install("finishing the sampling under way; nothing more is written")?;
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
    if let Some(w) = args.guidance {
        if !w.is_finite() {
            bail!("--guidance {w}: must be a finite number");
        }
        if args.class.is_none() && args.prompt.is_none() {
            bail!("--guidance {w}: guides toward a --class or a --prompt; give one");
        }
    }
    let guided;
    let boxed;
    let denoiser: &dyn Denoiser = match args.class {
        None => {
            let prompt = args.prompt.as_ref().map(|prompt| Prompt {
                prompt: prompt.clone(),
                negative: args.negative_prompt.clone().unwrap_or_default(),
                guidance: args.guidance.unwrap_or(loaded.config.sample.guidance_scale),
            });
            boxed = loaded.denoiser(prompt.as_ref(), &backend)?;
            &*boxed
        }
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
            guided = ClassifierFreeGuidance {
                model: &loaded.model,
                diffusion: &loaded.diffusion,
                class,
                null_label,
                scale: args.guidance.unwrap_or(1.0),
            };
            &guided
        }
    };
    let per_chunk = chunk_size(&loaded, args.num)?;
    if args.out.is_some() && per_chunk < args.num {
        bail!(
            "--num {}: a grid of that many images does not fit in memory (at most {per_chunk} \
             at a time here); write them one PNG each with --out-dir",
            args.num
        );
    }
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let chunks = args.num.div_ceil(per_chunk);
    let mut written = 0;
    for chunk in 0..chunks {
        let count = per_chunk.min(args.num - written);
        // One chunk (every --num that fits) draws from --seed itself, as it always has.
        let seed = if chunks == 1 {
            args.seed
        } else {
            derive_seed(args.seed, chunk as u64)
        };
        let mut progress = |i: usize, total: usize| {
            bar.set_length((total * chunks) as u64);
            bar.set_position((chunk * total + i) as u64);
        };
        let shape = [count, unet.in_channels, unet.image_size, unet.image_size];
        let images = generate(
            &denoiser,
            &loaded.diffusion,
            &options,
            shape,
            seed,
            &backend,
            &mut progress,
        )?;
        let images = loaded.to_images(images);
        if interrupt.requested() {
            bar.finish_and_clear();
            match &args.out_dir {
                Some(dir) => eprintln!(
                    "{}: wrote {written} of {} images to {}",
                    interrupt.interrupted(),
                    args.num,
                    dir.display()
                ),
                None => eprintln!("{}: nothing written", interrupt.interrupted()),
            }
            return Err(interrupt.interrupted().into());
        }
        if let Some(out) = &args.out {
            bar.finish_and_clear();
            if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            save_image_grid(out, images, loaded.standardization.as_ref())?;
            eprintln!("wrote {}", out.display());
        } else if let Some(dir) = &args.out_dir {
            for k in 0..count {
                let path = dir.join(format!("sample-{:04}.png", written + k));
                let one = images.clone().narrow(0, k, 1);
                oxidiff_train::save_image(&path, one, loaded.standardization.as_ref())?;
            }
        }
        written += count;
    }
    bar.finish_and_clear();
    if let Some(dir) = &args.out_dir {
        eprintln!("wrote {} images to {}", args.num, dir.display());
    }
    Ok(())
}
