use super::*;
use std::fs;

fn series(name: &str, points: &[(f64, f64)]) -> Series {
    Series {
        name: name.to_string(),
        points: points.to_vec(),
        faint: false,
    }
}

#[test]
fn smoothing_starts_at_the_first_value_and_follows_a_step() {
    let points: Vec<(f64, f64)> = (0..200)
        .map(|i| (i as f64, if i < 100 { 1.0 } else { 3.0 }))
        .chain([(200.0, f64::NAN)])
        .collect();
    let s = smoothed(&points, 0.9);
    assert_eq!(s.len(), 200, "the NaN is left out");
    assert!((s[0].1 - 1.0).abs() < 1e-12, "debiased: no pull towards 0");
    assert!((s[99].1 - 1.0).abs() < 1e-12);
    // After k steps at the new level: 3 − 2·0.9^k, to within the bias correction
    // (1 − 0.9^110 ≈ 1 − 1e-5 by then).
    assert!(
        (s[109].1 - (3.0 - 2.0 * 0.9f64.powi(10))).abs() < 1e-4,
        "{}",
        s[109].1
    );
    assert!((s[199].1 - 3.0).abs() < 1e-4);
}

fn spec<'a>(series: &'a [Series], y_scale: YScale) -> PlotSpec<'a> {
    PlotSpec {
        title: "training loss",
        x_label: "step",
        y_label: "loss",
        y_scale,
        series,
    }
}

/// Decodes the PNG at `path`, checks its size and returns how many distinct colours it has.
fn distinct_colours(path: &Path, width: u32, height: u32) -> usize {
    let img = image::open(path).expect("decodes as an image").to_rgb8();
    assert_eq!(img.dimensions(), (width, height));
    let mut colours: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    colours.sort_unstable();
    colours.dedup();
    colours.len()
}

fn loss_curves() -> Vec<Series> {
    let train: Vec<(f64, f64)> = (0..500)
        .map(|i| {
            let x = f64::from(i) * 10.0;
            (x, 0.05 + 1.0 / (1.0 + x / 200.0) + 0.02 * (x / 37.0).sin())
        })
        .collect();
    let eval: Vec<(f64, f64)> = (0..10)
        .map(|i| {
            let x = f64::from(i) * 500.0;
            (x, 0.08 + 1.0 / (1.0 + x / 180.0))
        })
        .collect();
    vec![series("train", &train), series("eval", &eval)]
}

#[test]
fn writes_a_decodable_png_of_the_requested_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loss.png");
    let curves = loss_curves();
    draw_line_plot(&path, &spec(&curves, YScale::Linear), 640, 400).unwrap();
    assert!(distinct_colours(&path, 640, 400) > 20);
    // Only the plot is left behind: the temporary file was renamed.
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn overwrites_an_existing_plot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loss.png");
    fs::write(&path, b"old").unwrap();
    let curves = loss_curves();
    draw_line_plot(&path, &spec(&curves, YScale::Log), 300, 200).unwrap();
    assert!(distinct_colours(&path, 300, 200) > 20);
}

#[test]
fn series_get_distinct_colours() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two.png");
    let curves = loss_curves();
    draw_line_plot(&path, &spec(&curves, YScale::Linear), 640, 400).unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    let has = |c: RGBColor| img.pixels().any(|p| p.0 == [c.0, c.1, c.2]);
    assert!(has(PALETTE[0]) && has(PALETTE[1]));
}

#[test]
fn log_scale_skips_zeros_negatives_and_nans() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.png");
    let s = [
        series(
            "loss",
            &[
                (0.0, 0.0),
                (1.0, f64::NAN),
                (2.0, -1.0),
                (3.0, 0.5),
                (f64::INFINITY, 0.3),
                (4.0, 0.25),
                (5.0, f64::NEG_INFINITY),
                (6.0, 1e-9),
            ],
        ),
        series("nothing", &[(0.0, 0.0), (1.0, -2.0)]),
    ];
    draw_line_plot(&path, &spec(&s, YScale::Log), 400, 300).unwrap();
    assert!(distinct_colours(&path, 400, 300) > 10);
}

