//! The training-speed benchmark behind `oxidiff bench`: the same measurement as the PyTorch peer
//! (`bench/peer/torch_unet.py`) so that the two can be put side by side.
//!
//! Timed, each as the median over `iters` repetitions after `warmup` untimed ones:
//! - the training step: forward on x_t, ε-MSE loss, backward, one AdamW step (lr 1e-4, β =
//!   (0.9, 0.999), ε = 1e-8, no weight decay), exactly what the peer times;
//! - the forward pass without autodiff;
//! - one DDIM step (the model call plus the update) at batch size `batch`.
//!
//! Inputs are drawn before the clock starts. The results are read back to the host inside the
//! timed region, so lazy backends are timed to completion.

use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use oxidiff_diffusion::sample::ddim_step;
use oxidiff_diffusion::{DiffusionConfig, GaussianDiffusion};
use oxidiff_models::{CONTEXT_TOKENS, FlopCount, Preset, UNet, UNetConfig};
use serde::Serialize;

use crate::TrainError;
use crate::optim::FusedAdamW;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// What the report calls the network: a preset's name, or a config's.
    pub name: String,
    pub unet: UNetConfig,
    pub batch: usize,
    /// Untimed repetitions first (allocator, caches, lazy initialisation).
    pub warmup: usize,
    /// Timed repetitions; the median is reported.
    pub iters: usize,
    pub seed: u64,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self::preset(Preset::Small, 16)
    }
}

impl BenchConfig {
    /// `preset` at `batch`, with the default repetitions.
    pub fn preset(preset: Preset, batch: usize) -> Self {
        Self {
            name: preset.to_string(),
            unet: preset.config(),
            batch,
            warmup: 3,
            iters: 10,
            seed: 0,
        }
    }
}

/// One benchmark result. The JSON keys match the peer's where they mean the same thing.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub preset: String,
    pub parameters: usize,
    pub batch: usize,
    pub image_size: usize,
    pub channels: usize,
    pub iters: usize,
    pub warmup: usize,
    /// Median training step (forward + loss + backward + AdamW).
    pub train_step_ms: f64,
    /// Median of the step's phases: forward + loss under autodiff, backward, optimiser update.
    /// On lazy (GPU) backends only their sum is meaningful.
    pub train_forward_ms: f64,
    pub train_backward_ms: f64,
    pub optimizer_ms: f64,
    pub train_images_per_s: f64,
    /// Cores the timed training steps kept busy: this process's CPU time (user + system, every
    /// thread) over their wall time; the machine has `threads`.
    pub train_cpu_cores: f64,
    /// Median forward pass without autodiff.
    pub forward_ms: f64,
    pub forward_images_per_s: f64,
    /// Median DDIM step (model call + update).
    pub ddim_step_ms: f64,
    /// A text-conditioned preset's context, `[CONTEXT_TOKENS, cross_attention_dim]` per image:
    /// random states standing in for a frozen encoder's, the same every step.
    pub context: Option<[usize; 2]>,
    /// Batches assembled from the in-memory dataset per second × batch: the embedded digits
    /// stored at 9/8 of the model's size, random crop + flip, as a training step gets them.
    /// `None` (with the two below) for a latent preset, which trains on cached latents.
    pub data_images_per_s: Option<f64>,
    /// Images decoded, resized and converted per second when the dataset is loaded.
    pub data_load_images_per_s: Option<f64>,
    /// Batches assembled per second × batch when streaming (`data.cache = false`): the same
    /// images written as PNG files, decoded again for every batch (all cores), random crop +
    /// flip. In training this runs on the prefetch thread, beside the model.
    pub data_stream_images_per_s: Option<f64>,
    /// Peak resident set size of this process (VmHWM), bytes.
    pub peak_rss_bytes: u64,
    /// Analytic FLOPs of one forward pass of one image (multiply-add = 2).
    pub forward_flops_per_image: u64,
    /// Analytic FLOPs of one training step of one image: 3 × forward.
    pub train_flops_per_image: u64,
    pub train_gflops_per_s: f64,
    pub forward_gflops_per_s: f64,
    /// The machine's theoretical fp32 peak, when it could be estimated.
    pub peak_gflops_per_s: Option<f64>,
    pub threads: usize,
    pub device: String,
}

