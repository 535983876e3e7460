//! `oxidiff data inspect`: the CLI face of `oxidiff_data::inspect`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use oxidiff_data::{Inspection, inspect, save_grid};
use oxidiff_train::RunConfig;

/// What `data inspect` was asked.
pub struct InspectArgs {
    pub path: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub overrides: Vec<String>,
    pub preview: PathBuf,
}

/// `--set data.source=… --set data.path=…` for a bare PATH: a directory is a folder source, a
/// `.npy` file an array, anything else is read as IDX (whose header is checked when loading).
pub(crate) fn source_overrides(path: &Path) -> Result<Vec<String>> {
    let source = if path.is_dir() {
        "folder"
    } else if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
    {
        "npy"
    } else if path.is_file() {
        "idx"
    } else {
        bail!("{}: no such file or directory", path.display());
    };
    let quoted = path
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    Ok(vec![
        format!("data.source=\"{source}\""),
        format!("data.path=\"{quoted}\""),
    ])
}

pub fn inspect_command(args: InspectArgs) -> Result<()> {
    let mut overrides = match &args.path {
        Some(path) => source_overrides(path)?,
        None => Vec::new(),
    };
    overrides.extend(args.overrides);
    let config = match &args.config {
        Some(path) => RunConfig::load(path, &overrides)?,
        None => RunConfig::default_with(&overrides)?,
    };
    let unet = config.model.resolve()?;
    let report = inspect(&config.data, unet.image_size, unet.in_channels)
        .with_context(|| format!("inspecting {}", config.data.describe_source()))?;
    print_inspection(&config, &report);
    let data = &report.dataset;
    // Streamed datasets decode again here; a file that broke since the load is left out.
    let images: Vec<f32> = (0..data.len().min(64))
        .filter_map(|i| data.load(i).ok())
        .flat_map(|image| image.into_owned())
        .collect();
    let n = images.len() / data.image_len().max(1);
    let nrow = (n as f64).sqrt().ceil().max(1.0) as usize;
    save_grid(
        &args.preview,
        &images,
        n,
        data.channels,
        data.stored_size,
        nrow,
        (64 / data.stored_size.max(1)).max(1) as u32,
    )?;
    println!("preview: {} (the first {n} images)", args.preview.display());
    Ok(())
}

fn print_inspection(config: &RunConfig, report: &Inspection) {
    let data = &report.dataset;
    println!("source: {}", config.data.describe_source());
    println!(
        "images: {} usable of {} found, {} skipped; stored as {}×{}×{} for the model's {}×{} (preset {})",
        data.len(),
        report.found,
        data.skipped.len(),
        data.channels,
        data.stored_size,
        data.stored_size,
        data.size,
        data.size,
        config.model.preset
    );
    if !report.sizes.is_empty() {
        let sizes: Vec<String> = report
            .sizes
            .iter()
            .take(5)
            .map(|(s, n)| format!("{s} ({n})"))
            .collect();
        let more = report.sizes.len().saturating_sub(5);
        let tail = if more > 0 {
            format!(", {more} more")
        } else {
            String::new()
        };
        println!("stored sizes: {}{tail}", sizes.join(", "));
    }
    if !report.color_types.is_empty() {
        let colors: Vec<String> = report
            .color_types
            .iter()
            .map(|(c, n)| format!("{c} ({n})"))
            .collect();
        println!("stored colour types: {}", colors.join(", "));
    }
    println!("labels:");
    for (name, count) in data.class_names.iter().zip(data.class_counts()) {
        println!("  {name:<20} {count}");
    }
    let stats: Vec<String> = report
        .channel_mean
        .iter()
        .zip(&report.channel_std)
        .map(|(m, s)| format!("{m:.4} ± {s:.4}"))
        .collect();
    println!("per-channel mean ± std in [0, 1]: {}", stats.join(", "));
    if let Some(c) = oxidiff_data::CaptionReport::new(&config.data, data) {
        println!(
            "captions ({}): {} images captioned ({} with several, one drawn per step), {} \
             without (trained with the empty caption)",
            c.source, c.captioned, c.several, c.missing
        );
        for key in c.missing_images.iter().take(10) {
            println!("  no caption: {key}");
        }
        if c.missing_images.len() > 10 {
            println!(
                "  … and {} more (all in a run's data_report.json)",
                c.missing - 10
            );
        }
        if let Some(first) = (0..data.len()).find_map(|i| data.captions_of(i).first().cloned()) {
            println!("  first caption: {first:?}");
        }
        match oxidiff_train::token_lengths(config, data) {
            Ok(Some(t)) => {
                println!(
                    "  length in tokens ({}; context {}): min {}, median {}, max {} over {} \
                     distinct captions; {} longer than the context, truncated",
                    t.tokenizer, t.context_length, t.min, t.median, t.max, t.captions, t.truncated
                );
                for caption in &t.truncated_examples {
                    println!("  truncated: {caption:?}");
                }
            }
            Ok(None) => {}
            Err(e) => println!("  length in tokens: not measured: {e}"),
        }
    }
    for (path, reason) in &data.skipped {
        println!("skipped {}: {reason}", path.display());
    }
}
