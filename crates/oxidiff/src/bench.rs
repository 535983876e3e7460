//! `oxidiff bench`: prints the library's benchmark as a table or JSON, and with `--peer` runs the
//! PyTorch peer in a child process and puts the two side by side with their ratios.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use oxidiff_models::Preset;
use oxidiff_train::{BenchConfig, BenchReport, median, run_bench};
use serde_json::{Value, json};

use crate::device::DeviceArg;

pub struct BenchArgs<'a> {
    /// The networks to time: one, or the zoo's.
    pub configs: Vec<BenchConfig>,
    /// Print the zoo's ratio table (one row per network) instead of one network's table.
    pub zoo: bool,
    pub json: bool,
    pub peer_python: Option<&'a Path>,
    /// The peer script for every network; `None`: [`default_peer_script`] of each.
    pub peer_script: Option<&'a Path>,
    pub peak_gflops: Option<f64>,
    /// Runs of oxidiff and the peer, alternating; the medians are reported.
    pub rounds: usize,
    pub device: DeviceArg,
}

/// One network's measurements: the medians over rounds, and each round's ratios.
pub(crate) struct Measured {
    pub config: BenchConfig,
    pub report: BenchReport,
    pub peer: Option<Value>,
    pub round_ratios: Vec<Value>,
}

impl Measured {
    /// The median over rounds of each ratio, with a peer.
    pub fn ratios(&self) -> Option<Value> {
        self.peer
            .as_ref()
            .map(|_| median_ratios(&self.round_ratios))
    }

    fn to_json(&self) -> Result<Value> {
        let mut value = serde_json::to_value(&self.report)?;
        value["rounds"] = json!(self.round_ratios.len().max(1));
        if let Some(peer) = &self.peer {
            value["peer"] = peer.clone();
            value["ratios"] = median_ratios(&self.round_ratios);
            value["round_ratios"] = json!(self.round_ratios);
        }
        Ok(value)
    }
}

pub fn bench(args: BenchArgs<'_>) -> Result<()> {
    let device = args.device.device()?;
    // A peer that cannot run is reported before minutes of timing, not after.
    if args.peer_python.is_some() {
        for config in &args.configs {
            check_peer(&peer_script(&args, config), config)?;
        }
    }
    let mut measured = Vec::with_capacity(args.configs.len());
    for config in &args.configs {
        measured.push(measure(&args, config, &device)?);
    }
    if args.zoo {
        if args.json {
            let rows = measured
                .iter()
                .map(Measured::to_json)
                .collect::<Result<Vec<_>>>()?;
            println!("{}", json!({ "rows": rows }));
        } else {
            crate::bench_zoo::print_zoo(&measured);
        }
        return Ok(());
    }
    for m in &measured {
        if args.json {
            println!("{}", m.to_json()?);
        } else {
            print_table(m);
        }
    }
    Ok(())
}

fn peer_script(args: &BenchArgs<'_>, config: &BenchConfig) -> PathBuf {
    args.peer_script
        .map_or_else(|| default_peer_script(config).into(), Path::to_path_buf)
}

/// `config` timed `args.rounds` times, the peer (if any) after each.
fn measure(args: &BenchArgs<'_>, config: &BenchConfig, device: &Device) -> Result<Measured> {
    let rounds = args.rounds.max(1);
    let mut reports = Vec::with_capacity(rounds);
    let mut peers = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        if !args.json {
            let of = if rounds > 1 {
                format!(" (round {round} of {rounds})")
            } else {
                String::new()
            };
            eprintln!(
                "timing oxidiff{of}: {}, batch {}, {} warm-up + {} timed repetitions each...",
                config.name, config.batch, config.warmup, config.iters
            );
        }
        let mut report = run_bench(config, device)?;
        if args.peak_gflops.is_some() {
            report.peak_gflops_per_s = args.peak_gflops;
        }
        if let Some(python) = args.peer_python {
            let script = peer_script(args, config);
            peers.push(run_peer(python, &script, config, &report, args.json)?);
        }
        reports.push(report);
    }
    let report = BenchReport::median_of(&reports).context("no benchmark round ran")?;
    // Each round's ratio pairs runs made minutes apart, so a machine whose speed drifts over a
    // call moves both sides of it; the median of those ratios is the figure reported.
    let round_ratios: Vec<Value> = reports
        .iter()
        .zip(&peers)
        .map(|(ours, theirs)| ratios(ours, theirs))
        .collect();
    let peer = (!peers.is_empty()).then(|| median_peer(&peers));
    Ok(Measured {
        config: config.clone(),
        report,
        peer,
        round_ratios,
    })
}

