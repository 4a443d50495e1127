//! How the cost of vHeat's heat-conduction block and of a self-attention block grows with the
//! number of tokens, on the flex (CPU) device, batch 1, width 96 (attention: 3 heads of 32).
//!
//! ```text
//! cargo run --release --features wgpu --example scaling
//! cargo run --release --features wgpu --example scaling -- --runs 3 --out /tmp/plot.png
//! ```
//!
//! Both blocks come from `benches/support/blocks.rs` (shared with
//! `benches/hco_vs_attention.rs`): `x + HCO(LayerNorm(x))` in the ordinary form, and
//! `x + out(MHSA(LayerNorm(x)))` with Burn's `burn::tensor::module::attention`. Each size is
//! timed directly: one untimed call, then the median of `--runs` calls (default 5; fewer when a
//! call takes over 2 s). Sides 14, 28, 56, 96, 128 and 192 (attention stops once a call takes
//! over 20 s, or at 128). It prints a table (tokens, ms HCO, ms attention), the least-squares
//! exponent `p` of `t ∝ tokensᵖ` for each block over 56²… and over all sizes, and writes a
//! log-log plot to `artifacts/img/hco_vs_attention.png` (`--out` to change).

#[path = "../benches/support/blocks.rs"]
mod blocks;

use std::time::Instant;

use blocks::{fit_exponent, AttentionBlock, HcoBlock, HEADS, WIDTH};
use burn::prelude::*;
use image::{Rgb, RgbImage};

const SIDES: [usize; 6] = [14, 28, 56, 96, 128, 192];
const MAX_ATTENTION_SIDE: usize = 128;
/// An attention call slower than this ends the attention series.
const ATTENTION_LIMIT_S: f64 = 20.0;
const FIT_FROM: usize = 56;

/// Median seconds of `runs` calls after one untimed call; at most 3 calls once one takes 2 s.
fn time<O>(runs: usize, mut f: impl FnMut() -> O) -> f64 {
    let start = Instant::now();
    std::hint::black_box(f());
    let first = start.elapsed().as_secs_f64();
    let runs = if first > 2.0 { runs.min(3) } else { runs }.max(1);
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            std::hint::black_box(f());
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    if runs % 2 == 1 {
        t[runs / 2]
    } else {
        0.5 * (t[runs / 2 - 1] + t[runs / 2])
    }
}

/// Times one HCO block against one attention block over growing maps and draws the plot.
#[derive(Debug, clap::Parser)]
struct Args {
    /// Timed calls per size (the median is reported).
    #[arg(long, value_name = "N", default_value_t = 5)]
    runs: usize,
    /// Where the log-log plot is written.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "artifacts/img/hco_vs_attention.png"
    )]
    out: String,
}

/// `(side, tokens, seconds)` of one block.
type Series = Vec<(usize, f64, f64)>;

fn fit(series: &Series, from: usize) -> Option<f64> {
    let pts: Vec<(f64, f64)> = series
        .iter()
        .filter(|p| p.0 >= from)
        .map(|p| (p.1, p.2))
        .collect();
    fit_exponent(&pts)
}

