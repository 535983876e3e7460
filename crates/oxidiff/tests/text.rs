//! The CLI's text-to-image face: `data inspect` reports captions with their token lengths,
//! `train` with `text.encoder` trains on templated captions of the built-in digits, and
//! `sample --prompt` draws from a prompt with guidance; a prompt for a model without text is
//! refused.

mod common;

use std::path::Path;

use burn::tensor::Device;
use oxidiff_models::text::{ClipTextConfig, ClipTextModel, TextTokenizer};

use common::{oxidiff, refused, stderr, stdout, train_tiny, write_inpaint_inputs};

/// Captions over the digits' class names ("0".."9").
const TEMPLATES: &str = "data.caption_templates=[\"a handwritten {}\", \"the digit {}\"]";

/// A small random CLIP text encoder with CLIP's tokenizer, as a transformers directory.
fn clip_encoder(dir: &Path) {
    ClipTextModel::new(ClipTextConfig::small(), &Device::flex())
        .save(dir)
        .unwrap();
    TextTokenizer::clip().unwrap().save_pretrained(dir).unwrap();
}

#[test]
fn inspect_reports_caption_token_lengths() {
    let tmp = tempfile::tempdir().unwrap();
    let out = oxidiff(
        &[
            "data",
            "inspect",
            "--set",
            "data.captions=\"templates\"",
            "--set",
            TEMPLATES,
            "--preview",
            "preview.png",
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("captions (templates): 1797 images captioned (1797 with several"),
        "{text}"
    );
    // Both "the digit 7" and "a handwritten 7" are 3 tokens with start and end around them
    // (open_clip's SimpleTokenizer agrees).
    assert!(
        text.contains(
            "length in tokens (CLIP BPE (no text.encoder set); context 77): min 5, median 5, \
             max 5 over 20 distinct captions; 0 longer than the context"
        ),
        "{text}"
    );
}

#[test]
fn train_on_captions_and_sample_from_a_prompt() {
    let tmp = tempfile::tempdir().unwrap();
    clip_encoder(&tmp.path().join("clip"));
    train_tiny(
        "run",
        &[
            "data.captions=\"templates\"",
            TEMPLATES,
            "text.encoder=\"clip\"",
            "text.max_length=8",
            "train.steps=3",
            "train.batch_size=8",
        ],
        tmp.path(),
    );
    let grid = oxidiff(
        &[
            "sample",
            "--checkpoint",
            "run",
            "--prompt",
            "the digit 3",
            "--negative-prompt",
            "the digit 8",
            "--guidance",
            "4",
            "--num",
            "4",
            "--steps",
            "3",
            "--out",
            "three.png",
        ],
        tmp.path(),
    );
    assert!(grid.status.success(), "{}", stderr(&grid));
    let image = image::open(tmp.path().join("three.png")).unwrap();
    assert!(image.width() > 0);
    // No prompt: the empty prompt, the unconditional model.
    let plain = oxidiff(
        &[
            "sample",
            "--checkpoint",
            "run",
            "--num",
            "2",
            "--steps",
            "2",
            "--out",
            "plain.png",
        ],
        tmp.path(),
    );
    assert!(plain.status.success(), "{}", stderr(&plain));
    refused(
        &[
            "sample",
            "--checkpoint",
            "run",
            "--guidance",
            "3",
            "--out",
            "x.png",
        ],
        tmp.path(),
        "--guidance 3: guides toward a --class or a --prompt",
    );
    // Held-out ε-MSE and bits/dim of the unconditional model (the empty prompt).
    let eval = oxidiff(
        &[
            "eval",
            "--checkpoint",
            "run",
            "--images",
            "8",
            "--stride",
            "100",
        ],
        tmp.path(),
    );
    assert!(eval.status.success(), "{}", stderr(&eval));
    assert!(stdout(&eval).contains("bits/dim"), "{}", stdout(&eval));
    // Samples from the held-out images' captions, classified against their digit.
    let following = oxidiff(
        &[
            "eval",
            "--checkpoint",
            "run",
            "--images",
            "8",
            "--no-bpd",
            "--steps",
            "2",
            "--prompt-following",
            "--guidance",
            "3",
        ],
        tmp.path(),
    );
    assert!(following.status.success(), "{}", stderr(&following));
    let text = stdout(&following);
    assert!(
        text.contains("prompt following (guidance 3") && text.contains("for random prompts"),
        "{text}"
    );
    // Editing takes a prompt too.
    write_inpaint_inputs(tmp.path());
    for (command, how) in [
        ("inpaint", ["--mask", "mask.png"]),
        ("denoise", ["--strength", "0.5"]),
    ] {
        let out = oxidiff(
            &[
                command,
                "--checkpoint",
                "run",
                "--image",
                "in.png",
                how[0],
                how[1],
                "--prompt",
                "the digit 3",
                "--guidance",
                "2",
                "--steps",
                "3",
                "--out",
                "edited.png",
            ],
            tmp.path(),
        );
        assert!(out.status.success(), "{command}: {}", stderr(&out));
        assert!(tmp.path().join("edited.png").is_file());
        std::fs::remove_file(tmp.path().join("edited.png")).unwrap();
    }
}

#[test]
fn a_prompt_for_a_model_without_text_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    train_tiny("run", &["train.steps=1"], tmp.path());
    refused(
        &[
            "sample",
            "--checkpoint",
            "run",
            "--prompt",
            "a cat",
            "--out",
            "x.png",
        ],
        tmp.path(),
        "is not a text-to-image model",
    );
    refused(
        &["eval", "--checkpoint", "run", "--prompt-following"],
        tmp.path(),
        "prompt following needs a text-to-image model",
    );
}

#[test]
fn train_a_text_encoder_from_scratch_resume_and_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let sets = [
        "data.captions=\"templates\"",
        TEMPLATES,
        "text.encoder=\"scratch\"",
        "text.hidden_size=16",
        "text.num_hidden_layers=1",
        "text.num_attention_heads=2",
        "text.max_length=8",
        "text.lr=5e-4",
        "train.steps=2",
        "train.batch_size=8",
    ];
    let run = train_tiny("run", &sets, tmp.path());
    let said = stderr(&run);
    assert!(
        said.contains("a new CLIP text transformer (16 wide, 1 layers of 2 heads, 8 tokens)")
            && said.contains("trained with it at"),
        "{said}"
    );
    // Resumed from its checkpoint, which holds the encoder beside the UNet.
    let resumed = oxidiff(
        &["train", "--resume", "run", "--set", "train.steps=3"],
        tmp.path(),
    );
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let out = oxidiff(
        &[
            "sample",
            "--checkpoint",
            "run",
            "--prompt",
            "the digit 3",
            "--guidance",
            "3",
            "--num",
            "2",
            "--steps",
            "2",
            "--out",
            "three.png",
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(tmp.path().join("three.png").is_file());
}
