//! `oxidiff bench --autoencoder PRESET`: the autoencoder's benchmark as a table or JSON, and
//! with `--peer` diffusers' `AutoencoderKL` of the same config timed in a child process
//! (`bench/peer/torch_vae.py`), side by side with the ratios.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use oxidiff_train::{AutoencoderBenchConfig, AutoencoderBenchReport, run_autoencoder_bench};
use serde_json::{Value, json};

use crate::device::DeviceArg;

pub struct AutoencoderBenchArgs<'a> {
    pub config: AutoencoderBenchConfig,
    pub json: bool,
    pub peer_python: Option<&'a Path>,
    pub peer_script: &'a Path,
    pub device: DeviceArg,
}

pub fn bench_autoencoder(args: AutoencoderBenchArgs<'_>) -> Result<()> {
    if args.peer_python.is_some() && !args.peer_script.is_file() {
        bail!(
            "peer script {} not found (run from the repository root, or pass --peer-script)",
            args.peer_script.display()
        );
    }
    let device = args.device.device()?;
    let c = &args.config;
    if !args.json {
        eprintln!(
            "timing oxidiff: autoencoder {} at {}x{}x{}, batch {}, {} warm-up + {} timed repetitions each...",
            c.preset, c.channels, c.image_size, c.image_size, c.batch, c.warmup, c.iters
        );
    }
    let report = run_autoencoder_bench(c, &device)?;
    let peer = match args.peer_python {
        Some(python) => Some(run_peer(python, args.peer_script, c, &report, args.json)?),
        None => None,
    };
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        if let Some(peer) = &peer {
            value["peer"] = peer.clone();
            value["ratios"] = ratios(&report, peer);
        }
        println!("{value}");
    } else {
        print_table(&report, peer.as_ref());
    }
    Ok(())
}

fn run_peer(
    python: &Path,
    script: &Path,
    config: &AutoencoderBenchConfig,
    report: &AutoencoderBenchReport,
    quiet: bool,
) -> Result<Value> {
    // The peer builds diffusers' AutoencoderKL from the config.json oxidiff's preset is.
    let config_path =
        std::env::temp_dir().join(format!("oxidiff-bench-vae-{}.json", std::process::id()));
    std::fs::write(&config_path, serde_json::to_string(&report.config)?)
        .with_context(|| format!("writing {}", config_path.display()))?;
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
        .arg("--json")
        .arg("--config")
        .arg(&config_path)
        .args(["--image-size", &config.image_size.to_string()])
        .args(["--batch", &config.batch.to_string()])
        .args(["--steps", &config.iters.to_string()])
        .args(["--warmup", &config.warmup.to_string()])
        .args(["--threads", &report.threads.to_string()]);
    if !config.train {
        command.arg("--no-train");
    }
    let output = command.output();
    let _ = std::fs::remove_file(&config_path);
    crate::bench::peer_result(output, python, report.parameters)
}

/// oxidiff over PyTorch for speeds (above 1 is faster) and for memory (below 1 is leaner).
fn ratios(report: &AutoencoderBenchReport, peer: &Value) -> Value {
    let speed = |ours: Option<f64>, key: &str| {
        ours.zip(peer[key].as_f64())
            .map(|(ours, theirs)| theirs / ours)
    };
    json!({
        "train_speed": speed(report.train_step_ms, "train_step_ms"),
        "encode_speed": speed(Some(report.encode_ms), "encode_ms"),
        "decode_speed": speed(Some(report.decode_ms), "decode_ms"),
        "peak_memory": peer["peak_memory_bytes"].as_f64().map(|p| report.peak_rss_bytes as f64 / p),
    })
}

fn print_table(report: &AutoencoderBenchReport, peer: Option<&Value>) {
    println!(
        "autoencoder: {} ({} parameters, f = {}), batch {}, {}x{}x{}, fp32; median of {} after {} warm-up; {} threads, {}",
        report.preset,
        report.parameters,
        report.config.downsampling_factor(),
        report.batch,
        report.channels,
        report.image_size,
        report.image_size,
        report.iters,
        report.warmup,
        report.threads,
        report.device
    );
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
    let mib = |b: f64| format!("{:.0} MiB", b / f64::from(1 << 20));
    let f = |key: &str| peer.and_then(|p| p[key].as_f64());
    let r = peer.map(|p| ratios(report, p));
    let x = |key: &str, what: &str| {
        r.as_ref()
            .and_then(|r| r[key].as_f64())
            .map_or(String::new(), |v| format!("{v:.2}x {what}"))
    };
    let rows = [
        (
            "train step",
            ms(report.train_step_ms),
            ms(f("train_step_ms")),
            x("train_speed", "speed"),
        ),
        (
            "encode",
            ms(Some(report.encode_ms)),
            ms(f("encode_ms")),
            x("encode_speed", "speed"),
        ),
        (
            "decode",
            ms(Some(report.decode_ms)),
            ms(f("decode_ms")),
            x("decode_speed", "speed"),
        ),
        (
            "peak RSS",
            mib(report.peak_rss_bytes as f64),
            f("peak_memory_bytes").map_or("-".into(), mib),
            x("peak_memory", "memory"),
        ),
    ];
    let torch = peer.map_or(String::new(), |p| {
        format!("PyTorch {}", p["torch_version"].as_str().unwrap_or("?"))
    });
    println!(
        "{:<12} {:>12} {:>16}   {}",
        "",
        "oxidiff",
        torch,
        if peer.is_some() {
            "oxidiff/PyTorch"
        } else {
            ""
        }
    );
    for (name, ours, theirs, ratio) in rows {
        println!("{name:<12} {ours:>12} {theirs:>16}   {ratio}");
    }
}