fn main() {
    let args: Args = clap::Parser::parse();
    let device = Device::flex();
    let attn = AttentionBlock::new(WIDTH, HEADS, &device);
    let mut hco: Series = Vec::new();
    let mut att: Series = Vec::new();
    let mut attention_on = true;
    println!(
        "width {WIDTH}, {HEADS} heads, flex, batch 1, median of {} calls",
        args.runs
    );
    println!(
        "{:>6} {:>8} {:>10} {:>12}",
        "side", "tokens", "ms HCO", "ms attention"
    );
    for n in SIDES {
        let tokens = (n * n) as f64;
        let block = HcoBlock::new(n, WIDTH, &device);
        let x = block.input(&device);
        let th = time(args.runs, || block.forward(x.clone()).into_data());
        hco.push((n, tokens, th));
        let ta = if attention_on && n <= MAX_ATTENTION_SIDE {
            let t = attn.input(n * n, &device);
            let ta = time(args.runs, || attn.forward(t.clone()).into_data());
            att.push((n, tokens, ta));
            if ta > ATTENTION_LIMIT_S {
                println!("(attention took {ta:.1} s at {n}²: stopping the attention series)");
                attention_on = false;
            }
            format!("{:.3}", ta * 1e3)
        } else {
            "-".into()
        };
        println!("{n:>6} {tokens:>8} {:>10.3} {ta:>12}", th * 1e3);
    }
    let show = |p: Option<f64>| p.map_or("n/a".to_string(), |p| format!("{p:.2}"));
    let (ph, pa) = (fit(&hco, FIT_FROM), fit(&att, FIT_FROM));
    println!(
        "exponent p (t ∝ tokens^p) over {FIT_FROM}² and up: HCO {}, attention {}",
        show(ph),
        show(pa)
    );
    println!(
        "exponent p over all sizes: HCO {}, attention {}",
        show(fit(&hco, 0)),
        show(fit(&att, 0))
    );
    let img = plot(&hco, &att, ph, pa);
    if let Some(dir) = std::path::Path::new(&args.out).parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).expect("create the plot's folder");
        }
    }
    img.save(&args.out).expect("write the PNG");
    println!("wrote {}", args.out);
}

// ---------------------------------------------------------------------------------------------
// Plotting: a log-log chart drawn pixel by pixel, with a 5×7 bitmap font (capitals, digits,
// a few signs; lower case is drawn as capitals).

const W: u32 = 960;
const H: u32 = 640;
const LEFT: i32 = 120;
const RIGHT: i32 = 920;
const TOP: i32 = 70;
const BOTTOM: i32 = 540;
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const GRID: Rgb<u8> = Rgb([215, 215, 215]);
const MINOR: Rgb<u8> = Rgb([238, 238, 238]);
const HCO_COLOUR: Rgb<u8> = Rgb([20, 90, 200]);
const ATT_COLOUR: Rgb<u8> = Rgb([215, 60, 20]);

/// 5×7 glyphs, one byte per row, bit 4 = leftmost column.
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        ',' => [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '=' => [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '/' => [0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10],
        '^' => [0x04, 0x0A, 0x11, 0x00, 0x00, 0x00, 0x00],
        '~' => [0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00],
        _ => [0; 7],
    }
}