/// The peers' timing keys, whose medians over rounds are reported.
const PEER_TIMINGS: [&str; 6] = [
    "train_step_ms",
    "train_images_per_s",
    "train_cpu_cores",
    "forward_ms",
    "ddim_step_ms",
    "peak_memory_bytes",
];

/// One peer result from several rounds: the median of each timing, the rest from the first.
fn median_peer(peers: &[Value]) -> Value {
    let mut combined = peers[0].clone();
    for key in PEER_TIMINGS {
        let mut values: Vec<f64> = peers.iter().filter_map(|p| p[key].as_f64()).collect();
        if !values.is_empty() {
            combined[key] = json!(median(&mut values));
        }
    }
    combined
}

/// The median over rounds of each ratio.
fn median_ratios(rounds: &[Value]) -> Value {
    let mut combined = json!({});
    for key in RATIO_KEYS {
        let mut values: Vec<f64> = rounds.iter().filter_map(|r| r[key].as_f64()).collect();
        combined[key] = if values.is_empty() {
            Value::Null
        } else {
            json!(median(&mut values))
        };
    }
    combined
}

/// The peer script of a network: `small` has its own PyTorch re-implementation
/// (`torch_unet.py`); any other is diffusers' `UNet2DModel` or `UNet2DConditionModel` built from
/// the config.json oxidiff's export writes for it (`diffusers_unet.py`).
pub fn default_peer_script(config: &BenchConfig) -> &'static str {
    if is_small(config) {
        TORCH_PEER
    } else {
        DIFFUSERS_PEER
    }
}

const TORCH_PEER: &str = "bench/peer/torch_unet.py";
const DIFFUSERS_PEER: &str = "bench/peer/diffusers_unet.py";

fn is_small(config: &BenchConfig) -> bool {
    config.unet == Preset::Small.config()
}

/// Whether `script` builds its network from a config.json (every peer but `torch_unet.py`).
fn takes_config(script: &Path) -> bool {
    script.file_name() != Path::new(TORCH_PEER).file_name()
}

/// The diffusers config.json of `config`'s network, as its export writes it.
fn peer_config_json(config: &BenchConfig) -> Result<Value> {
    let unet = &config.unet;
    let json = if unet.cross_attention_dim.is_some() {
        oxidiff_models::unet2d_condition_config_json(unet)
    } else {
        oxidiff_models::unet2d_config_json(unet)
    };
    json.with_context(|| {
        format!(
            "{}: diffusers cannot build this network, so there is no PyTorch peer for it",
            config.name
        )
    })
}

fn check_peer(script: &Path, config: &BenchConfig) -> Result<()> {
    if takes_config(script) {
        peer_config_json(config)?;
    } else if !is_small(config) {
        bail!(
            "{} implements only the `small` preset, not {}: leave --peer-script out for \
             diffusers' UNet of the same config",
            script.display(),
            config.name
        );
    }
    if !script.is_file() {
        bail!(
            "peer script {} not found (run from the repository root, or pass --peer-script)",
            script.display()
        );
    }
    Ok(())
}

fn run_peer(
    python: &Path,
    script: &Path,
    config: &BenchConfig,
    report: &BenchReport,
    quiet: bool,
) -> Result<Value> {
    let device_type = if report.device.to_lowercase().contains("flex") {
        "cpu"
    } else {
        "cuda"
    };
    if !quiet {
        eprintln!(
            "timing the PyTorch peer: {} {}...",
            python.display(),
            script.display()
        );
    }
    let mut command = Command::new(python);
    command
        .arg(script)
        .args(["--json", "--device", device_type])
        .args(["--batch", &config.batch.to_string()])
        .args(["--steps", &config.iters.to_string()])
        .args(["--warmup", &config.warmup.to_string()])
        .args(["--threads", &report.threads.to_string()]);
    // diffusers' peer builds the config.json oxidiff's export writes for the network; a
    // text-conditioned one attends to a context of the same shape.
    let config_path =
        std::env::temp_dir().join(format!("oxidiff-bench-unet-{}.json", std::process::id()));
    if takes_config(script) {
        let json = peer_config_json(config)?;
        std::fs::write(&config_path, serde_json::to_string(&json)?)
            .with_context(|| format!("writing {}", config_path.display()))?;
        command.arg("--config").arg(&config_path);
        if let Some([tokens, _]) = report.context {
            command.args(["--context-tokens", &tokens.to_string()]);
        }
    }
    let output = command.output();
    let _ = std::fs::remove_file(&config_path);
    peer_result(output, python, report.parameters)
}

