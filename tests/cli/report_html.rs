//! `ehrlift validate --report-dir`: a report.json and a self-contained report.html that a
//! browser actually renders (checked with a headless Chromium screenshot when one is
//! installed), and neither carries a cell value.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{ehrlift, repo, run, url};

const CHROMIUM: &str = "/usr/bin/chromium";

#[test]
fn validate_report_dir_writes_json_and_html_a_browser_renders() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("report");
    let r = run(ehrlift()
        .arg("validate")
        .arg(repo().join("mappings/demo/ehrlift.toml"))
        .args(["--sample", "1000", "--report-dir"])
        .arg(&dir)
        .arg("--dest")
        .arg(url(&tmp.path().join("dest"))));
    // 0 when the demo passes its gates, 1 when a gate fails; either way both files exist.
    assert!(matches!(r.code(), 0 | 1), "exit status {}\nstdout:\n{}\nstderr:\n{}", r.code(), r.stdout(), r.stderr());

    let json: Value = serde_json::from_slice(&std::fs::read(dir.join("report.json")).expect("report.json")).unwrap();
    assert_eq!(json["format"], 1);
    assert_eq!(json["sampling"], serde_json::json!({ "sample": 1000 }));
    let tables: Vec<&str> = json["tables"].as_array().unwrap().iter().map(|t| t["table"].as_str().unwrap()).collect();
    assert!(!tables.is_empty());

    let html = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    assert!(html.starts_with("<!DOCTYPE html>"), "{}", &html[..html.len().min(200)]);
    for external in ["http://", "https://", "src=", "<link", "<script", "url("] {
        assert!(!html.contains(external), "report.html refers to something outside itself: {external:?}");
    }
    for t in &tables {
        assert!(html.contains(t), "report.html lacks table {t}");
    }
    for p in json["problems"].as_array().unwrap() {
        let code = p["code"].as_str().unwrap();
        assert!(html.contains(code), "report.html lacks problem code {code}");
    }

    // Never a value: identifiers of the demo's patients appear in neither report nor log.
    let json_text = std::fs::read_to_string(dir.join("report.json")).unwrap();
    let (out, err) = (r.stdout(), r.stderr());
    for v in demo_identifiers(200) {
        for (what, text) in [("report.json", &json_text), ("report.html", &html), ("stdout", &out), ("stderr", &err)] {
            assert!(!text.contains(&v), "{what} carries a patient identifier");
        }
    }

    if !Path::new(CHROMIUM).exists() {
        eprintln!("notice: {CHROMIUM} not found; report.html was not rendered (apt-get install chromium)");
        return;
    }
    let shot = tmp.path().join("shot.png");
    screenshot(&dir.join("report.html"), &shot, tmp.path());
    let png = std::fs::read(&shot).expect("chromium wrote no screenshot");
    assert!(png.len() > 10 * 1024, "screenshot is {} bytes: blank?", png.len());
    let (colours, dominant) = colours(&png);
    assert!(colours > 1, "screenshot is a single colour");
    assert!(dominant < 0.995, "screenshot is {:.2}% one colour: blank?", dominant * 100.0);
}

/// MRN, phone and SSN of the first `n` demo patients (ASCII columns of a windows-1252 file).
fn demo_identifiers(n: usize) -> Vec<String> {
    let mut rd = csv::ReaderBuilder::new().from_path(repo().join("mappings/demo/data/patients.csv")).unwrap();
    let header = rd.byte_headers().unwrap().clone();
    let cols: Vec<usize> = ["MRN", "PHONE", "SSN"].iter().map(|c| header.iter().position(|h| h == c.as_bytes()).unwrap()).collect();
    let mut out = Vec::new();
    for rec in rd.byte_records().take(n) {
        let rec = rec.unwrap();
        for &c in &cols {
            let v = String::from_utf8_lossy(&rec[c]).into_owned();
            if v.len() >= 6 {
                out.push(v);
            }
        }
    }
    assert!(!out.is_empty(), "no identifiers read from the demo data");
    out
}