fn put(img: &mut RgbImage, x: i32, y: i32, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

fn fill(img: &mut RgbImage, x0: i32, y0: i32, x1: i32, y1: i32, c: Rgb<u8>) {
    for y in y0..=y1 {
        for x in x0..=x1 {
            put(img, x, y, c);
        }
    }
}

/// Text at scale `s` (glyph cell 6s × 8s); `x` is the left edge, `y` the top.
fn text(img: &mut RgbImage, x: i32, y: i32, s: i32, msg: &str, c: Rgb<u8>) {
    for (i, ch) in msg.chars().enumerate() {
        let ox = x + i as i32 * 6 * s;
        for (row, bits) in glyph(ch).iter().enumerate() {
            for col in 0..5 {
                if bits & (0x10 >> col) != 0 {
                    let (px, py) = (ox + col * s, y + row as i32 * s);
                    fill(img, px, py, px + s - 1, py + s - 1, c);
                }
            }
        }
    }
}

fn text_width(msg: &str, s: i32) -> i32 {
    msg.chars().count() as i32 * 6 * s - s
}

/// A line `width` pixels thick; `dash` > 0 draws dashes of that many pixels.
fn line(img: &mut RgbImage, a: (f64, f64), b: (f64, f64), width: i32, dash: usize, c: Rgb<u8>) {
    let steps = ((b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil() as usize).max(1);
    for i in 0..=steps {
        if dash > 0 && (i / dash) % 2 == 1 {
            continue;
        }
        let t = i as f64 / steps as f64;
        let (x, y) = (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
        let (x, y) = (x.round() as i32, y.round() as i32);
        let lo = -(width - 1) / 2;
        fill(
            img,
            x + lo,
            y + lo,
            x + lo + width - 1,
            y + lo + width - 1,
            c,
        );
    }
}

fn marker(img: &mut RgbImage, x: f64, y: f64, square: bool, c: Rgb<u8>) {
    let (x, y) = (x.round() as i32, y.round() as i32);
    for dy in -5..=5i32 {
        for dx in -5..=5i32 {
            let inside = if square {
                dx.abs() <= 4 && dy.abs() <= 4
            } else {
                dx * dx + dy * dy <= 25
            };
            if inside {
                put(img, x + dx, y + dy, c);
            }
        }
    }
}

/// "1000" style labels for powers of ten (0.01 … 100000).
fn decade_label(e: i32) -> String {
    if e >= 0 {
        format!("{}", 10u64.pow(e as u32))
    } else {
        format!("{:.*}", (-e) as usize, 10f64.powi(e))
    }
}

fn plot(hco: &Series, att: &Series, ph: Option<f64>, pa: Option<f64>) -> RgbImage {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    let all: Vec<(f64, f64)> = hco.iter().chain(att).map(|p| (p.1, p.2 * 1e3)).collect();
    let lx = |v: f64| v.log10();
    let x_lo = all.iter().map(|p| lx(p.0)).fold(f64::MAX, f64::min).floor() as i32;
    let x_hi = all.iter().map(|p| lx(p.0)).fold(f64::MIN, f64::max).ceil() as i32;
    let y_lo = all.iter().map(|p| lx(p.1)).fold(f64::MAX, f64::min).floor() as i32;
    let y_hi = all.iter().map(|p| lx(p.1)).fold(f64::MIN, f64::max).ceil() as i32;
    let (x_hi, y_hi) = (x_hi.max(x_lo + 1), y_hi.max(y_lo + 1));
    let px = |tokens: f64| {
        LEFT as f64 + (lx(tokens) - x_lo as f64) / (x_hi - x_lo) as f64 * (RIGHT - LEFT) as f64
    };
    let py = |ms: f64| {
        BOTTOM as f64 - (lx(ms) - y_lo as f64) / (y_hi - y_lo) as f64 * (BOTTOM - TOP) as f64
    };

    // Grid: decades, and 2…9 within each decade.
    for e in x_lo..x_hi {
        for m in 2..10 {
            let x = px(m as f64 * 10f64.powi(e)).round() as i32;
            fill(&mut img, x, TOP, x, BOTTOM, MINOR);
        }
    }
    for e in y_lo..y_hi {
        for m in 2..10 {
            let y = py(m as f64 * 10f64.powi(e)).round() as i32;
            fill(&mut img, LEFT, y, RIGHT, y, MINOR);
        }
    }
    for e in x_lo..=x_hi {
        let x = px(10f64.powi(e)).round() as i32;
        fill(&mut img, x, TOP, x, BOTTOM, GRID);
        fill(&mut img, x, BOTTOM, x, BOTTOM + 6, BLACK);
        let label = decade_label(e);
        text(
            &mut img,
            x - text_width(&label, 2) / 2,
            BOTTOM + 12,
            2,
            &label,
            BLACK,
        );
    }
    for e in y_lo..=y_hi {
        let y = py(10f64.powi(e)).round() as i32;
        fill(&mut img, LEFT, y, RIGHT, y, GRID);
        fill(&mut img, LEFT - 6, y, LEFT, y, BLACK);
        let label = decade_label(e);
        text(
            &mut img,
            LEFT - 12 - text_width(&label, 2),
            y - 7,
            2,
            &label,
            BLACK,
        );
    }
    // Axes.
    fill(&mut img, LEFT, TOP, LEFT + 1, BOTTOM, BLACK);
    fill(&mut img, LEFT, BOTTOM - 1, RIGHT, BOTTOM, BLACK);
    let xlabel = "TOKENS (H X W), LOG SCALE";
    text(
        &mut img,
        (LEFT + RIGHT) / 2 - text_width(xlabel, 2) / 2,
        BOTTOM + 44,
        2,
        xlabel,
        BLACK,
    );
    text(
        &mut img,
        LEFT - 60,
        TOP - 26,
        2,
        "MS PER CALL, LOG SCALE",
        BLACK,
    );
    let title = format!("HCO BLOCK VS ATTENTION BLOCK, WIDTH {WIDTH}, FLEX CPU, BATCH 1");
    text(
        &mut img,
        (W as i32 - text_width(&title, 2)) / 2,
        16,
        2,
        &title,
        BLACK,
    );

    // Fitted power laws (dashed, over the fitted range), then the measured series.
    for (series, p, colour) in [(hco, ph, HCO_COLOUR), (att, pa, ATT_COLOUR)] {
        let fitted: Vec<&(usize, f64, f64)> = series.iter().filter(|q| q.0 >= FIT_FROM).collect();
        if let (Some(p), Some(first), Some(last)) = (p, fitted.first(), fitted.last()) {
            // Through the geometric mean of the fitted points.
            let k = fitted.len() as f64;
            let mx = fitted.iter().map(|q| q.1.ln()).sum::<f64>() / k;
            let my = fitted.iter().map(|q| (q.2 * 1e3).ln()).sum::<f64>() / k;
            let at = |t: f64| (my + p * (t.ln() - mx)).exp();
            let (t0, t1) = (first.1 / 1.5, last.1 * 1.5);
            line(
                &mut img,
                (px(t0), py(at(t0))),
                (px(t1), py(at(t1))),
                1,
                6,
                colour,
            );
        }
        for w in series.windows(2) {
            let (a, b) = (
                (px(w[0].1), py(w[0].2 * 1e3)),
                (px(w[1].1), py(w[1].2 * 1e3)),
            );
            line(&mut img, a, b, 3, 0, colour);
        }
        for q in series {
            marker(
                &mut img,
                px(q.1),
                py(q.2 * 1e3),
                colour == HCO_COLOUR,
                colour,
            );
        }
    }

    // Legend.
    let show = |p: Option<f64>| p.map_or("N/A".to_string(), |p| format!("{p:.2}"));
    let entries = [
        (
            format!("HCO BLOCK     SLOPE {}", show(ph)),
            HCO_COLOUR,
            true,
        ),
        (
            format!("ATTENTION     SLOPE {}", show(pa)),
            ATT_COLOUR,
            false,
        ),
    ];
    let (lx0, ly0) = (LEFT + 24, TOP + 16);
    let box_w = 26 + text_width(&entries[0].0, 2).max(text_width(&entries[1].0, 2)) + 16;
    fill(
        &mut img,
        lx0 - 10,
        ly0 - 10,
        lx0 + box_w,
        ly0 + 80,
        Rgb([255, 255, 255]),
    );
    for (x0, y0, x1, y1) in [
        (lx0 - 10, ly0 - 10, lx0 + box_w, ly0 - 10),
        (lx0 - 10, ly0 + 80, lx0 + box_w, ly0 + 80),
        (lx0 - 10, ly0 - 10, lx0 - 10, ly0 + 80),
        (lx0 + box_w, ly0 - 10, lx0 + box_w, ly0 + 80),
    ] {
        fill(&mut img, x0, y0, x1, y1, BLACK);
    }
    for (i, (label, colour, square)) in entries.iter().enumerate() {
        let y = ly0 + 4 + i as i32 * 26;
        line(
            &mut img,
            ((lx0) as f64, (y + 7) as f64),
            ((lx0 + 20) as f64, (y + 7) as f64),
            3,
            0,
            *colour,
        );
        marker(
            &mut img,
            (lx0 + 10) as f64,
            (y + 7) as f64,
            *square,
            *colour,
        );
        text(&mut img, lx0 + 30, y, 2, label, BLACK);
    }
    let note = format!("DASHED: FIT FROM {FIT_FROM}X{FIT_FROM} UP");
    text(&mut img, lx0, ly0 + 56, 2, &note, BLACK);
    img
}
