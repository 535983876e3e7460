//! What the binary's end-to-end tests share: running `oxidiff` in a directory, reading what it
//! said, and the tiny runs they train.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// `oxidiff args`, run in `cwd` to its end.
pub fn oxidiff(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oxidiff"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the oxidiff binary runs")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `--set` overrides of a tiny UNet run: 16 channels in 4 groups, 4 samples of 3 steps.
pub const TINY_RUN: [&str; 4] = [
    "model.model_channels=16",
    "model.norm_groups=4",
    "sample.steps=3",
    "sample.num=4",
];

/// `oxidiff train --out out` in `cwd` with `--set` for each of `sets`, then [`TINY_RUN`];
/// asserts that it succeeds.
pub fn train_tiny(out: &str, sets: &[&str], cwd: &Path) -> Output {
    let mut args = vec!["train", "--out", out];
    for set in sets.iter().chain(&TINY_RUN) {
        args.extend(["--set", set]);
    }
    let run = oxidiff(&args, cwd);
    assert!(run.status.success(), "{}", stderr(&run));
    run
}

/// `oxidiff args` in `cwd`, asserting that it fails and that its stderr says `says`; the
/// stderr, for more checks.
pub fn refused(args: &[&str], cwd: &Path, says: &str) -> String {
    let out = oxidiff(args, cwd);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(says), "{err}");
    err
}

/// Writes what inpainting takes into `dir`: `in.png`, an 8×8 gradient (returned), and
/// `mask.png`, which generates the right half (white) and keeps the left.
pub fn write_inpaint_inputs(dir: &Path) -> image::GrayImage {
    let image = image::GrayImage::from_fn(8, 8, |x, y| image::Luma([(x * 30 + y * 2) as u8]));
    image.save(dir.join("in.png")).unwrap();
    image::GrayImage::from_fn(8, 8, |x, _| image::Luma([if x >= 4 { 255 } else { 0 }]))
        .save(dir.join("mask.png"))
        .unwrap();
    image
}