/// The JSON object a peer printed last, once it has succeeded and built a network of
/// `parameters` parameters (else the comparison is void).
pub(crate) fn peer_result(
    output: std::io::Result<std::process::Output>,
    python: &Path,
    parameters: usize,
) -> Result<Value> {
    let output =
        output.with_context(|| format!("could not start the peer with {}", python.display()))?;
    if !output.status.success() {
        bail!(
            "the peer failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let peer: Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .with_context(|| format!("the peer printed no JSON object: {stdout}"))?;
    if peer["parameters"].as_u64() != Some(parameters as u64) {
        bail!(
            "the peer has {} parameters, oxidiff {parameters}: the networks differ and the \
             comparison is void",
            peer["parameters"],
        );
    }
    Ok(peer)
}

const RATIO_KEYS: [&str; 4] = [
    "train_images_per_s",
    "forward_speed",
    "ddim_step_speed",
    "peak_memory",
];

/// oxidiff over PyTorch for speeds (above 1 is faster) and for memory (below 1 is leaner), keyed
/// by [`RATIO_KEYS`].
fn ratios(report: &BenchReport, peer: &Value) -> Value {
    let ratio = |ours: f64, key: &str| peer[key].as_f64().map(|theirs| ours / theirs);
    json!({
        "train_images_per_s": ratio(report.train_images_per_s, "train_images_per_s"),
        "forward_speed": peer["forward_ms"].as_f64().map(|p| p / report.forward_ms),
        "ddim_step_speed": peer["ddim_step_ms"].as_f64().map(|p| p / report.ddim_step_ms),
        "peak_memory": ratio(report.peak_rss_bytes as f64, "peak_memory_bytes"),
    })
}

fn mib(bytes: f64) -> String {
    format!("{:.0} MiB", bytes / f64::from(1 << 20))
}

fn print_table(measured: &Measured) {
    let report = &measured.report;
    let peer = measured.peer.as_ref();
    let round_ratios = &measured.round_ratios;
    let rounds = round_ratios.len().max(1);
    let context = report.context.map_or(String::new(), |[l, d]| {
        format!(", attending to {l}x{d} text states")
    });
    println!(
        "model: {} ({} parameters), batch {}, {}x{}x{}{context}, fp32; median of {} after {} warm-up{}",
        report.preset,
        report.parameters,
        report.batch,
        report.channels,
        report.image_size,
        report.image_size,
        report.iters,
        report.warmup,
        if rounds > 1 {
            format!(", then the median of {rounds} rounds")
        } else {
            String::new()
        }
    );
    println!(
        "FLOPs per image (analytic, multiply-add = 2): forward {:.3} G, training step {:.3} G (3x forward)",
        report.forward_flops_per_image as f64 / 1e9,
        report.train_flops_per_image as f64 / 1e9
    );
    println!(
        "GFLOP/s below = those FLOPs / time, an effective rate: on the CPU backend the 3x3 convolutions run as Winograd \
         products with 2.25-4x fewer multiplications, so the rate can exceed the peak."
    );
    let peak = report
        .peak_gflops_per_s
        .map_or("unknown".to_string(), |p| format!("{p:.0} GFLOP/s"));
    println!(
        "device: {}, {} threads; theoretical fp32 peak at the nominal clock: {peak}",
        report.device, report.threads
    );
    println!();
    let pct = |g: f64| {
        report.peak_gflops_per_s.map_or(String::new(), |p| {
            format!(" ({:.0}% of peak)", 100.0 * g / p)
        })
    };
    let mut ours = vec![
        (
            "train step",
            format!(
                "{:.1} ms (fwd {:.0} + bwd {:.0} + optim {:.0})",
                report.train_step_ms,
                report.train_forward_ms,
                report.train_backward_ms,
                report.optimizer_ms
            ),
        ),
        (
            "train images/s",
            format!("{:.2}", report.train_images_per_s),
        ),
        (
            "train cores busy",
            format!("{:.2} of {}", report.train_cpu_cores, report.threads),
        ),
        (
            "train GFLOP/s",
            format!(
                "{:.1}{}",
                report.train_gflops_per_s,
                pct(report.train_gflops_per_s)
            ),
        ),
        ("forward", format!("{:.1} ms", report.forward_ms)),
        (
            "forward GFLOP/s",
            format!(
                "{:.1}{}",
                report.forward_gflops_per_s,
                pct(report.forward_gflops_per_s)
            ),
        ),
        ("DDIM step", format!("{:.1} ms", report.ddim_step_ms)),
        ("peak RSS", mib(report.peak_rss_bytes as f64)),
    ];
    if let (Some(assembled), Some(loaded), Some(streamed)) = (
        report.data_images_per_s,
        report.data_load_images_per_s,
        report.data_stream_images_per_s,
    ) {
        ours.push((
            "data images/s",
            format!(
                "{assembled:.0} per batch assembly (random crop + flip, {:.0}x the training rate); {loaded:.0} loaded/s",
                assembled / report.train_images_per_s,
            ),
        ));
        ours.push((
            "streamed img/s",
            format!(
                "{streamed:.0} decoded from PNG files per batch (data.cache = false; {:.0}x the training rate)",
                streamed / report.train_images_per_s,
            ),
        ));
    }
    let Some(peer) = peer else {
        for (name, value) in ours {
            println!("{name:<16} {value}");
        }
        return;
    };
    let f = |key: &str| peer[key].as_f64().unwrap_or(f64::NAN);
    let flops = |ms: f64, per_image: u64| per_image as f64 * report.batch as f64 / ms / 1e6;
    let theirs = [
        format!("{:.1} ms", f("train_step_ms")),
        format!("{:.2}", f("train_images_per_s")),
        format!("{:.2}", f("train_cpu_cores")),
        format!(
            "{:.1}",
            flops(f("train_step_ms"), report.train_flops_per_image)
        ),
        format!("{:.1} ms", f("forward_ms")),
        format!(
            "{:.1}",
            flops(f("forward_ms"), report.forward_flops_per_image)
        ),
        format!("{:.1} ms", f("ddim_step_ms")),
        mib(f("peak_memory_bytes")),
    ];
    let r = median_ratios(round_ratios);
    let x = |v: &Value| v.as_f64().map_or("-".into(), |v| format!("{v:.2}x"));
    let ratio_col = [
        format!("{} throughput", x(&r["train_images_per_s"])),
        String::new(),
        String::new(),
        String::new(),
        format!("{} speed", x(&r["forward_speed"])),
        String::new(),
        format!("{} speed", x(&r["ddim_step_speed"])),
        format!("{} memory", x(&r["peak_memory"])),
    ];
    let torch = format!("PyTorch {}", peer["torch_version"].as_str().unwrap_or("?"));
    println!(
        "{:<16} {:>22} {:>22}   oxidiff/PyTorch",
        "", "oxidiff", torch
    );
    for (((name, ours), theirs), ratio) in ours.iter().zip(&theirs).zip(&ratio_col) {
        println!("{name:<16} {ours:>36} {theirs:>22}   {ratio}");
    }
    // Rows the peer does not measure.
    for (name, ours) in &ours[theirs.len()..] {
        println!("{name:<16} {ours}");
    }
    if round_ratios.len() > 1 {
        let per_round: Vec<String> = round_ratios
            .iter()
            .map(|r| x(&r["train_images_per_s"]))
            .collect();
        println!(
            "training throughput ratio per round (oxidiff, then the peer): {}; ratios above are medians over rounds",
            per_round.join(", ")
        );
    }
    if let Some(peer_flops) = peer["forward_flops_per_image"].as_u64()
        && peer_flops != report.forward_flops_per_image
    {
        println!(
            "note: the peer counts {peer_flops} forward FLOPs per image, oxidiff {}",
            report.forward_flops_per_image
        );
    }
}
