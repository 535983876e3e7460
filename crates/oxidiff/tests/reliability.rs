//! The `oxidiff` binary interrupted as a user or a batch scheduler interrupts it: SIGINT and
//! SIGTERM stop it cleanly with a checkpoint, SIGKILL at any moment (one of them during a
//! checkpoint write) loses nothing a resume cannot redo, and either way the resumed run ends
//! bit-identical to an uninterrupted one.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use oxidiff_train::{RunConfig, load_weights};

const STEPS: u64 = 90;

/// A run small enough for a test, long enough (a few seconds) to be interrupted mid-way.
fn run_args(out: &str) -> Vec<String> {
    let mut args: Vec<String> = ["train", "--out", out].map(String::from).to_vec();
    for set in [
        format!("train.steps={STEPS}"),
        "train.batch_size=8".into(),
        "train.checkpoint_every=20".into(),
        "train.sample_every=1000".into(),
        "train.log_every=1".into(),
        "sample.num=4".into(),
        "sample.steps=3".into(),
        "model.model_channels=16".into(),
        "model.norm_groups=4".into(),
        "data.validation_fraction=0".into(),
    ] {
        args.push("--set".into());
        args.push(set);
    }
    args
}

fn oxidiff(args: &[String], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oxidiff"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the oxidiff binary runs")
}

fn spawn(args: &[String], cwd: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_oxidiff"))
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the oxidiff binary starts")
}

fn logged_steps(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

/// Waits (polling) until `ready` holds; panics after two minutes.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn signal(child: &Child, name: &str) {
    let signal = match name {
        "INT" => libc::SIGINT,
        "TERM" => libc::SIGTERM,
        "KILL" => libc::SIGKILL,
        other => panic!("no signal {other} in these tests"),
    };
    let pid = libc::pid_t::try_from(child.id()).expect("a pid");
    // SAFETY: kill(2) on the pid of a child this test spawned and has not yet waited for.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill -{name}");
}

