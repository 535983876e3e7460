//! `oxidiff`: train diffusion models and sample from them. Thin glue over the library crates.

mod bench;
mod bench_autoencoder;
mod bench_zoo;
mod data;
mod device;
mod edit;
mod enum_arg;
mod eval;
mod export;
mod progress;
mod prompt;
mod sample;
mod signals;
mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use burn::module::Module;
use clap::{Parser, Subcommand};
use oxidiff_models::Preset;
use oxidiff_train::{AutoencoderPreset, DEFAULT_CONFIG_TOML, RunConfig, TaskKind};

use crate::device::DeviceArg;
use crate::enum_arg::{AutoencoderPresetArg, PresetArg};

#[derive(Parser)]
#[command(
    name = "oxidiff",
    version,
    about = "Train diffusion models and use them."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model. With no arguments: the `tiny` preset on the embedded 8×8 digits.
    ///
    /// Ctrl-C or SIGTERM finishes the step under way, writes a checkpoint and exits 130 / 143
    /// (a second signal quits at once); `--resume DIR` continues exactly.
    Train {
        /// Run configuration (TOML); defaults apply to every missing key.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override one key, e.g. `--set train.steps=500` (repeatable).
        #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
        overrides: Vec<String>,
        /// Run directory (default: runs/<preset>-NNN, the first free number).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue the run in this directory from its newest checkpoint.
        #[arg(long, conflicts_with_all = ["config", "out"])]
        resume: Option<PathBuf>,
        /// Stop after this many steps in this invocation (checkpointing), to resume later.
        #[arg(long)]
        stop_after: Option<u64>,
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceArg,
    },
    /// Draw images from a trained model: a PNG grid (--out) or a folder of PNGs (--out-dir).
    Sample(sample::SampleArgs),
    /// Fill the white region of a mask in an image (RePaint with --repaint).
    Inpaint(edit::InpaintArgs),
    /// Remove noise from an image: SDEdit (--strength) or known Gaussian noise (--sigma).
    Denoise(edit::DenoiseArgs),
    /// Evaluate a checkpoint on held-out images: NLL in bits/dim from the variational bound
    /// (prior, decoder and diffusion parts; mean ± standard error), ε-MSE in four bands of t
    /// (fixed noise, comparable between checkpoints), and with --fd the sample distance
    /// FD-oxidiff (features of a network trained here; not FID). An autoencoder run:
    /// reconstruction PSNR, SSIM, KL and latent statistics (--fd: of its reconstructions).
    Eval(eval::EvalArgs),
    /// Write a run in diffusers' format: a diffusion run as a pipeline directory (unet/,
    /// scheduler/, and model_index.json for DDPMPipeline; vae/ for a latent run), an
    /// autoencoder run as an AutoencoderKL directory. Runs on per-channel standardised images
    /// are refused (diffusers maps outputs to pixels as x / 2 + 0.5). See docs/diffusers.md.
    Export(export::ExportArgs),
    /// Look at a data source before training on it.
    Data {
        #[command(subcommand)]
        action: DataAction,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Print a network's architecture and parameter count: a preset's, or that of a config
    /// file and overrides as `oxidiff train` would build it.
    Model {
        /// Start from this preset (default: the config's `model.preset`).
        #[arg(long, value_enum)]
        preset: Option<PresetArg>,
        /// A TOML config file (default: the built-in config).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override a key, e.g. `--set model.model_channels=32` (repeatable).
        #[arg(long = "set", value_name = "section.KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Time a training step, a forward pass and a DDIM step (median after warm-up), with
    /// images/s, peak memory and GFLOP/s; `--peer` also runs the PyTorch peer and prints ratios.
    Bench {
        #[arg(long, value_enum, default_value_t = PresetArg(Preset::Small))]
        preset: PresetArg,
        /// A run config whose [model] section is the network to time (on top of --preset).
        #[arg(long, conflicts_with = "zoo")]
        config: Option<PathBuf>,
        /// Override a model key, e.g. `--set model.image_size=28` (repeatable).
        #[arg(long = "set", value_name = "model.KEY=VALUE", conflicts_with = "zoo")]
        overrides: Vec<String>,
        /// Time every network of the zoo (tiny, a 28×28×1 UNet at batch 64, small at batch 16
        /// and 64, ddpm-cifar10, latent-text), each at its own batch, and print one row each
        /// with the ratios to its peer.
        #[arg(long, conflicts_with = "autoencoder")]
        zoo: bool,
        /// The batch (a zoo row has its own).
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Untimed repetitions of each measurement first.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// Timed repetitions of each measurement; the median is reported.
        #[arg(long, default_value_t = 10)]
        iters: usize,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Python with torch installed: also run the peer (bench/README.md) and print ratios.
        #[arg(long, value_name = "PYTHON")]
        peer: Option<PathBuf>,
        /// The peer script (default: bench/peer/torch_unet.py; bench/peer/diffusers_unet.py
        /// for a text-conditioned preset such as latent-text; bench/peer/torch_vae.py with
        /// --autoencoder).
        #[arg(long)]
        peer_script: Option<PathBuf>,
        /// Run the whole benchmark this many times, oxidiff and the peer alternating, and report
        /// the median of each figure and of the per-round ratios: steadier on a machine whose
        /// speed drifts.
        #[arg(long, default_value_t = 1, conflicts_with = "autoencoder")]
        rounds: usize,
        /// Benchmark an autoencoder preset instead of a UNet: its training step, encoding and
        /// decoding (peer: diffusers' AutoencoderKL of the same config).
        #[arg(long, value_enum, value_name = "PRESET")]
        autoencoder: Option<AutoencoderPresetArg>,
        /// The autoencoder's image side (default: 32 for `small`, 256 for `stable-diffusion`).
        #[arg(long, requires = "autoencoder")]
        image_size: Option<usize>,
        /// The autoencoder's image channels.
        #[arg(long, default_value_t = 3, requires = "autoencoder")]
        channels: usize,
        /// Time only encoding and decoding (the default for `stable-diffusion`).
        #[arg(long, requires = "autoencoder")]
        no_train: bool,
        /// The machine's fp32 peak, when the estimate from /proc/cpuinfo is wrong.
        #[arg(long, value_name = "GFLOPS")]
        peak_gflops: Option<f64>,
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceArg,
    },
}

#[derive(Subcommand)]
enum DataAction {
    /// Counts, stored sizes and colour types, label histogram, per-channel mean/std, every
    /// unusable file with its reason, and a preview grid PNG. The source is the run config's
    /// `[data]` section (`--config`, `--set data.…`), or PATH.
    Inspect {
        /// A folder of images, a `.npy` array or an IDX file (sets data.source and data.path).
        path: Option<PathBuf>,
        /// Run configuration (TOML) whose `[data]` and `[model]` sections to use.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override one key, e.g. `--set data.source=fashion-mnist` (repeatable).
        #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
        overrides: Vec<String>,
        /// Where to write the preview grid.
        #[arg(long, default_value = "data_preview.png")]
        preview: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the full default configuration, every key documented.
    Default,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Train { device, .. }
    | Command::Sample(sample::SampleArgs { device, .. })
    | Command::Eval(eval::EvalArgs { device, .. })
    | Command::Inpaint(edit::InpaintArgs { device, .. })
    | Command::Denoise(edit::DenoiseArgs { device, .. })
    | Command::Bench { device, .. } = &cli.command
    {
        device.make_default();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => match err.downcast_ref::<signals::Interrupted>() {
            // What was saved and how to go on has been said already.
            Some(interrupted) => ExitCode::from(interrupted.exit_code()),
            None => {
                eprintln!("error: {err:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train {
            config,
            overrides,
            out,
            resume,
            stop_after,
            device,
        } => train::train_command(train::TrainArgs {
            config,
            overrides,
            out,
            resume,
            stop_after,
            device,
        }),
        Command::Sample(args) => sample::sample_command(args),
        Command::Eval(args) => eval::eval_command(args),
        Command::Inpaint(args) => edit::inpaint_command(args),
        Command::Denoise(args) => edit::denoise_command(args),
        Command::Export(args) => export::export_command(args),
        Command::Config {
            action: ConfigAction::Default,
        } => {
            print!("{DEFAULT_CONFIG_TOML}");
            Ok(())
        }
        Command::Data {
            action:
                DataAction::Inspect {
                    path,
                    config,
                    overrides,
                    preview,
                },
        } => data::inspect_command(data::InspectArgs {
            path,
            config,
            overrides,
            preview,
        }),
        Command::Model {
            preset,
            config,
            overrides,
        } => {
            // --preset goes first, so a --set model.… refines that preset.
            let mut all: Vec<String> = preset
                .map(|p| format!("model.preset=\"{}\"", Preset::from(p).name()))
                .into_iter()
                .collect();
            all.extend(overrides);
            let config = match &config {
                Some(path) => RunConfig::load(path, &all)?,
                None => RunConfig::default_with(&all)?,
            };
            print_model(&config)
        }
        Command::Bench {
            preset,
            config,
            overrides,
            zoo,
            batch,
            warmup,
            iters,
            json,
            peer,
            peer_script,
            rounds,
            autoencoder,
            image_size,
            channels,
            no_train,
            peak_gflops,
            device,
        } => {
            if batch == 0 || iters == 0 || rounds == 0 {
                bail!("--batch, --iters and --rounds must be at least 1");
            }
            if let Some(preset) = autoencoder {
                let preset: AutoencoderPreset = preset.into();
                let sd = preset == AutoencoderPreset::StableDiffusion;
                let script = peer_script.unwrap_or_else(|| "bench/peer/torch_vae.py".into());
                return bench_autoencoder::bench_autoencoder(
                    bench_autoencoder::AutoencoderBenchArgs {
                        config: oxidiff_train::AutoencoderBenchConfig {
                            preset,
                            image_size: image_size.unwrap_or(if sd { 256 } else { 32 }),
                            channels,
                            batch,
                            warmup,
                            iters,
                            train: !(no_train || sd),
                            seed: 0,
                        },
                        json,
                        peer_python: peer.as_deref(),
                        peer_script: &script,
                        device,
                    },
                );
            }
            let preset: Preset = preset.into();
            let configs = if zoo {
                oxidiff_train::zoo()
            } else if config.is_some() || !overrides.is_empty() {
                let mut all = vec![format!("model.preset=\"{}\"", preset.name())];
                all.extend(overrides);
                let run = match &config {
                    Some(path) => RunConfig::load(path, &all)?,
                    None => RunConfig::default_with(&all)?,
                };
                let name = config
                    .as_deref()
                    .and_then(|p| p.file_stem())
                    .map_or_else(|| format!("{preset}+set"), |s| s.to_string_lossy().into());
                vec![oxidiff_train::BenchConfig {
                    name,
                    unet: run.unet()?,
                    ..oxidiff_train::BenchConfig::preset(preset, batch)
                }]
            } else {
                vec![oxidiff_train::BenchConfig::preset(preset, batch)]
            };
            let configs = configs
                .into_iter()
                .map(|c| oxidiff_train::BenchConfig { warmup, iters, ..c })
                .collect();
            bench::bench(bench::BenchArgs {
                configs,
                zoo,
                json,
                peer_python: peer.as_deref(),
                peer_script: peer_script.as_deref(),
                peak_gflops,
                rounds,
                device,
            })
        }
    }
}

/// `oxidiff model` for `task = "autoencoder"`: the shapes in and out and the parameter count,
/// from the config alone.
fn print_autoencoder(run: &RunConfig) -> Result<()> {
    let section = &run.autoencoder;
    let config = section
        .resolve()
        .map_err(|message| anyhow::anyhow!(message))?;
    let (size, f) = (section.image_size, config.downsampling_factor());
    println!(
        "autoencoder {} (diffusers' AutoencoderKL): {}×{size}×{size} images → latents {}×{}×{} (f = {f})",
        section.preset,
        config.in_channels,
        config.latent_channels,
        size / f,
        size / f
    );
    println!(
        "  channels {:?}, {} resnets per encoder level ({} per decoder level), GroupNorm({})",
        config.block_out_channels,
        config.layers_per_block,
        config.layers_per_block + 1,
        config.norm_num_groups
    );
    println!("parameters: {}", config.footprint().parameters);
    Ok(())
}

fn print_model(run: &RunConfig) -> Result<()> {
    if run.task == TaskKind::Autoencoder {
        return print_autoencoder(run);
    }
    let config = run.unet()?;
    let model = config.init(&burn::tensor::Device::flex());
    let preset = run.model.preset;
    let changed = if config == preset.config() {
        ""
    } else {
        " (changed by the config)"
    };
    println!(
        "preset {preset}{changed}: {}×{}×{} images",
        config.in_channels, config.image_size, config.image_size
    );
    println!(
        "  channels {} × {:?}, {} residual blocks per level, attention at {:?} (heads {}), dropout {}, time embedding {}, injection {:?}, GroupNorm({})",
        config.model_channels,
        config.channel_mult,
        config.num_res_blocks,
        config.attention_resolutions,
        config.num_heads,
        config.dropout,
        config.time_embed_dim,
        config.time_injection,
        config.norm_groups
    );
    let mut resolution = config.image_size;
    for (i, level) in model.down.iter().enumerate() {
        let params: usize = level.blocks.iter().map(|b| b.num_params()).sum::<usize>()
            + level.downsample.as_ref().map_or(0, |d| d.num_params());
        println!(
            "  down {resolution:>3}×{resolution:<3} level {i}: {} blocks{}{}  {params} params",
            level.blocks.len(),
            if level.blocks.iter().any(|b| b.attn.is_some()) {
                " + attention"
            } else {
                ""
            },
            if level.downsample.is_some() {
                " + downsample"
            } else {
                ""
            },
        );
        if level.downsample.is_some() {
            resolution /= 2;
        }
    }
    let mid =
        model.mid_res_1.num_params() + model.mid_attn.num_params() + model.mid_res_2.num_params();
    println!(
        "  middle {resolution:>3}×{resolution:<3}: ResBlock, attention, ResBlock  {mid} params"
    );
    for level in &model.up {
        let params: usize = level.blocks.iter().map(|b| b.num_params()).sum::<usize>()
            + level.upsample.as_ref().map_or(0, |u| u.num_params());
        println!(
            "  up   {resolution:>3}×{resolution:<3}: {} blocks{}{}  {params} params",
            level.blocks.len(),
            if level.blocks.iter().any(|b| b.attn.is_some()) {
                " + attention"
            } else {
                ""
            },
            if level.upsample.is_some() {
                " + upsample"
            } else {
                ""
            },
        );
        if level.upsample.is_some() {
            resolution *= 2;
        }
    }
    println!("parameters: {}", model.num_params());
    Ok(())
}
