//! The `oxidiff` binary end to end, in temporary directories.

mod common;

use common::{oxidiff, refused, stderr, stdout, train_tiny, write_inpaint_inputs};

#[test]
fn train_resume_and_sample_on_the_embedded_digits() {
    let tmp = tempfile::tempdir().unwrap();
    let fast = [
        "--set",
        "train.steps=6",
        "--set",
        "train.batch_size=8",
        "--set",
        "train.checkpoint_every=3",
        "--set",
        "train.sample_every=3",
        "--set",
        "train.log_every=1",
        "--set",
        "sample.num=4",
        "--set",
        "sample.steps=3",
        "--set",
        "model.model_channels=16",
        "--set",
        "model.norm_groups=4",
    ];
    let mut args = vec!["train"];
    args.extend(fast);
    args.extend(["--stop-after", "3"]);
    let out = oxidiff(&args, tmp.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let run = tmp.path().join("runs/tiny-001");
    assert!(run.join("config.toml").is_file());
    assert!(run.join("checkpoints/step-0000003/model.bpk").is_file());
    assert!(run.join("samples/step-0000003.png").is_file());
    assert!(stderr(&out).contains("1797 images"), "{}", stderr(&out));
    // Not a terminal: plain progress lines.
    assert!(stderr(&out).contains("step 3/6 loss"), "{}", stderr(&out));

    let out = oxidiff(&["train", "--resume", "runs/tiny-001"], tmp.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(run.join("checkpoints/step-0000006/ema.bpk").is_file());
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 6);
    for key in [
        "\"step\"",
        "\"loss\"",
        "\"lr\"",
        "\"grad_norm\"",
        "\"images_per_sec\"",
    ] {
        assert!(metrics.lines().next().unwrap().contains(key), "{key}");
    }

    // ddpm with fewer steps than T is the respaced ancestral chain: 4 calls, not T.
    for (sampler, spacing) in [("ddim", "leading"), ("ddpm", "trailing")] {
        let png = format!("out/{sampler}.png");
        let out = oxidiff(
            &[
                "sample",
                "--checkpoint",
                "runs/tiny-001",
                "--sampler",
                sampler,
                "--steps",
                "4",
                "--spacing",
                spacing,
                "--num",
                "9",
                "--out",
                &png,
            ],
            tmp.path(),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("(4 network calls per image)"),
            "{}",
            stderr(&out)
        );
        let img = image::open(tmp.path().join(&png)).unwrap();
        // 3×3 tiles of 8×8 upscaled 8×, with 2-px padding.
        assert!(
            img.width() >= 3 * 64 && img.height() >= 3 * 64,
            "{}×{}",
            img.width(),
            img.height()
        );
    }
    // The other samplers, into folders of one PNG per image.
    for sampler in ["pndm", "euler", "heun", "dpmpp-2m", "dpmpp-2m-sde"] {
        let dir = format!("out/{sampler}");
        let out = oxidiff(
            &[
                "sample",
                "--checkpoint",
                "runs/tiny-001",
                "--sampler",
                sampler,
                "--steps",
                "4",
                "--karras",
                "--num",
                "3",
                "--out-dir",
                &dir,
            ],
            tmp.path(),
        );
        assert!(out.status.success(), "{sampler}: {}", stderr(&out));
        for k in 0..3 {
            let img =
                image::open(tmp.path().join(&dir).join(format!("sample-{k:04}.png"))).unwrap();
            assert_eq!((img.width(), img.height()), (8, 8), "{sampler}");
        }
        // 4 Karras steps of the linear schedule, σ ≈ 157, 21, 1.25, 0.01: Heun's error gain is
        // (21 − 1.25)/(2 · 1.25) ≈ 7.9, below the warning's 10.
        assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    }
    // 2 Karras steps jump from σ ≈ 157 to 0.01 in one corrected step: gain ≈ 157.
    let out = oxidiff(
        &[
            "sample",
            "--checkpoint",
            "runs/tiny-001",
            "--sampler",
            "heun",
            "--steps",
            "2",
            "--karras",
            "--num",
            "1",
            "--out",
            "heun2.png",
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: one Heun step"),
        "{}",
        stderr(&out)
    );
    refused(
        &[
            "sample",
            "--checkpoint",
            "runs/tiny-001",
            "--sampler",
            "rk4",
            "--out",
            "x.png",
        ],
        tmp.path(),
        "dpmpp-2m",
    );
}

#[test]
fn bad_config_exits_non_zero_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["train", "--set", "train.lr=-1"], "train.lr"),
        (
            &["train", "--set", "diffusion.num_train_timesteps=0"],
            "num_train_timesteps",
        ),
        (&["train", "--set", "train.lrr=1"], "lrr"),
        (&["train", "--set", "train.steps=many"], "train.steps"),
        (&["train", "--config", "missing.toml"], "missing.toml"),
        (
            &["sample", "--checkpoint", "nowhere", "--out", "x.png"],
            "nowhere",
        ),
    ];
    for (args, key) in cases {
        let out = oxidiff(args, tmp.path());
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(key), "{args:?}: `{err}` does not name {key}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
    std::fs::write(tmp.path().join("bad.toml"), "[train]\nsteps = \"ten\"\n").unwrap();
    let out = oxidiff(&["train", "--config", "bad.toml"], tmp.path());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("bad.toml") && stderr(&out).contains("train.steps"),
        "{}",
        stderr(&out)
    );
    assert!(
        !tmp.path().join("runs").exists(),
        "a failed start must not leave a run directory"
    );
}