impl BenchReport {
    /// One report from several runs of the same benchmark in one process (`oxidiff bench
    /// --rounds`): the median of each timing, the rates recomputed from those medians, and the
    /// first run's peak RSS, the one measured in a fresh process as each peer run is (each run
    /// starts its own peak, but after the first the allocator's retained memory can add to it).
    /// `None` for no runs.
    pub fn median_of(rounds: &[BenchReport]) -> Option<BenchReport> {
        let first = rounds.first()?;
        let med = |field: fn(&BenchReport) -> f64| {
            median(&mut rounds.iter().map(field).collect::<Vec<_>>())
        };
        let med_opt = |field: fn(&BenchReport) -> Option<f64>| {
            let mut values: Vec<f64> = rounds.iter().filter_map(field).collect();
            (!values.is_empty()).then(|| median(&mut values))
        };
        let batch = first.batch as f64;
        let train_step_ms = med(|r| r.train_step_ms);
        let forward_ms = med(|r| r.forward_ms);
        let gflops = |flops_per_image: u64, ms: f64| flops_per_image as f64 * batch / ms / 1e6;
        Some(BenchReport {
            train_step_ms,
            train_forward_ms: med(|r| r.train_forward_ms),
            train_backward_ms: med(|r| r.train_backward_ms),
            optimizer_ms: med(|r| r.optimizer_ms),
            train_images_per_s: batch / (train_step_ms * 1e-3),
            train_cpu_cores: med(|r| r.train_cpu_cores),
            forward_ms,
            forward_images_per_s: batch / (forward_ms * 1e-3),
            ddim_step_ms: med(|r| r.ddim_step_ms),
            data_images_per_s: med_opt(|r| r.data_images_per_s),
            data_load_images_per_s: med_opt(|r| r.data_load_images_per_s),
            data_stream_images_per_s: med_opt(|r| r.data_stream_images_per_s),
            train_gflops_per_s: gflops(first.train_flops_per_image, train_step_ms),
            forward_gflops_per_s: gflops(first.forward_flops_per_image, forward_ms),
            ..first.clone()
        })
    }
}

/// The networks `oxidiff bench --zoo` measures, each at its batch: the shapes users train, from
/// the 8×8 digits to a text-conditioned latent UNet.
pub fn zoo() -> Vec<BenchConfig> {
    // Fashion-MNIST's shape as a user would size it: 28×28×1, 32 channels × [1, 2, 2], two
    // blocks per level, attention at 7×7; 1,623,169 parameters.
    let fashion = UNetConfig {
        image_size: 28,
        model_channels: 32,
        channel_mult: vec![1, 2, 2],
        num_res_blocks: 2,
        attention_resolutions: vec![7],
        ..Preset::Tiny.config()
    };
    vec![
        BenchConfig::preset(Preset::Tiny, 16),
        BenchConfig {
            name: "fashion-28".into(),
            unet: fashion,
            ..BenchConfig::preset(Preset::Tiny, 64)
        },
        BenchConfig::preset(Preset::Small, 16),
        BenchConfig::preset(Preset::Small, 64),
        BenchConfig::preset(Preset::DdpmCifar10, 16),
        BenchConfig::preset(Preset::LatentText, 16),
    ]
}

/// The optimiser both peers step with: AdamW, lr given per step, β = (0.9, 0.999), ε = 1e-8,
/// no weight decay; oxidiff's side is the one training uses ([`FusedAdamW`]).
pub(crate) fn peer_adamw() -> ModuleOptimizer {
    FusedAdamW::new(0.9, 0.999, 1e-8, 0.0).into()
}

/// The median of `samples` (sorted in place).
pub fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        samples[n / 2]
    } else {
        0.5 * (samples[n / 2 - 1] + samples[n / 2])
    }
}

/// Times `f` `warmup + iters` times and returns the median of the last `iters`, in milliseconds.
pub(crate) fn time_median(warmup: usize, iters: usize, f: impl FnMut()) -> f64 {
    time_median_and_cores(warmup, iters, f).0
}

/// [`time_median`], and the cores the timed calls kept busy: process CPU time over wall time.
fn time_median_and_cores(warmup: usize, iters: usize, mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..warmup {
        f();
    }
    let (start, start_cpu) = (Instant::now(), process_cpu_seconds());
    let mut samples: Vec<f64> = (0..iters)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let cores = (process_cpu_seconds() - start_cpu) / start.elapsed().as_secs_f64();
    (median(&mut samples), cores)
}

