//! One heat-conduction block against one multi-head self-attention block of the same width
//! (96 channels; attention with 3 heads of 32, as in Swin-T stage 1) over growing token counts,
//! on the flex (CPU) device, batch 1, forward only.
//!
//! - `hco`: `x + HCO(LayerNorm(x))`, vHeat's heat block without its MLP, ordinary form (the
//!   conductivity is predicted from the FVE on every call), on a `[1, n, n, 96]` map;
//! - `attention`: `x + out(MHSA(LayerNorm(x)))` on `[1, n², 96]` tokens with Burn's
//!   `burn::tensor::module::attention` (a flash-style tiled kernel on flex for long sequences).
//!
//! Both blocks are built in `benches/support/blocks.rs`, shared with `examples/scaling.rs`.
//! Token counts: 14², 28², 56², 96², 128² for both, 192² for the HCO only (attention at 192²,
//! 37K tokens, would take minutes per call here). After the group it prints a table and the
//! least-squares exponent `p` of `t ∝ tokensᵖ` for each block over 56²…largest (the range where
//! the mixing cost dominates) and over the whole range.
//!
//! ```text
//! cargo bench --features wgpu --bench hco_vs_attention               # ~3 min on 2 cores
//! cargo bench --features wgpu --bench hco_vs_attention -- /hco/      # HCO only
//! cargo bench --features wgpu --bench hco_vs_attention -- 'x(14|28|56)$'  # the small sizes
//! ```

#[path = "support/blocks.rs"]
mod blocks;
#[path = "support/recorder.rs"]
mod recorder;

use std::time::Duration;

use blocks::{fit_exponent, AttentionBlock, HcoBlock, HEADS, WIDTH};
use burn::prelude::*;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use recorder::Recorder;

/// Map sides of both blocks.
const SIDES: [usize; 6] = [14, 28, 56, 96, 128, 192];
/// Largest map side the attention block is timed at.
const MAX_ATTENTION_SIDE: usize = 128;
/// Smallest side in the "mixing-dominated" fit.
const FIT_FROM: usize = 56;
const SAMPLES: usize = 10;

fn compare(c: &mut Criterion) {
    let device = Device::flex();
    let rec = Recorder::default();
    let mut group = c.benchmark_group("hco_vs_attention");
    group
        .sample_size(SAMPLES)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let attn = AttentionBlock::new(WIDTH, HEADS, &device);
    for n in SIDES {
        let id = format!("{n}x{n}");
        let key = format!("hco/{id}");
        let hco = HcoBlock::new(n, WIDTH, &device);
        let x = hco.input(&device);
        group.bench_function(BenchmarkId::new("hco", &id), |b| {
            b.iter_custom(|iters| rec.time(&key, iters, || hco.forward(x.clone()).into_data()))
        });
        if n <= MAX_ATTENTION_SIDE {
            let key = format!("attention/{id}");
            let t = attn.input(n * n, &device);
            group.bench_function(BenchmarkId::new("attention", &id), |b| {
                b.iter_custom(|iters| rec.time(&key, iters, || attn.forward(t.clone()).into_data()))
            });
        }
    }
    group.finish();
    report(&rec);
}

fn report(rec: &Recorder) {
    println!("\nHCO block vs attention block, width {WIDTH}, flex, batch 1: median ms per call");
    println!(
        "{:>8} {:>8} {:>10} {:>12} {:>8}",
        "side", "tokens", "HCO", "attention", "ratio"
    );
    let mut hco = Vec::new();
    let mut att = Vec::new();
    for n in SIDES {
        let tokens = (n * n) as f64;
        let h = rec.median(&format!("hco/{n}x{n}"), SAMPLES);
        let a = rec.median(&format!("attention/{n}x{n}"), SAMPLES);
        if h.is_none() && a.is_none() {
            continue;
        }
        let ms = |t: Option<f64>| t.map_or("-".to_string(), |t| format!("{:.3}", t * 1e3));
        let ratio = match (h, a) {
            (Some(h), Some(a)) => format!("{:.1}×", a / h),
            _ => "-".into(),
        };
        println!("{n:>8} {tokens:>8} {:>10} {:>12} {ratio:>8}", ms(h), ms(a));
        if let Some(h) = h {
            hco.push((n, tokens, h));
        }
        if let Some(a) = a {
            att.push((n, tokens, a));
        }
    }
    for (name, series) in [("HCO", &hco), ("attention", &att)] {
        let fit = |from: usize| {
            let pts: Vec<(f64, f64)> = series
                .iter()
                .filter(|p| p.0 >= from)
                .map(|p| (p.1, p.2))
                .collect();
            let sides: Vec<usize> = series.iter().filter(|p| p.0 >= from).map(|p| p.0).collect();
            match (fit_exponent(&pts), sides.first(), sides.last()) {
                (Some(p), Some(a), Some(b)) => format!("{p:.2} over {a}²…{b}²"),
                _ => "n/a".into(),
            }
        };
        println!(
            "{name:>9}: t ∝ tokens^p, p = {} (all sizes: {})",
            fit(FIT_FROM),
            fit(0)
        );
    }
    println!();
}

criterion_group!(benches, compare);
criterion_main!(benches);
