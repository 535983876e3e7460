//! `oxidiff export`: a run in diffusers' format (docs/diffusers.md).

use std::path::PathBuf;

use anyhow::{Context, Result};
use oxidiff_train::{ExportKind, export_run};

/// `oxidiff export`'s arguments.
#[derive(clap::Args)]
pub struct ExportArgs {
    /// A checkpoint directory, or a run directory (its newest checkpoint): a diffusion run
    /// (pixel or latent) or an autoencoder run.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The directory to write: new, empty, or an earlier export (replaced whole).
    #[arg(long)]
    pub out: PathBuf,
    /// Export the online weights instead of the EMA weights.
    #[arg(long)]
    pub no_ema: bool,
}

pub fn export_command(args: ExportArgs) -> Result<()> {
    let exported = export_run(&args.checkpoint, !args.no_ema, &args.out)
        .with_context(|| format!("exporting {}", args.checkpoint.display()))?;
    let out = args.out.display();
    let (what, load) = match exported.kind {
        ExportKind::DdpmPipeline => (
            "a DDPMPipeline (model_index.json, unet/, scheduler/)",
            format!("DDPMPipeline.from_pretrained(\"{out}\")"),
        ),
        ExportKind::ClassConditional => (
            "a class-conditional UNet2DModel and its DDPMScheduler (unet/, scheduler/)",
            format!("UNet2DModel.from_pretrained(\"{out}\", subfolder=\"unet\")"),
        ),
        ExportKind::Latent => (
            "a latent model: UNet2DModel, DDPMScheduler and AutoencoderKL (unet/, scheduler/, vae/)",
            format!(
                "UNet2DModel / DDPMScheduler / AutoencoderKL.from_pretrained(\"{out}\", \
                 subfolder=\"unet\" / \"scheduler\" / \"vae\")"
            ),
        ),
        ExportKind::StableDiffusionPipeline => (
            "a StableDiffusionPipeline (model_index.json, unet/, vae/, text_encoder/, \
             tokenizer/, scheduler/)",
            format!("StableDiffusionPipeline.from_pretrained(\"{out}\")"),
        ),
        ExportKind::TextConditional => (
            "a pixel-space text-to-image model: UNet2DConditionModel, text encoder, tokenizer \
             and DDPMScheduler (unet/, text_encoder/, tokenizer/, scheduler/)",
            format!("UNet2DConditionModel.from_pretrained(\"{out}\", subfolder=\"unet\")"),
        ),
        ExportKind::Autoencoder => (
            "an AutoencoderKL",
            format!("AutoencoderKL.from_pretrained(\"{out}\")"),
        ),
    };
    println!(
        "exported {} (step {}, {} weights) to {out}: {what}",
        exported.checkpoint.display(),
        exported.step,
        exported.weights
    );
    println!("  diffusers {}: {load}", exported.diffusers_version);
    for note in &exported.notes {
        println!("  note: {note}");
    }
    Ok(())
}