/// User + system CPU time of this process, all threads, in seconds; 0 where unavailable.
fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes the struct it is given and nothing else.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0.0;
        }
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Peak resident set size of this process in bytes (Linux `VmHWM`); 0 where unavailable.
pub fn peak_rss_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Theoretical fp32 peak of the CPU: cores × clock × FLOPs per cycle per core.
///
/// FLOPs per cycle assume two FMA units per core of the widest vector the CPU runs at full rate:
/// 16 lanes for AVX-512 on Intel and AMD Zen 5, 8 on earlier AMD (Zen 4 splits 512-bit operations
/// into two 256-bit halves), 8 for AVX2 + FMA, 4 otherwise; an FMA is 2 FLOPs. The clock is the
/// nominal one `/proc/cpuinfo` reports: turbo is not counted, so a well-tuned library can exceed
/// this figure. `None` off Linux x86-64.
pub fn cpu_peak_gflops(threads: usize) -> Option<f64> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
    };
    let mhz: f64 = field("cpu MHz")?.parse().ok()?;
    let flags = field("flags").unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let amd = field("vendor_id").is_some_and(|v| v.contains("AMD"));
    let family: u32 = field("cpu family")
        .and_then(|f| f.parse().ok())
        .unwrap_or(0);
    let lanes = if has("avx512f") {
        if amd && family < 26 { 8.0 } else { 16.0 }
    } else if has("avx2") && has("fma") {
        8.0
    } else {
        4.0
    };
    let flops_per_cycle = 2.0 * lanes * 2.0;
    Some(threads as f64 * mhz * 1e6 * flops_per_cycle / 1e9)
}

/// Threads the CPU backend runs on (rayon's pool).
pub fn cpu_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

