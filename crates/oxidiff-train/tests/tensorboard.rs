//! TensorBoard event files read back by the real `tensorboard` package
//! (tools/reference/read_tensorboard.py). Run with:
//!
//!     python3 -m pip install tensorboard
//!     cargo test -p oxidiff-train --test tensorboard
//!
//! The interpreter is `OXIDIFF_TENSORBOARD_PYTHON`, else `python3`. Without `tensorboard` the test
//! prints why it was skipped and passes, unless `OXIDIFF_REQUIRE_TENSORBOARD=1` (for CI).

use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use oxidiff_train::TensorBoardWriter;
use serde_json::Value;

const LOSS: [(u64, f64); 5] = [(1, 0.9), (2, 0.71), (3, 0.5625), (4, 0.48), (5, 0.4125)];
const BITS_PER_DIM: [(u64, f64); 2] = [(2, 3.8125), (4, 3.1)];
const IMAGE_STEP: u64 = 5;
const IMAGE_WIDTH: u32 = 8;
const IMAGE_HEIGHT: u32 = 6;

fn python() -> String {
    std::env::var("OXIDIFF_TENSORBOARD_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// `None` when `python` can import tensorboard, else the reason it cannot.
fn tensorboard_missing(python: &str) -> Option<String> {
    match Command::new(python)
        .args(["-c", "import tensorboard"])
        .output()
    {
        Ok(out) if out.status.success() => None,
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().last().unwrap_or("").trim().to_owned();
            Some(format!(
                "`{python} -c \"import tensorboard\"` failed: {last}"
            ))
        }
        Err(e) => Some(format!("cannot run `{python}`: {e}")),
    }
}

fn png_8x6() -> Vec<u8> {
    let img = image::RgbImage::from_fn(IMAGE_WIDTH, IMAGE_HEIGHT, |x, y| {
        image::Rgb([(x * 30) as u8, (y * 40) as u8, 128])
    });
    let mut png = Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).unwrap();
    png.into_inner()
}

/// Two writers on one directory, as a resumed run makes: TensorBoard must merge the files. The
/// first run logged steps 4 and 5 and then crashed before checkpointing them; the resumed run
/// starts again at step 4 with a session start, so TensorBoard must show its values, not the
/// stale ones.
fn write_run(dir: &Path, png: &[u8]) {
    let mut first = TensorBoardWriter::create(dir).unwrap();
    for &(step, value) in &LOSS[..3] {
        first.scalar("loss", step, value).unwrap();
    }
    first
        .scalar("val/bits_per_dim", BITS_PER_DIM[0].0, BITS_PER_DIM[0].1)
        .unwrap();
    for step in 4..=5 {
        first.scalar("loss", step, 99.0).unwrap();
    }
    first.scalar("val/bits_per_dim", 4, 99.0).unwrap();
    first.flush().unwrap();
    drop(first);

    let mut resumed = TensorBoardWriter::create(dir).unwrap();
    resumed.session_start(4).unwrap();
    for &(step, value) in &LOSS[3..] {
        resumed.scalar("loss", step, value).unwrap();
    }
    resumed
        .scalar("val/bits_per_dim", BITS_PER_DIM[1].0, BITS_PER_DIM[1].1)
        .unwrap();
    resumed
        .image("samples", IMAGE_STEP, png, IMAGE_WIDTH, IMAGE_HEIGHT, 3)
        .unwrap();
    resumed.flush().unwrap();
}

fn assert_scalars(json: &Value, tag: &str, expected: &[(u64, f64)]) {
    let points = json["scalars"][tag]
        .as_array()
        .unwrap_or_else(|| panic!("no scalars for `{tag}` in {json}"));
    assert_eq!(points.len(), expected.len(), "`{tag}`: {points:?}");
    for (point, &(step, value)) in points.iter().zip(expected) {
        assert_eq!(point[0].as_u64(), Some(step), "`{tag}`: {point}");
        let got = point[1].as_f64().unwrap();
        // simple_value is an f32: TensorBoard must give back exactly the narrowed value.
        assert_eq!(got as f32, value as f32, "`{tag}` step {step}");
    }
}

#[test]
fn tensorboard_reads_scalars_and_images() {
    let python = python();
    if let Some(reason) = tensorboard_missing(&python) {
        let message = format!(
            "tensorboard read-back skipped: {reason} (python3 -m pip install tensorboard, or set OXIDIFF_TENSORBOARD_PYTHON)"
        );
        if std::env::var("OXIDIFF_REQUIRE_TENSORBOARD").as_deref() == Ok("1") {
            panic!("{message}; OXIDIFF_REQUIRE_TENSORBOARD=1");
        }
        eprintln!("{message}");
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let png = png_8x6();
    write_run(dir.path(), &png);
    let event_files = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(event_files, 2, "each create makes a new file");

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tools/reference/read_tensorboard.py"
    );
    let out = Command::new(&python)
        .arg(script)
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("running {python} {script}: {e}"));
    assert!(
        out.status.success(),
        "{python} {script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad JSON from {script}: {e}\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });

    assert_scalars(&json, "loss", &LOSS);
    assert_scalars(&json, "val/bits_per_dim", &BITS_PER_DIM);
    assert_eq!(json["scalars"].as_object().unwrap().len(), 2, "{json}");

    let images = json["images"]["samples"]
        .as_array()
        .unwrap_or_else(|| panic!("no images for `samples` in {json}"));
    assert_eq!(images.len(), 1, "{images:?}");
    let expected = [
        IMAGE_STEP,
        u64::from(IMAGE_WIDTH),
        u64::from(IMAGE_HEIGHT),
        png.len() as u64,
    ];
    let got: Vec<u64> = images[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(got, expected, "[step, width, height, png bytes]");
}
