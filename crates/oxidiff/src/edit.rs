//! `oxidiff inpaint` and `oxidiff denoise`: a trained model applied to one image.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use oxidiff_diffusion::sample::RePaintOptions;
use oxidiff_train::load_for_sampling;
use oxidiff_train::save_image;
use oxidiff_train::{DenoiseMethod, InpaintMethod, denoise, inpaint, read_mask, read_model_image};

use crate::device::DeviceArg;
use crate::enum_arg::SpacingArg;
use crate::prompt::PromptArgs;
use crate::sample::apply_spacing;

/// `oxidiff inpaint`'s arguments.
#[derive(clap::Args)]
pub struct InpaintArgs {
    /// A checkpoint directory, a run directory (its newest checkpoint), or a diffusers
    /// directory (also given as --pipeline): a pipeline with unet/ and scheduler/ (and vae/
    /// for a latent model, text_encoder/ + tokenizer/ for a text-to-image one such as a
    /// StableDiffusionPipeline), or a UNet2DModel directory with its scheduler/ beside it.
    #[arg(long, visible_alias = "pipeline")]
    pub checkpoint: PathBuf,
    /// The image, at the model's size.
    #[arg(long)]
    pub image: PathBuf,
    /// The mask, at the model's size: white = the region to generate, black = pixels to keep
    /// (grey levels blend).
    #[arg(long)]
    pub mask: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    /// Sampling steps (DDIM with known-region replacement; RePaint's respaced DDPM steps).
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Timestep spacing of the DDIM or RePaint steps (default: the run's
    /// `diffusion.timestep_spacing`).
    #[arg(long, value_enum)]
    pub spacing: Option<SpacingArg>,
    /// RePaint (Lugmayr et al. 2022): go back `--jump-length` steps and resample, `--resample`
    /// times per jump, so the generated region agrees with the kept one.
    #[arg(long)]
    pub repaint: bool,
    #[arg(long, default_value_t = 10, requires = "repaint")]
    pub jump_length: usize,
    #[arg(long, default_value_t = 10, requires = "repaint")]
    pub resample: usize,
    #[command(flatten)]
    pub text: PromptArgs,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
}

/// `oxidiff denoise`'s arguments.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("how").required(true).args(["strength", "sigma"])))]
pub struct DenoiseArgs {
    /// A checkpoint directory, a run directory (its newest checkpoint), or a diffusers
    /// directory (also given as --pipeline): a pipeline with unet/ and scheduler/ (and vae/
    /// for a latent model, text_encoder/ + tokenizer/ for a text-to-image one such as a
    /// StableDiffusionPipeline), or a UNet2DModel directory with its scheduler/ beside it.
    #[arg(long, visible_alias = "pipeline")]
    pub checkpoint: PathBuf,
    /// The noisy image, at the model's size.
    #[arg(long)]
    pub image: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    /// SDEdit (Meng et al. 2022): noise the image to t = strength·T and sample back; in (0, 1].
    #[arg(long, allow_negative_numbers = true)]
    pub strength: Option<f64>,
    /// The image carries Gaussian noise of this standard deviation, in 8-bit levels (0–255
    /// scale): start the reverse process at the matching t, adding no noise.
    #[arg(long, allow_negative_numbers = true)]
    pub sigma: Option<f64>,
    /// DDIM steps from the starting t down to 0.
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    #[command(flatten)]
    pub text: PromptArgs,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
}

pub fn inpaint_command(args: InpaintArgs) -> Result<()> {
    let device = args.device.device()?;
    let mut loaded = load_for_sampling(&args.checkpoint, true, &device)?;
    apply_spacing(&mut loaded, args.spacing);
    let image = read_model_image(&loaded, &args.image, &device)?;
    let known = read_mask(&loaded, &args.mask, &device)?;
    let method = if args.repaint {
        InpaintMethod::RePaint(RePaintOptions {
            jump_length: args.jump_length,
            resample_count: args.resample,
        })
    } else {
        InpaintMethod::Replacement
    };
    let prompt = args.text.prompt(&loaded)?;
    let result = inpaint(
        &loaded,
        image,
        known,
        args.steps,
        method,
        prompt.as_ref(),
        args.seed,
    )
    .with_context(|| format!("inpainting {}", args.image.display()))?;
    save_image(&args.out, result, loaded.standardization.as_ref())?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

pub fn denoise_command(args: DenoiseArgs) -> Result<()> {
    let device = args.device.device()?;
    let loaded = load_for_sampling(&args.checkpoint, true, &device)?;
    let image = read_model_image(&loaded, &args.image, &device)?;
    let method = match (args.strength, args.sigma) {
        (Some(s), None) => DenoiseMethod::Strength(s),
        (None, Some(sigma)) => DenoiseMethod::Sigma255(sigma),
        _ => bail!("give exactly one of --strength and --sigma"),
    };
    let prompt = args.text.prompt(&loaded)?;
    let result = denoise(
        &loaded,
        image,
        method,
        args.steps,
        prompt.as_ref(),
        args.seed,
    )
    .with_context(|| format!("denoising {}", args.image.display()))?;
    save_image(&args.out, result, loaded.standardization.as_ref())?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
