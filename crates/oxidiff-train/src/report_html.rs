//! `report.html`: one self-contained page about a run, readable offline.
//!
//! No external URLs and no JavaScript: the stylesheet is inline and every image is embedded as a
//! `data:image/png;base64,...` URL, so the file can be copied off the training machine, mailed or
//! opened from disk and still show everything. All text is HTML-escaped.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// What the report page shows.
#[derive(Clone, Copy, Debug)]
pub struct ReportPage<'a> {
    /// Page heading and `<title>`.
    pub title: &'a str,
    /// Short lines shown at the top (run dir, step, device, ...).
    pub summary: &'a [(String, String)],
    /// (caption, PNG file) for each plot.
    pub plots: &'a [(String, PathBuf)],
    /// (step, PNG file) sample grids over time, oldest first.
    pub grids: &'a [(u64, PathBuf)],
    /// Latest evaluation numbers as a table: (name, value) rows.
    pub metrics: &'a [(String, String)],
    /// The run config (TOML text) and the data report (JSON text), shown in <pre>.
    pub config_toml: &'a str,
    /// The data report (JSON text), shown in <pre>.
    pub data_report_json: &'a str,
}

/// Sample grids narrower than this are shown scaled up by a whole factor (pixelated) to about
/// this width, so a 32×32 grid is not a speck.
const GRID_DISPLAY_WIDTH: u32 = 256;

const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', sans-serif;
       margin: 0 auto; padding: 1.5em 2em 3em; max-width: 1200px; color: #222; background: #fff;
       line-height: 1.4; }