fn finish(child: Child) -> (ExitStatus, String) {
    let out = child.wait_with_output().expect("the child ends");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The final weights and EMA weights (every value; the files themselves also hold parameter ids,
/// drawn afresh by every process), the training state, and the per-step numbers of the log
/// (without the timing column), which an interrupted run must reproduce exactly.
struct Outcome {
    files: Vec<(&'static str, Vec<u8>)>,
    rows: Vec<String>,
}

/// Every float of a module, as bytes, in visiting order.
struct Values(Vec<u8>);

impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let data = param.val().into_data();
        self.0.extend(data.iter::<f32>().flat_map(f32::to_le_bytes));
    }
}

fn weights(checkpoint: &Path, file: &str) -> Vec<u8> {
    let config = RunConfig::load(&checkpoint.join("config.toml"), &[]).unwrap();
    let model = config.unet().unwrap().init(&Device::flex());
    let model = load_weights(model, &checkpoint.join(file)).unwrap();
    let mut values = Values(Vec::new());
    model.visit(&mut values);
    values.0
}

fn outcome(run: &Path) -> Outcome {
    let last = run.join(format!("checkpoints/step-{STEPS:07}"));
    let files = vec![
        ("model.bpk", weights(&last, "model.bpk")),
        ("ema.bpk", weights(&last, "ema.bpk")),
        (
            "state.json",
            std::fs::read(last.join("state.json")).unwrap(),
        ),
    ];
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let rows = log
        .lines()
        .map(|line| {
            let mut row: serde_json::Value = serde_json::from_str(line).unwrap();
            row.as_object_mut().unwrap().remove("images_per_sec");
            row.to_string()
        })
        .collect();
    Outcome { files, rows }
}

/// Panics naming the first file or log row that differs.
fn assert_same(got: &Outcome, expected: &Outcome, what: &str) {
    for ((name, a), (_, b)) in got.files.iter().zip(&expected.files) {
        assert!(
            a == b,
            "{what}: {name} differs from the uninterrupted run's"
        );
    }
    assert_eq!(
        got.rows.len(),
        expected.rows.len(),
        "{what}: metrics.jsonl rows"
    );
    for (a, b) in got.rows.iter().zip(&expected.rows) {
        assert_eq!(a, b, "{what}: metrics.jsonl");
    }
}

fn reference(tmp: &Path) -> Outcome {
    let out = oxidiff(&run_args("reference"), tmp);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    outcome(&tmp.join("reference"))
}

fn resume(tmp: &Path, run: &str) -> Output {
    let out = oxidiff(&["train", "--resume", run].map(String::from), tmp);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn hidden_leftovers(run: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for dir in [
        run.to_path_buf(),
        run.join("checkpoints"),
        run.join("plots"),
    ] {
        for entry in std::fs::read_dir(&dir).into_iter().flatten() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('.') {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn sigint_and_sigterm_finish_the_step_checkpoint_and_resume_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let expected = reference(tmp.path());

    for (name, code, after) in [("INT", 130, 5), ("TERM", 143, 45)] {
        let run_name = format!("stopped-{name}");
        let run = tmp.path().join(&run_name);
        let child = spawn(&run_args(&run_name), tmp.path());
        wait_for("training steps", || logged_steps(&run) >= after);
        signal(&child, name);
        let (status, stderr) = finish(child);
        assert_eq!(status.code(), Some(code), "{stderr}");
        assert!(
            stderr.contains(&format!("stopped by SIG{name} after step")),
            "{stderr}"
        );
        assert!(
            stderr.contains("resume with: oxidiff train --resume"),
            "{stderr}"
        );
        // The step under way was finished, logged and checkpointed: nothing to redo.
        let step = logged_steps(&run) as u64;
        assert!(step < STEPS, "the run ended before the signal");
        assert!(
            run.join(format!("checkpoints/step-{step:07}/SHA256SUMS"))
                .is_file(),
            "no checkpoint of step {step}: {stderr}"
        );
        resume(tmp.path(), &run_name);
        assert_same(
            &outcome(&run),
            &expected,
            &format!("SIG{name} at step {step}"),
        );
    }
}

#[test]
fn sigkill_at_any_moment_resumes_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let expected = reference(tmp.path());
    let run = tmp.path().join("killed");
    let args = run_args("killed");
    let resume_args = ["train", "--resume", "killed"].map(String::from).to_vec();

    // Mid-way between checkpoints (after the first one, at step 20), during a checkpoint
    // write (its temporary directory exists; polled, so on a very fast disk the kill may land
    // just after it), and again after resuming.
    let child = spawn(&args, tmp.path());
    wait_for("training steps", || logged_steps(&run) >= 25);
    signal(&child, "KILL");
    let _ = finish(child);

    let child = spawn(&resume_args, tmp.path());
    let writing = run.join("checkpoints/.step-0000040.tmp");
    let mut during_write = false;
    wait_for("a checkpoint write", || {
        during_write = writing.exists();
        during_write || logged_steps(&run) > 40
    });
    signal(&child, "KILL");
    let _ = finish(child);
    eprintln!("second kill during the checkpoint write: {during_write}");

    let child = spawn(&resume_args, tmp.path());
    wait_for("more training steps", || logged_steps(&run) >= 70);
    signal(&child, "KILL");
    let _ = finish(child);

    resume(tmp.path(), "killed");
    assert_same(&outcome(&run), &expected, "killed three times");
    assert_eq!(hidden_leftovers(&run), Vec::<PathBuf>::new());
}

#[test]
fn sizes_that_cannot_fit_are_refused_naming_the_key_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    for (set, key) in [
        ("train.batch_size=100000000", "train.batch_size = 100000000"),
        (
            "model.model_channels=100000",
            "model.model_channels = 100000",
        ),
        (
            "diffusion.num_train_timesteps=1000000000",
            "diffusion.num_train_timesteps = 1000000000",
        ),
        ("sample.num=1000000000", "sample.num = 1000000000"),
    ] {
        let out = oxidiff(
            &["train", "--set", set, "--out", "run"].map(String::from),
            tmp.path(),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{set}: {stderr}");
        assert!(
            stderr.contains("more than this machine's"),
            "{set}: {stderr}"
        );
        assert!(stderr.contains("most of it is"), "{set}: {stderr}");
        assert!(stderr.contains(key), "{set}: {stderr}");
        assert!(
            !tmp.path().join("run").exists(),
            "{set} left a run directory"
        );
    }
    // The largest value a config file can hold.
    std::fs::write(
        tmp.path().join("big.toml"),
        "[train]\nbatch_size = 9223372036854775807\n",
    )
    .unwrap();
    let out = oxidiff(
        &["train", "--config", "big.toml", "--out", "run"].map(String::from),
        tmp.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("train.batch_size"), "{stderr}");
    assert!(!tmp.path().join("run").exists());
}

#[test]
fn a_new_users_mistakes_get_told_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    // A custom network's size, without training it.
    let out = oxidiff(
        &[
            "model",
            "--set",
            "model.image_size=28",
            "--set",
            "model.model_channels=16",
        ]
        .map(String::from),
        tmp.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("changed by the config") && stdout.contains("parameters:"),
        "{stdout}"
    );
    // The preset's attention follows the image size; a resolution that is not there names
    // the key and its possible values, and says the overrides were read.
    assert!(
        stdout.contains("14×14") && stdout.contains("attention"),
        "{stdout}"
    );
    let out = oxidiff(
        &["model", "--set", "model.attention_resolutions=[5]"].map(String::from),
        tmp.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("with the --set overrides")
            && stderr.contains("set model.attention_resolutions to some of them"),
        "{stderr}"
    );
    // Negative numbers reach the checks that explain the range, not clap's "unexpected
    // argument".
    for (command, flag) in [
        ("sample", "--eta"),
        ("sample", "--s-churn"),
        ("denoise", "--strength"),
        ("denoise", "--sigma"),
    ] {
        let mut args = vec![
            command,
            "--checkpoint",
            "none",
            flag,
            "-1",
            "--out",
            "x.png",
        ];
        if command == "denoise" {
            args.extend(["--image", "a.png"]);
        }
        let out = oxidiff(
            &args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            tmp.path(),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            !stderr.contains("unexpected argument"),
            "{args:?}: {stderr}"
        );
    }
}