#[test]
fn empty_plots_are_still_written() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<Vec<Series>> = vec![
        vec![],
        vec![series("loss", &[])],
        vec![series("loss", &[(f64::NAN, 1.0), (1.0, f64::INFINITY)])],
    ];
    for (i, s) in cases.iter().enumerate() {
        for scale in [YScale::Linear, YScale::Log] {
            let path = dir.path().join(format!("empty{i}.png"));
            draw_line_plot(&path, &spec(s, scale), 320, 240).unwrap();
            // Axes and the "no data yet" note.
            assert!(distinct_colours(&path, 320, 240) > 5);
        }
    }
}

#[test]
fn degenerate_ranges_do_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.png");
    let cases: Vec<Vec<(f64, f64)>> = vec![
        vec![(0.0, 0.0)],
        vec![(5.0, 3.0)],
        vec![(1e12, -1e-12)],
        vec![(0.0, 1.0), (0.0, 1.0), (0.0, 1.0)],
        vec![(1.0, 1.0), (1.0 + 1e-15, 1.0 + 2e-16)],
        vec![(-1e300, -1e300), (1e300, 1e300)],
        vec![(f64::MAX, 1.0), (2.0, f64::MIN), (3.0, 2.0)],
        vec![(0.0, f64::MIN_POSITIVE), (1.0, 5e-324)],
        vec![(0.0, 1e-300), (1.0, 1e300)],
        vec![(0.0, 0.021), (1.0, 0.029)],
        vec![(0.0, 0.0210), (1.0, 0.0211)],
        vec![(-3.0, -7.0), (-2.0, -1e6)],
    ];
    for points in &cases {
        for scale in [YScale::Linear, YScale::Log] {
            let s = [series("s", points)];
            for (w, h) in [(1, 1), (7, 300), (300, 7), (64, 48), (200, 150), (800, 500)] {
                draw_line_plot(&path, &spec(&s, scale), w, h)
                    .unwrap_or_else(|e| panic!("{points:?} {scale:?} {w}x{h}: {e}"));
            }
        }
    }
}

#[test]
fn bad_sizes_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.png");
    let curves = loss_curves();
    for (w, h) in [(0, 10), (10, 0), (MAX_SIDE + 1, 10), (MAX_SIDE, MAX_SIDE)] {
        let e = draw_line_plot(&path, &spec(&curves, YScale::Linear), w, h).unwrap_err();
        assert!(e.to_string().contains("bad.png"), "{e}");
    }
    assert!(!path.exists());
}

#[test]
fn unwritable_path_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("loss.png");
    let curves = loss_curves();
    let e = draw_line_plot(&path, &spec(&curves, YScale::Linear), 100, 100).unwrap_err();
    assert!(e.to_string().contains("no-such-dir"), "{e}");
}

#[test]
fn tick_labels_are_short() {
    assert_eq!(fmt_tick(0.0), "0");
    assert_eq!(fmt_tick(-0.0), "0");
    assert_eq!(fmt_tick(1.5), "1.5");
    assert_eq!(fmt_tick(0.00125), "0.00125");
    assert_eq!(fmt_tick(0.019999999999999997), "0.02");
    assert_eq!(fmt_tick(25000.0), "25000");
    assert_eq!(fmt_tick(1.5e6), "1.5e6");
    assert_eq!(fmt_tick(1e-4), "1e-4");
    assert_eq!(fmt_tick(-2.5e-7), "-2.5e-7");
}

#[test]
fn ticks_are_round_and_cover_the_range() {
    let (ticks, step) = nice_ticks(&(0.0..1000.0), 5);
    assert_eq!(step, 200.0);
    assert_eq!(ticks, vec![0.0, 200.0, 400.0, 600.0, 800.0, 1000.0]);
    // Within one decade on a log axis: 0.02, 0.03, ... 0.08.
    let (ticks, _) = log_ticks(&(0.02f64.log10()..0.085f64.log10()), 8);
    let values: Vec<String> = ticks.iter().map(|v| fmt_tick(10f64.powf(*v))).collect();
    assert_eq!(
        values,
        ["0.02", "0.03", "0.04", "0.05", "0.06", "0.07", "0.08"]
    );
    // Many decades: powers of ten only.
    let (ticks, _) = log_ticks(&(-6.2..1.3), 8);
    assert!(ticks.iter().all(|v| v.fract() == 0.0), "{ticks:?}");
    assert!(ticks.len() >= 4);
}