#[test]
fn config_default_and_model_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let out = oxidiff(&["config", "default"], tmp.path());
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for key in [
        "seed",
        "steps",
        "batch_size",
        "lr",
        "checkpoint_every",
        "sample_every",
        "preset",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{key} ="))),
            "{key} missing"
        );
    }
    std::fs::write(tmp.path().join("run.toml"), &text).unwrap();

    let out = oxidiff(&["model", "--preset", "small"], tmp.path());
    assert!(out.status.success());
    assert!(stdout(&out).contains("parameters: 6472195"));
    let out = oxidiff(&["model", "--preset", "ddpm-cifar10"], tmp.path());
    assert!(stdout(&out).contains("parameters: 35746307"));
}

#[test]
fn bench_prints_json_and_rejects_a_missing_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let quick = [
        "bench", "--preset", "tiny", "--batch", "2", "--iters", "1", "--warmup", "0",
    ];
    let out = oxidiff(&[&quick[..], &["--json"]].concat(), tmp.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(report["parameters"], 701_345);
    assert_eq!(report["batch"], 2);
    for key in [
        "train_images_per_s",
        "forward_ms",
        "ddim_step_ms",
        "peak_rss_bytes",
    ] {
        assert!(
            report[key].as_f64().is_some_and(|v| v > 0.0),
            "{key}: {}",
            report[key]
        );
    }
    // 3x the forward FLOPs, by definition of the reported training count.
    assert_eq!(
        report["train_flops_per_image"].as_u64().unwrap(),
        3 * report["forward_flops_per_image"].as_u64().unwrap()
    );

    assert_eq!(report["context"], serde_json::Value::Null);
    assert!(report["data_images_per_s"].as_f64().is_some());

    // A text-conditioned preset attends to a 77-token context; its data are latents, so there
    // is no image data path to time.
    let text = [
        "bench",
        "--preset",
        "latent-text",
        "--batch",
        "1",
        "--iters",
        "1",
        "--warmup",
        "0",
        "--json",
    ];
    let out = oxidiff(&text, tmp.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(report["parameters"], 9_309_636);
    assert_eq!(report["context"], serde_json::json!([77, 384]));
    assert_eq!(report["data_images_per_s"], serde_json::Value::Null);

    // A network diffusers cannot build has no peer (two heads over attention levels of 32 and
    // 64 channels), and a peer that cannot run is an error, not a panic.
    let two_heads = [
        "--set",
        "model.attention_resolutions=[8, 4]",
        "--set",
        "model.num_heads=2",
        "--peer",
        "python3",
    ];
    let out = oxidiff(&[&quick[..], &two_heads].concat(), tmp.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("tiny+set: diffusers cannot build this network"),
        "{}",
        stderr(&out)
    );
    let out = oxidiff(
        &[
            &quick[..],
            &[
                "--peer",
                "python3",
                "--peer-script",
                "bench/peer/torch_unet.py",
            ],
        ]
        .concat(),
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("implements only the `small` preset, not tiny"),
        "{}",
        stderr(&out)
    );
    let small = ["bench", "--batch", "1", "--iters", "1", "--warmup", "0"];
    let missing = [
        "--peer",
        "/nonexistent/python",
        "--peer-script",
        "/nonexistent/peer.py",
    ];
    let out = oxidiff(&[&small[..], &missing].concat(), tmp.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/nonexistent/peer.py"),
        "{}",
        stderr(&out)
    );
}

/// `oxidiff bench` with `args` and a stand-in peer whose source is `peer` (a Python script
/// written into `dir`).
fn bench_with_peer(args: &[&str], peer: &str, dir: &std::path::Path) -> std::process::Output {
    let script = dir.join("stand_in_peer.py");
    std::fs::write(&script, peer).unwrap();
    let peer_args = [
        "--peer",
        "python3",
        "--peer-script",
        script.to_str().unwrap(),
    ];
    oxidiff(&[&["bench"][..], args, &peer_args].concat(), dir)
}

/// Any network but `small` gets diffusers' peer, which builds it from the config.json oxidiff's
/// export writes: here a stand-in that checks what it is given and reports tiny's parameter count
/// and its own cores.
#[test]
fn bench_gives_a_non_small_network_its_diffusers_config() {
    let tmp = tempfile::tempdir().unwrap();
    let peer = r#"import json, sys
config = json.load(open(sys.argv[sys.argv.index("--config") + 1]))
assert config["_class_name"] == "UNet2DModel", config
assert config["sample_size"] == 8 and config["in_channels"] == 1, config
assert "--context-tokens" not in sys.argv
print(json.dumps({"parameters": 701345, "torch_version": "stand-in", "train_step_ms": 100.0,
    "train_images_per_s": 20.0, "train_cpu_cores": 1.5, "forward_ms": 50.0,
    "ddim_step_ms": 60.0, "peak_memory_bytes": 1e9}))
"#;
    let args = [
        "--preset", "tiny", "--batch", "2", "--iters", "1", "--warmup", "0",
    ];
    let out = bench_with_peer(&args, peer, tmp.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.contains("train cores busy"), "{table}");
    assert!(table.contains("1.50"), "the peer's cores: {table}");
}

/// `--rounds` alternates oxidiff and the peer and reports the median of the per-round ratios.
/// The peer here is a stand-in script with fixed figures, so each ratio is known from
/// oxidiff's own numbers.
#[test]
fn bench_rounds_report_the_median_of_per_round_ratios() {
    let tmp = tempfile::tempdir().unwrap();
    let peer = r#"import json
print(json.dumps({"parameters": 6472195, "torch_version": "stand-in", "train_step_ms": 1000.0,
    "train_images_per_s": 1.0, "forward_ms": 500.0, "ddim_step_ms": 600.0,
    "peak_memory_bytes": 1e12}))
"#;
    let args = [
        "--batch", "1", "--iters", "1", "--warmup", "0", "--rounds", "3", "--json",
    ];
    let out = bench_with_peer(&args, peer, tmp.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(report["rounds"], 3);
    let rounds = report["round_ratios"]
        .as_array()
        .expect("one ratio object per round");
    assert_eq!(rounds.len(), 3);
    let mut train: Vec<f64> = rounds
        .iter()
        .map(|r| r["train_images_per_s"].as_f64().unwrap())
        .collect();
    train.sort_by(f64::total_cmp);
    assert_eq!(
        report["ratios"]["train_images_per_s"].as_f64(),
        Some(train[1])
    );
    // The peer trains at 1 image/s, so each round's ratio is oxidiff's own rate; the reported
    // rate is the median of the three, from the median step time.
    let rate = report["train_images_per_s"].as_f64().unwrap();
    assert!((rate - train[1]).abs() < 1e-9 * rate, "{rate} vs {train:?}");
    assert!(report["ratios"]["peak_memory"].as_f64().unwrap() < 1.0);
    // Peak memory is the first round's, measured in a fresh process as each peer run is.
    let peak = report["peak_rss_bytes"].as_f64().unwrap();
    assert_eq!(Some(peak / 1e12), rounds[0]["peak_memory"].as_f64());
    assert_eq!(report["peer"]["forward_ms"], 500.0);
}

#[test]
fn eval_prints_bits_per_dim_bands_and_fd_oxidiff_and_writes_json() {
    let tmp = tempfile::tempdir().unwrap();
    train_tiny(
        "run",
        &["train.steps=4", "data.validation_fraction=0.05"],
        tmp.path(),
    );
    let out = oxidiff(
        &[
            "eval",
            "--checkpoint",
            "run",
            "--images",
            "16",
            "--stride",
            "200",
            "--fd",
            "--fd-samples",
            "8",
            "--sampler",
            "dpmpp-2m",
            "--steps",
            "3",
            "--json",
            "eval.json",
        ],
        tmp.path(),
    );
    let said = stdout(&out);
    assert!(out.status.success(), "{}{said}", stderr(&out));
    for needle in [
        "bits/dim",
        "ε-MSE by band",
        "FD-oxidiff",
        "not FID",
        "16 images",
    ] {
        assert!(said.contains(needle), "missing {needle:?} in:\n{said}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("eval.json")).unwrap())
            .unwrap();
    assert_eq!(json["images"], 16);
    assert!(json["nll"]["bpd"].as_f64().unwrap() > 0.0);

    // Bad requests: a test split without a source, a non-data override.
    refused(
        &["eval", "--checkpoint", "run", "--split", "test"],
        tmp.path(),
        "--data",
    );
    refused(
        &["eval", "--checkpoint", "run", "--set", "train.steps=3"],
        tmp.path(),
        "only data.*",
    );
}

#[test]
fn class_conditional_training_and_guided_sampling() {
    let tmp = tempfile::tempdir().unwrap();
    train_tiny(
        "cond",
        &["model.num_classes=10", "train.steps=3"],
        tmp.path(),
    );
    let out = oxidiff(
        &[
            "sample",
            "--checkpoint",
            "cond",
            "--class",
            "3",
            "--guidance",
            "2.5",
            "--num",
            "4",
            "--steps",
            "3",
            "--out",
            "three.png",
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(tmp.path().join("three.png").is_file());
    refused(
        &[
            "sample",
            "--checkpoint",
            "cond",
            "--class",
            "10",
            "--out",
            "x.png",
        ],
        tmp.path(),
        "classes 0..9",
    );

    // An unconditional model has no classes to guide toward.
    train_tiny("plain", &["train.steps=3"], tmp.path());
    refused(
        &[
            "sample",
            "--checkpoint",
            "plain",
            "--class",
            "1",
            "--out",
            "x.png",
        ],
        tmp.path(),
        "not class-conditional",
    );
}

#[test]
fn inpaint_and_denoise_an_image_with_a_trained_model() {
    let tmp = tempfile::tempdir().unwrap();
    train_tiny("run", &["train.steps=3"], tmp.path());
    // An 8×8 gradient, and a mask that generates the right half (white) and keeps the left.
    let image = write_inpaint_inputs(tmp.path());
    image::GrayImage::new(9, 8)
        .save(tmp.path().join("odd.png"))
        .unwrap();
    for extra in [
        &[][..],
        &["--repaint", "--jump-length", "2", "--resample", "2"][..],
        &["--repaint", "--spacing", "leading"][..],
    ] {
        let mut args = vec![
            "inpaint",
            "--checkpoint",
            "run",
            "--image",
            "in.png",
            "--mask",
            "mask.png",
            "--out",
            "filled.png",
            "--steps",
            "6",
        ];
        args.extend(extra);
        let out = oxidiff(&args, tmp.path());
        assert!(out.status.success(), "{extra:?}: {}", stderr(&out));
        let filled = image::open(tmp.path().join("filled.png"))
            .unwrap()
            .to_luma8();
        assert_eq!(filled.dimensions(), (8, 8));
        for y in 0..8 {
            for x in 0..4 {
                let (a, b) = (filled.get_pixel(x, y)[0], image.get_pixel(x, y)[0]);
                assert!(
                    a.abs_diff(b) <= 1,
                    "kept pixel ({x}, {y}) changed: {a} vs {b}"
                );
            }
        }
    }
    for how in [&["--strength", "0.4"][..], &["--sigma", "20"][..]] {
        let out = oxidiff(
            &[
                "denoise",
                "--checkpoint",
                "run",
                "--image",
                "in.png",
                "--out",
                "clean.png",
                "--steps",
                "5",
            ]
            .into_iter()
            .chain(how.iter().copied())
            .collect::<Vec<_>>(),
            tmp.path(),
        );
        assert!(out.status.success(), "{how:?}: {}", stderr(&out));
        assert!(tmp.path().join("clean.png").is_file());
    }
    // Out-of-range σ and strength are explained in the flag's own units.
    for (how, expected) in [
        (["--sigma", "-1"], "8-bit levels"),
        (["--sigma", "1e9"], "8-bit levels"),
        (["--strength", "-1"], "strength"),
    ] {
        let out = oxidiff(
            &[
                "denoise",
                "--checkpoint",
                "run",
                "--image",
                "in.png",
                "--out",
                "bad.png",
                how[0],
                how[1],
            ],
            tmp.path(),
        );
        let err = stderr(&out);
        assert!(
            !out.status.success() && err.contains(expected),
            "{how:?}: {err}"
        );
        assert!(!tmp.path().join("bad.png").exists());
    }
    // A size mismatch is named, with both sizes; asking for both methods is refused.
    let err = refused(
        &[
            "inpaint",
            "--checkpoint",
            "run",
            "--image",
            "odd.png",
            "--mask",
            "mask.png",
            "--out",
            "x.png",
        ],
        tmp.path(),
        "odd.png",
    );
    assert!(err.contains("9×8") && err.contains("8×8"), "{err}");
    let out = oxidiff(
        &[
            "denoise",
            "--checkpoint",
            "run",
            "--image",
            "in.png",
            "--out",
            "x.png",
            "--strength",
            "0.5",
            "--sigma",
            "3",
        ],
        tmp.path(),
    );
    assert!(!out.status.success());
}

#[test]
fn an_autoencoder_is_trained_and_resumed_by_the_same_command() {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = vec!["train"];
    for set in [
        "task=autoencoder",
        "autoencoder.image_size=8",
        "autoencoder.in_channels=1",
        "autoencoder.block_out_channels=[8, 16]",
        "autoencoder.norm_num_groups=4",
        "train.steps=4",
        "train.batch_size=8",
        "train.log_every=1",
        "train.eval_every=2",
    ] {
        args.extend(["--set", set]);
    }
    args.extend(["--stop-after", "2"]);
    let out = oxidiff(&args, tmp.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let run = tmp.path().join("runs/vae-small-001");
    assert!(run.join("checkpoints/step-0000002/SHA256SUMS").is_file());
    assert!(
        stderr(&out).contains("reconstruction PSNR"),
        "{}",
        stderr(&out)
    );
    let out = oxidiff(&["train", "--resume", "runs/vae-small-001"], tmp.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(run.join("checkpoints/step-0000004/model.bpk").is_file());
    assert!(run.join("samples/step-0000004.png").is_file());
    // `oxidiff model` describes an autoencoder config without building it.
    let out = oxidiff(
        &[
            "model",
            "--set",
            "task=autoencoder",
            "--set",
            "autoencoder.preset=stable-diffusion",
            "--set",
            "autoencoder.image_size=256",
        ],
        tmp.path(),
    );
    let said = stdout(&out);
    assert!(
        said.contains("latents 4×32×32 (f = 8)") && said.contains("parameters: 83653863"),
        "{said}"
    );
    // An autoencoder does not sample: said so, not a weight-loading error.
    refused(
        &[
            "sample",
            "--checkpoint",
            "runs/vae-small-001",
            "--out",
            "x.png",
        ],
        tmp.path(),
        "is an autoencoder",
    );
    // `oxidiff eval` scores its reconstructions.
    let out = oxidiff(
        &[
            "eval",
            "--checkpoint",
            "runs/vae-small-001",
            "--fd",
            "--images",
            "16",
        ],
        tmp.path(),
    );
    let said = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        said.contains("SSIM") && said.contains("FD-oxidiff of the reconstructions"),
        "{said}"
    );

    // The second stage: a diffusion run on its latents, sampled to decoded images.
    let mut args = vec!["train"];
    for set in [
        "latent.autoencoder=\"runs/vae-small-001\"",
        "diffusion.clip_sample=false",
        "train.steps=2",
        "train.batch_size=8",
    ] {
        args.extend(["--set", set]);
    }
    let out = oxidiff(&args, tmp.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the UNet trains on 4×4×4 latents"),
        "{}",
        stderr(&out)
    );
    assert!(tmp.path().join("runs/ldm-tiny-001/latent.json").is_file());
    let out = oxidiff(
        &[
            "sample",
            "--checkpoint",
            "runs/ldm-tiny-001",
            "--num",
            "2",
            "--steps",
            "3",
            "--out-dir",
            "decoded",
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let image = image::open(tmp.path().join("decoded/sample-0000.png")).unwrap();
    assert_eq!((image.width(), image.height()), (8, 8), "decoded to pixels");
}
