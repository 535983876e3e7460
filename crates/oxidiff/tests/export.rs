//! `oxidiff export` end to end: a run trained by the binary, exported as a diffusers pipeline
//! directory, and that directory sampled, inpainted and denoised by the binary like a run.

mod common;

use common::{oxidiff, refused, stderr, stdout, train_tiny, write_inpaint_inputs};

#[test]
fn export_a_run_and_sample_inpaint_and_denoise_the_export() {
    let tmp = tempfile::tempdir().unwrap();
    train_tiny("run", &["train.steps=2", "train.batch_size=8"], tmp.path());

    let out = oxidiff(
        &["export", "--checkpoint", "run", "--out", "exported"],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(
        said.contains("step 2, ema weights")
            && said.contains("DDPMPipeline.from_pretrained(\"exported\")"),
        "{said}"
    );
    for file in [
        "model_index.json",
        "oxidiff_export.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json",
    ] {
        assert!(tmp.path().join("exported").join(file).is_file(), "{file}");
    }
    // Again, with the online weights: an earlier export is replaced.
    let out = oxidiff(
        &[
            "export",
            "--checkpoint",
            "run",
            "--out",
            "exported",
            "--no-ema",
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("online weights"), "{}", stdout(&out));

    // The pipeline, and its bare UNet directory (schedule from ../scheduler/), sample.
    for checkpoint in ["exported", "exported/unet"] {
        let out = oxidiff(
            &[
                "sample",
                "--checkpoint",
                checkpoint,
                "--num",
                "4",
                "--steps",
                "3",
                "--out",
                "grid.png",
            ],
            tmp.path(),
        );
        assert!(out.status.success(), "{checkpoint}: {}", stderr(&out));
        assert!(stderr(&out).contains(checkpoint), "{}", stderr(&out));
        assert!(image::open(tmp.path().join("grid.png")).is_ok());
        std::fs::remove_file(tmp.path().join("grid.png")).unwrap();
    }

    write_inpaint_inputs(tmp.path());
    let out = oxidiff(
        &[
            "inpaint",
            "--checkpoint",
            "exported",
            "--image",
            "in.png",
            "--mask",
            "mask.png",
            "--out",
            "filled.png",
            "--steps",
            "4",
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let filled = image::open(tmp.path().join("filled.png"))
        .unwrap()
        .to_luma8();
    assert_eq!(filled.dimensions(), (8, 8));
    let out = oxidiff(
        &[
            "denoise",
            "--checkpoint",
            "exported",
            "--image",
            "in.png",
            "--out",
            "clean.png",
            "--strength",
            "0.4",
            "--steps",
            "4",
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(tmp.path().join("clean.png").is_file());

    // Evaluation needs the run's data and split, which an export does not carry.
    refused(
        &["eval", "--checkpoint", "exported"],
        tmp.path(),
        "is a diffusers directory, not an oxidiff checkpoint",
    );

    // A directory holding other files is not overwritten.
    std::fs::create_dir_all(tmp.path().join("mine")).unwrap();
    std::fs::write(tmp.path().join("mine/notes.txt"), "keep").unwrap();
    refused(
        &["export", "--checkpoint", "run", "--out", "mine"],
        tmp.path(),
        "mine: is not empty and not an earlier oxidiff export",
    );
    assert!(tmp.path().join("mine/notes.txt").is_file());
}

#[test]
fn export_and_sample_help_say_what_they_take() {
    let tmp = tempfile::tempdir().unwrap();
    let out = oxidiff(&["export", "--help"], tmp.path());
    assert!(out.status.success());
    let help = stdout(&out);
    for word in ["--checkpoint", "--out", "--no-ema", "EMA", "earlier export"] {
        assert!(help.contains(word), "{word}: {help}");
    }
    let out = oxidiff(&["sample", "--help"], tmp.path());
    assert!(
        stdout(&out).contains("diffusers directory"),
        "{}",
        stdout(&out)
    );
    let out = oxidiff(&["--help"], tmp.path());
    assert!(
        stdout(&out).contains("diffusers' format"),
        "{}",
        stdout(&out)
    );
}