/// Renders `html` to `png` with headless Chromium, killing it after a minute.
fn screenshot(html: &Path, png: &Path, scratch: &Path) {
    let mut child = Command::new(CHROMIUM)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,2000"])
        .arg(format!("--user-data-dir={}", scratch.join("chromium-profile").display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(url(html))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().ok();
            child.wait().ok();
            panic!("chromium did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).ok();
    assert!(status.success() && png.exists(), "chromium failed ({status}):\n{err}");
}

/// Distinct pixel colours of a PNG, and the share of pixels in the most common one.
/// Decodes 8-bit, non-interlaced grey, grey+alpha, RGB and RGBA: what Chromium writes.
fn colours(png: &[u8]) -> (usize, f64) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (mut width, mut height, mut channels) = (0usize, 0usize, 0usize);
    let mut idat = Vec::new();
    let mut at = 8;
    while at + 8 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        let kind = &png[at + 4..at + 8];
        let data = &png[at + 8..at + 8 + len];
        match kind {
            b"IHDR" => {
                width = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize;
                height = u32::from_be_bytes(data[4..8].try_into().unwrap()) as usize;
                let (depth, colour, interlace) = (data[8], data[9], data[12]);
                assert!(depth == 8 && interlace == 0, "PNG bit depth {depth}, interlace {interlace}: not decoded here");
                channels = match colour {
                    0 => 1,
                    4 => 2,
                    2 => 3,
                    6 => 4,
                    c => panic!("PNG colour type {c}: not decoded here"),
                };
            }
            b"IDAT" => idat.extend_from_slice(data),
            b"IEND" => break,
            _ => {}
        }
        at += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..]).read_to_end(&mut raw).unwrap();
    let stride = width * channels;
    assert_eq!(raw.len(), height * (stride + 1), "PNG data is not {width}x{height}");

    let mut prev = vec![0u8; stride];
    let mut line = vec![0u8; stride];
    let mut counts = std::collections::HashMap::<&[u8], usize>::new();
    let mut pixels = Vec::with_capacity(height * stride);
    for y in 0..height {
        let row = &raw[y * (stride + 1)..(y + 1) * (stride + 1)];
        let (filter, src) = (row[0], &row[1..]);
        for i in 0..stride {
            let a = if i >= channels { line[i - channels] } else { 0 };
            let (b, c) = (prev[i], if i >= channels { prev[i - channels] } else { 0 });
            line[i] = src[i].wrapping_add(match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((a as u16 + b as u16) / 2) as u8,
                4 => paeth(a, b, c),
                f => panic!("PNG filter {f}"),
            });
        }
        pixels.extend_from_slice(&line);
        std::mem::swap(&mut prev, &mut line);
    }
    for px in pixels.chunks_exact(channels) {
        *counts.entry(px).or_default() += 1;
    }
    let dominant = counts.values().copied().max().unwrap_or(0);
    (counts.len(), dominant as f64 / (width * height).max(1) as f64)
}

fn paeth(a: u8, b: u8, c: u8) -> u8 {
    let p = a as i16 + b as i16 - c as i16;
    let (pa, pb, pc) = ((p - a as i16).abs(), (p - b as i16).abs(), (p - c as i16).abs());
    if pa <= pb && pa <= pc {
        a
    } else if pb <= pc {
        b
    } else {
        c
    }
}

/// The decoder itself, on PNGs written here: one flat colour, then two.
#[test]
fn png_colour_count_sees_a_blank_image() {
    let flat = encode_png(4, 3, |_, _| [255, 255, 255]);
    assert_eq!(colours(&flat), (1, 1.0));
    let two = encode_png(4, 3, |x, y| if x == 1 && y == 2 { [200, 0, 0] } else { [255, 255, 255] });
    let (n, dominant) = colours(&two);
    assert_eq!(n, 2);
    assert!((dominant - 11.0 / 12.0).abs() < 1e-9);
}

/// A minimal RGB PNG (filter 1 on every row, to exercise unfiltering), CRCs left zero.
fn encode_png(width: u32, height: u32, px: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    use std::io::Write;
    let mut raw = Vec::new();
    for y in 0..height {
        raw.push(1);
        let mut left = [0u8; 3];
        for x in 0..width {
            let p = px(x, y);
            raw.extend(p.iter().zip(left).map(|(v, l)| v.wrapping_sub(l)));
            left = p;
        }
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw).unwrap();
    let idat = z.finish().unwrap();
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(b"IHDR", &ihdr), (b"IDAT", &idat), (b"IEND", &Vec::new())] {
        out.extend((data.len() as u32).to_be_bytes());
        out.extend(kind);
        out.extend(data);
        out.extend([0; 4]);
    }
    out
}