h1 { font-size: 1.6em; margin: 0 0 0.6em; }
h2 { font-size: 1.2em; margin: 1.8em 0 0.6em; padding-bottom: 0.2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: 0.25em 1.2em 0.25em 0; vertical-align: top; }
table.summary th { color: #555; font-weight: normal; }
table.metrics { min-width: 20em; }
table.metrics th { border-bottom: 1px solid #bbb; }
table.metrics td { border-bottom: 1px solid #eee; }
table.metrics td.value { font-variant-numeric: tabular-nums; text-align: right; }
.plots { display: flex; flex-wrap: wrap; gap: 1.2em; }
.grids { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-end; }
figure { margin: 0; }
figcaption { font-size: 0.9em; color: #555; text-align: center; margin-top: 0.3em; }
img { display: block; max-width: 100%; height: auto; }
img.grid { image-rendering: pixelated; image-rendering: crisp-edges; border: 1px solid #ddd; }
.note { color: #8a4b00; background: #fff6e5; border: 1px solid #f0d9a8; padding: 0.5em 0.8em;
        font-size: 0.9em; }
.grids .note { max-width: 20em; overflow-wrap: anywhere; }
.empty { color: #777; font-style: italic; }
pre { background: #f6f8fa; border: 1px solid #e1e4e8; padding: 0.8em 1em; overflow-x: auto;
      font-size: 0.85em; line-height: 1.35; }
";

/// Writes the page atomically (temp + rename). A listed PNG that cannot be read is shown as a note
/// naming it, not an error (a plot may be mid-rewrite); the write itself failing is an error
/// naming `path`.
pub fn write_report(path: &Path, page: &ReportPage<'_>) -> std::io::Result<()> {
    let html = render(page);
    oxidiff_data::replace_file(path, html.as_bytes())
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// The whole page as a string.
fn render(page: &ReportPage<'_>) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let title = escape(page.title);
    // `write!` into a String cannot fail.
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    );

    if !page.summary.is_empty() {
        h.push_str("<table class=\"summary\">\n");
        for (k, v) in page.summary {
            let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
        }
        h.push_str("</table>\n");
    }

    h.push_str("<h2>Latest evaluation</h2>\n");
    if page.metrics.is_empty() {
        h.push_str("<p class=\"empty\">No evaluation yet.</p>\n");
    } else {
        h.push_str("<table class=\"metrics\">\n<tr><th>metric</th><th>value</th></tr>\n");
        for (k, v) in page.metrics {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=\"value\">{}</td></tr>",
                escape(k),
                escape(v)
            );
        }
        h.push_str("</table>\n");
    }

    h.push_str("<h2>Training curves</h2>\n");
    if page.plots.is_empty() {
        h.push_str("<p class=\"empty\">No plots yet.</p>\n");
    } else {
        h.push_str("<div class=\"plots\">\n");
        for (caption, file) in page.plots {
            h.push_str("<figure>");
            push_image(&mut h, file, caption, None);
            let _ = writeln!(h, "<figcaption>{}</figcaption></figure>", escape(caption));
        }
        h.push_str("</div>\n");
    }

    h.push_str("<h2>Samples</h2>\n");
    if page.grids.is_empty() {
        h.push_str("<p class=\"empty\">No samples yet.</p>\n");
    } else {
        h.push_str("<div class=\"grids\">\n");
        for (step, file) in page.grids {
            let caption = format!("step {step}");
            h.push_str("<figure>");
            push_image(&mut h, file, &caption, Some(GRID_DISPLAY_WIDTH));
            let _ = writeln!(h, "<figcaption>{caption}</figcaption></figure>");
        }
        h.push_str("</div>\n");
    }

    let _ = write!(
        h,
        "<h2>Config</h2>\n<pre>{}</pre>\n<h2>Data report</h2>\n<pre>{}</pre>\n",
        escape(page.config_toml),
        escape(page.data_report_json)
    );
    h.push_str("</body>\n</html>\n");
    h
}

/// Appends `file` as an embedded `<img>`, or a note naming it when it cannot be read or is not a
/// PNG. `grid_width`: show it as a pixelated sample grid scaled up by a whole factor to about
/// that width.
fn push_image(h: &mut String, file: &Path, alt: &str, grid_width: Option<u32>) {
    let bytes = match fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = write!(
                h,
                "<div class=\"note\">Image not available: <code>{}</code> ({})</div>",
                escape(&file.display().to_string()),
                escape(&e.to_string())
            );
            return;
        }
    };
    let Some((w, ht)) = png_size(&bytes) else {
        let _ = write!(
            h,
            "<div class=\"note\">Not a PNG image: <code>{}</code></div>",
            escape(&file.display().to_string())
        );
        return;
    };
    let (class, factor) = match grid_width {
        Some(target) => {
            let factor = (f64::from(target) / f64::from(w)).round().clamp(1.0, 16.0) as u32;
            (" class=\"grid\"", factor)
        }
        None => ("", 1),
    };
    let _ = write!(
        h,
        "<img{class} width=\"{}\" height=\"{}\" alt=\"{}\" src=\"data:image/png;base64,",
        w.saturating_mul(factor),
        ht.saturating_mul(factor),
        escape(alt)
    );
    base64_into(h, &bytes);
    h.push_str("\">");
}

/// Width and height from a PNG's IHDR chunk, or `None` when `bytes` do not start like a PNG.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    oxidiff_data::PngHeader::dimensions(bytes).filter(|&(w, h)| w > 0 && h > 0)
}

/// Escapes text for HTML element content and quoted attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Appends standard base64 (RFC 4648, with `=` padding) of `bytes` to `out`.
fn base64_into(out: &mut String, bytes: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |v: u32| char::from(ALPHABET[(v & 63) as usize]);
    out.reserve(bytes.len().div_ceil(3) * 4);
    let mut chunks = bytes.chunks_exact(3);
    for c in &mut chunks {
        let n = u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]);
        out.extend([sym(n >> 18), sym(n >> 12), sym(n >> 6), sym(n)]);
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.extend([sym(n >> 18), sym(n >> 12), '=', '=']);
        }
        [a, b] => {
            let n = u32::from(a) << 16 | u32::from(b) << 8;
            out.extend([sym(n >> 18), sym(n >> 12), sym(n >> 6), '=']);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        let mut s = String::new();
        base64_into(&mut s, bytes);
        s
    }

    /// A tiny valid PNG (`w`×`h`, a gradient) made with the `image` crate.
    fn write_png(path: &Path, w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 40) as u8, (y * 40) as u8, 128])
        });
        img.save(path).unwrap();
        fs::read(path).unwrap()
    }

    const CONFIG: &str = "[train]\nname = \"<run & \\\"co\\\">\"\nlr = 2e-4\n";
    const DATA: &str = "{\"images\": 60000, \"note\": \"a<b\"}";

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(b64(b""), "");
        assert_eq!(b64(b"f"), "Zg==");
        assert_eq!(b64(b"fo"), "Zm8=");
        assert_eq!(b64(b"foo"), "Zm9v");
        assert_eq!(b64(b"foob"), "Zm9vYg==");
        assert_eq!(b64(b"fooba"), "Zm9vYmE=");
        assert_eq!(b64(b"foobar"), "Zm9vYmFy");
        assert_eq!(b64(&[0xfb, 0xff, 0xbf]), "+/+/");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href='x'>\"&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn report_embeds_images_and_escapes_text() {
        let dir = tempfile::tempdir().unwrap();
        let plot = dir.path().join("loss.png");
        let grid = dir.path().join("grid.png");
        let plot_bytes = write_png(&plot, 5, 4);
        write_png(&grid, 3, 3);
        let out = dir.path().join("report.html");
        let page = ReportPage {
            title: "run <1>",
            summary: &[("run dir".into(), "/runs/a&b".into())],
            plots: &[("loss <log>".into(), plot.clone())],
            grids: &[(1000, grid.clone()), (2000, grid)],
            metrics: &[("fid".into(), "12.5".into())],
            config_toml: CONFIG,
            data_report_json: DATA,
        };
        write_report(&out, &page).unwrap();
        let html = fs::read_to_string(&out).unwrap();

        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains(&format!("data:image/png;base64,{}\"", b64(&plot_bytes))));
        assert_eq!(html.matches("data:image/png;base64,").count(), 3);
        assert!(html.contains("<title>run &lt;1&gt;</title>"));
        assert!(html.contains("/runs/a&amp;b"));
        assert!(html.contains("loss &lt;log&gt;"));
        assert!(html.contains("name = &quot;&lt;run &amp; \\&quot;co\\&quot;&gt;&quot;"));
        assert!(html.contains("&quot;note&quot;: &quot;a&lt;b&quot;"));
        assert!(!html.contains("<run"));
        assert!(html.contains("step 1000") && html.contains("step 2000"));
        // A 3 px wide grid is scaled up by a whole factor, at most 16.
        assert!(html.contains("class=\"grid\" width=\"48\" height=\"48\""));
        assert!(html.contains("image-rendering: pixelated"));
        assert!(html.contains(">12.5<"));
        // Offline: nothing is fetched from anywhere.
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(!html.contains("<script"));
        // Only the report is left next to the images: the temporary file was renamed.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 3);
    }

    #[test]
    fn missing_or_broken_images_become_notes() {
        let dir = tempfile::tempdir().unwrap();
        let not_png = dir.path().join("half.png");
        fs::write(&not_png, b"\x89PNG\r\n").unwrap();
        let missing = dir.path().join("gone <x>.png");
        let out = dir.path().join("report.html");
        let page = ReportPage {
            title: "run",
            summary: &[],
            plots: &[("loss".into(), missing), ("lr".into(), not_png)],
            grids: &[],
            metrics: &[],
            config_toml: "",
            data_report_json: "{}",
        };
        write_report(&out, &page).unwrap();
        let html = fs::read_to_string(&out).unwrap();
        assert!(html.contains("Image not available: <code>"), "{html}");
        assert!(html.contains("gone &lt;x&gt;.png"));
        assert!(html.contains("Not a PNG image: <code>"));
        assert!(html.contains("half.png"));
        assert!(!html.contains("data:image/png"));
        assert!(html.contains("No evaluation yet.") && html.contains("No samples yet."));
    }

    #[test]
    fn failed_write_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("missing-dir").join("report.html");
        let page = ReportPage {
            title: "run",
            summary: &[],
            plots: &[],
            grids: &[],
            metrics: &[],
            config_toml: "",
            data_report_json: "",
        };
        let e = write_report(&out, &page).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("missing-dir"), "{e}");
    }

    #[test]
    fn png_size_reads_ihdr() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = write_png(&dir.path().join("a.png"), 7, 2);
        assert_eq!(png_size(&bytes), Some((7, 2)));
        assert_eq!(png_size(b"GIF89a"), None);
        assert_eq!(png_size(&bytes[..20]), None);
    }
}