fn normal(shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

fn timesteps(batch: usize, step: usize, device: &Device) -> Tensor<1> {
    // Spread over [0, 1000) without an RNG; the network's cost does not depend on t.
    let t: Vec<f32> = (0..batch)
        .map(|i| ((i * 997 + step * 389) % 1000) as f32)
        .collect();
    Tensor::from_data(TensorData::new(t, [batch]), device)
}

/// Runs the benchmark on `device` (a non-autodiff device; autodiff is added for training).
pub fn run_bench(config: &BenchConfig, device: &Device) -> Result<BenchReport, TrainError> {
    reset_peak_rss();
    oxidiff_models::cpu::on_pool(|| run_bench_on(config, device))
}

/// Starts a new peak RSS measurement in this process, so that a benchmark after another (the
/// zoo's rows) reports its own peak: the allocator's free memory goes back to the system
/// (`malloc_trim`), then Linux resets VmHWM to the current RSS (`5` into
/// `/proc/self/clear_refs`). Without it, every row after `small` at batch 64 reported that
/// row's 1.5 GiB. Where either is unavailable the peak stays cumulative.
fn reset_peak_rss() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory of glibc's heap to the system.
    unsafe {
        libc::malloc_trim(0);
    }
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn run_bench_on(config: &BenchConfig, device: &Device) -> Result<BenchReport, TrainError> {
    let unet: UNetConfig = config.unet.clone();
    let batch = config.batch;
    let shape = [batch, unet.in_channels, unet.image_size, unet.image_size];
    let ad_device = device.clone().autodiff();
    ad_device.seed(config.seed);
    let mut model: UNet = unet.init(&ad_device);
    let parameters = model.num_params();
    let flops: FlopCount = model.forward_flops(unet.image_size);

    let context_shape = unet.cross_attention_dim.map(|d| [CONTEXT_TOKENS, d]);
    let context = |device: &Device| {
        context_shape.map(|[l, d]| {
            Tensor::<3>::random([batch, l, d], Distribution::Normal(0.0, 1.0), device)
        })
    };
    let train_context = context(&ad_device);

    // The training step, as the peer does it: x_t and ε are fresh N(0, I) draws.
    let mut optimizer = peer_adamw();
    let reps = config.warmup + config.iters;
    let inputs: Vec<_> = (0..reps)
        .map(|i| {
            (
                normal(shape, &ad_device),
                normal(shape, &ad_device),
                timesteps(batch, i, &ad_device),
            )
        })
        .collect();
    let mut inputs = inputs.into_iter();
    // The phases of each step, to see where a step's time goes.
    let (mut fwd, mut bwd, mut opt) = (Vec::new(), Vec::new(), Vec::new());
    let (train_step_ms, train_cpu_cores) =
        time_median_and_cores(config.warmup, config.iters, || {
            let (x_t, noise, t) = inputs.next().expect("one input per repetition");
            let start = Instant::now();
            let output = model.forward_with_context(x_t, t, None, train_context.clone());
            let loss = (output - noise).square().mean();
            let forward_done = Instant::now();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let backward_done = Instant::now();
            model = optimizer.step(1e-4, model.clone(), grads);
            // Reading one weight back waits for every queued kernel on lazy backends.
            let _ = model
                .conv_in
                .weight
                .val()
                .slice([0..1, 0..1, 0..1, 0..1])
                .into_data();
            let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
            fwd.push(ms(start, forward_done));
            bwd.push(ms(forward_done, backward_done));
            opt.push(ms(backward_done, Instant::now()));
        });
    // Phase medians over the timed repetitions only (the warm-up ones come first).
    let phase = |v: &mut Vec<f64>| median(&mut v.split_off(config.warmup.min(v.len())));

    let inference = model.valid();
    let x = normal(shape, device);
    let t = timesteps(batch, 0, device);
    let inference_context = context(device);
    let forward = |x: Tensor<4>, t: Tensor<1>| {
        inference.forward_with_context(x, t, None, inference_context.clone())
    };
    let forward_ms = time_median(config.warmup, config.iters, || {
        let _ = forward(x.clone(), t.clone()).into_data();
    });

    let diffusion = GaussianDiffusion::new(DiffusionConfig::default())?;
    let t_float = Tensor::<1>::from_data(TensorData::new(vec![500.0f32; batch], [batch]), device);
    let ddim_step_ms = time_median(config.warmup, config.iters, || {
        let output = forward(x.clone(), t_float.clone());
        let x_prev = ddim_step(&diffusion, output, 500, Some(480), x.clone(), 0.0, None);
        let _ = x_prev.into_data();
    });

    // The data path a training step uses, on the same batch shape: image presets only (a
    // latent preset's channels are no image's; its run reads cached latents).
    let data = if [1, 3].contains(&unet.in_channels) {
        Some(data_path(&unet, config, device)?)
    } else {
        None
    };

    let train_flops_per_image = 3 * flops.total();
    let gflops =
        |flops_per_image: u64, ms: f64| flops_per_image as f64 * batch as f64 / (ms * 1e-3) / 1e9;
    let threads = cpu_threads();
    let is_cpu = matches!(device.as_dispatch(), burn::backend::DispatchDevice::Flex(_));
    Ok(BenchReport {
        preset: config.name.clone(),
        parameters,
        batch,
        image_size: unet.image_size,
        channels: unet.in_channels,
        iters: config.iters,
        warmup: config.warmup,
        train_step_ms,
        train_forward_ms: phase(&mut fwd),
        train_backward_ms: phase(&mut bwd),
        optimizer_ms: phase(&mut opt),
        train_images_per_s: batch as f64 / (train_step_ms * 1e-3),
        train_cpu_cores,
        forward_ms,
        forward_images_per_s: batch as f64 / (forward_ms * 1e-3),
        ddim_step_ms,
        context: context_shape,
        data_images_per_s: data.map(|d| d.assembled),
        data_load_images_per_s: data.map(|d| d.loaded),
        data_stream_images_per_s: data.map(|d| d.streamed),
        peak_rss_bytes: peak_rss_bytes(),
        forward_flops_per_image: flops.total(),
        train_flops_per_image,
        train_gflops_per_s: gflops(train_flops_per_image, train_step_ms),
        forward_gflops_per_s: gflops(flops.total(), forward_ms),
        peak_gflops_per_s: if is_cpu {
            cpu_peak_gflops(threads)
        } else {
            None
        },
        threads,
        device: format!("{device:?}"),
    })
}

/// Images per second through the data path of an image preset.
#[derive(Clone, Copy)]
struct DataRates {
    assembled: f64,
    loaded: f64,
    streamed: f64,
}

/// The data path of a training step on `unet`'s images: the embedded digits stored at 9/8 of
/// the model's size, assembled with random crop + flip from memory and from PNG files.
fn data_path(
    unet: &UNetConfig,
    config: &BenchConfig,
    device: &Device,
) -> Result<DataRates, TrainError> {
    let batch = config.batch;
    let data_config = oxidiff_data::DataConfig {
        resize: Some(unet.image_size + unet.image_size / 8),
        crop: oxidiff_data::CropMode::Random,
        flip: true,
        ..Default::default()
    };
    let load_start = Instant::now();
    let data = oxidiff_data::load_dataset(&data_config, unet.image_size, unet.in_channels)?;
    let loaded = data.len() as f64 / load_start.elapsed().as_secs_f64();
    let order = oxidiff_data::EpochOrder::new(data.len(), batch, 0);
    let mut step = 0u64;
    let data_ms = time_median(config.warmup, config.iters, || {
        let indices = order.batch_indices(step);
        let seed = step;
        // Cached images cannot fail to load.
        if let Ok(x) = data.batch_with(
            &indices,
            data_config.augment(),
            |k| Some(seed * 1000 + k as u64),
            device,
        ) {
            let _ = x.into_data();
        }
        step += 1;
    });
    let stream_ms = streamed_batch_ms(&data, &data_config, batch, config)?;
    Ok(DataRates {
        assembled: batch as f64 / (data_ms * 1e-3),
        loaded,
        streamed: batch as f64 / (stream_ms * 1e-3),
    })
}

/// Median milliseconds to assemble a streamed batch: the first 256 images of `data` written as
/// PNG files to a temporary folder, loaded with `cache = false`, a batch decoded per call.
fn streamed_batch_ms(
    data: &oxidiff_data::Dataset,
    data_config: &oxidiff_data::DataConfig,
    batch: usize,
    config: &BenchConfig,
) -> Result<f64, TrainError> {
    let dir = std::env::temp_dir().join(format!("oxidiff-bench-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    let result = (|| {
        let n = data.len().min(256);
        for i in 0..n {
            let path = dir.join(format!("{i:04}.png"));
            oxidiff_data::save_grid(
                &path,
                data.image(i),
                1,
                data.channels,
                data.stored_size,
                1,
                1,
            )?;
        }
        let stream_config = oxidiff_data::DataConfig {
            source: oxidiff_data::DataSource::Folder,
            path: Some(dir.clone()),
            cache: false,
            ..data_config.clone()
        };
        let files = oxidiff_data::load_dataset(&stream_config, data.size, data.channels)?;
        let order = oxidiff_data::EpochOrder::new(files.len(), batch, 0);
        let mut step = 0u64;
        let mut failed = None;
        let ms = time_median(config.warmup, config.iters, || {
            let indices = order.batch_indices(step);
            let seed = step;
            if let Err(e) = files.assemble(&indices, data_config.augment(), |k| {
                Some(seed * 1000 + k as u64)
            }) {
                failed = Some(e);
            }
            step += 1;
        });
        match failed {
            Some(e) => Err(TrainError::from(e)),
            None => Ok(ms),
        }
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[cfg(test)]
mod tests {
    use burn::module::Module;

    use super::*;

    /// Every zoo network has a diffusers peer (its config.json builds), and the 28×28 row is
    /// the network issue 16 measured: 1,623,169 parameters.
    #[test]
    fn every_zoo_network_has_a_diffusers_config() {
        let zoo = zoo();
        let names: Vec<&str> = zoo.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "tiny",
                "fashion-28",
                "small",
                "small",
                "ddpm-cifar10",
                "latent-text"
            ]
        );
        for config in &zoo {
            let json = match config.unet.cross_attention_dim {
                Some(_) => oxidiff_models::unet2d_condition_config_json(&config.unet),
                None => oxidiff_models::unet2d_config_json(&config.unet),
            };
            assert!(json.is_ok(), "{}: {json:?}", config.name);
        }
        let fashion = zoo[1].unet.init(&Device::flex());
        assert_eq!(fashion.num_params(), 1_623_169);
        assert_eq!((zoo[1].batch, zoo[3].batch), (64, 64));
    }
}
