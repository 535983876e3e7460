//! `oxidiff bench --zoo`: one row per network of [`oxidiff_train::zoo`], each against its
//! PyTorch peer in the same call, and the ratio table.

use crate::bench::Measured;

/// Prints one line per network: oxidiff's figures, and with a peer the ratios (oxidiff over
/// PyTorch: above 1 is faster, below 1 leaner) and both sides' busy cores.
pub fn print_zoo(rows: &[Measured]) {
    let with_peer = rows.iter().any(|m| m.peer.is_some());
    println!(
        "{:<14} {:>5} {:>10} {:>10} {:>9} {:>9} {:>9}  {}",
        "network",
        "batch",
        "params",
        "train i/s",
        "fwd ms",
        "DDIM ms",
        "RSS MiB",
        if with_peer {
            "vs PyTorch: train  fwd   DDIM  memory | cores oxidiff/PyTorch"
        } else {
            "cores"
        }
    );
    for m in rows {
        let r = &m.report;
        let ours = format!(
            "{:<14} {:>5} {:>10} {:>10.1} {:>9.1} {:>9.1} {:>9.0}",
            m.config.name,
            r.batch,
            r.parameters,
            r.train_images_per_s,
            r.forward_ms,
            r.ddim_step_ms,
            r.peak_rss_bytes as f64 / f64::from(1 << 20)
        );
        match (&m.peer, m.ratios()) {
            (Some(peer), Some(ratios)) => {
                let x = |key: &str| {
                    ratios[key]
                        .as_f64()
                        .map_or("   -  ".to_string(), |v| format!("{v:>5.2}x"))
                };
                println!(
                    "{ours}  {:>17} {} {} {}  | {:.2} / {}",
                    x("train_images_per_s"),
                    x("forward_speed"),
                    x("ddim_step_speed"),
                    x("peak_memory"),
                    r.train_cpu_cores,
                    peer["train_cpu_cores"]
                        .as_f64()
                        .map_or("-".to_string(), |c| format!("{c:.2}")),
                );
            }
            _ => println!("{ours}  {:.2}", r.train_cpu_cores),
        }
    }
    if with_peer {
        let below: Vec<&str> = rows
            .iter()
            .filter(|m| {
                m.ratios().is_some_and(|r| {
                    ["train_images_per_s", "forward_speed", "ddim_step_speed"]
                        .iter()
                        .any(|k| r[*k].as_f64().is_some_and(|v| v < 1.0))
                })
            })
            .map(|m| m.config.name.as_str())
            .collect();
        if !below.is_empty() {
            println!("below PyTorch in a speed: {}", below.join(", "));
        }
    }
}
