//! Whole-model forward passes of vHeat-T/S/B on the flex (CPU) device: batch 1 and 8, inputs
//! 224², 384², 512² (and 768² for vHeat-T), in the ordinary form (the conductivity predicted from
//! the FVE at every call) and in the inference form (`to_inference(h, w)`: decay precomputed).
//! Every call ends with `.into_data()` on the logits. Weights are random: speed does not depend
//! on them.
//!
//! Benchmark ids are `vheat/<config>/<size>/b<batch>/<form>`, for example
//! `vheat/tiny/224/b1/inference`. The whole set is 40 points; the large ones take many seconds
//! per call (vHeat-B at 512², batch 8, is minutes per sample on 2 cores), so run a subset with
//! criterion's filter, a regular expression matched against the id:
//!
//! ```text
//! cargo bench --features wgpu --bench model -- tiny/224            # vHeat-T at 224², 4 points
//! cargo bench --features wgpu --bench model -- 'tiny/224/b1'        # batch 1, both forms
//! cargo bench --features wgpu --bench model -- '/inference$'        # inference form everywhere
//! cargo bench --features wgpu --bench model -- '(small|base)/384'   # two configs at 384²
//! cargo bench --features wgpu --bench model -- --list               # all ids, runs nothing
//! ```
//!
//! Each point takes 10 samples of one call each after a short warm-up (criterion's minimum),
//! and a model is only built when one of its points passes the filter. Criterion reports the
//! throughput as `Gelem/s`, where one element is one floating-point operation, so that figure
//! is GFLOP/s. After the run a table lists, per point, the median time, images per second and
//! GFLOP/s = 2 · MACs · batch / seconds, with the multiply-accumulate count from
//! [`vheat::VHeatConfig::macs`] (fvcore's convention, the one the paper's GFLOPs use).

#[path = "support/recorder.rs"]
mod recorder;

use std::cell::OnceCell;
use std::time::Duration;

use burn::prelude::*;
use burn::tensor::Distribution;
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use recorder::Recorder;
use vheat::{Form, VHeat, VHeatConfig};

const SAMPLES: usize = 10;
const BATCHES: [usize; 2] = [1, 8];

/// (name, configuration, input sides).
fn configs() -> Vec<(&'static str, VHeatConfig, Vec<usize>)> {
    vec![
        ("tiny", VHeatConfig::tiny(), vec![224, 384, 512, 768]),
        ("small", VHeatConfig::small(), vec![224, 384, 512]),
        ("base", VHeatConfig::base(), vec![224, 384, 512]),
    ]
}

fn form_name(form: Form) -> &'static str {
    match form {
        Form::Ordinary => "ordinary",
        Form::Inference => "inference",
    }
}

/// One measured point, for the summary table.
struct Point {
    key: String,
    batch: usize,
    flops: f64,
}

fn models(c: &mut Criterion) {
    let device = Device::flex();
    let rec = Recorder::default();
    let mut points = Vec::new();
    let mut group = c.benchmark_group("vheat");
    group
        .sample_size(SAMPLES)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(5));
    for (name, config, sides) in configs() {
        // Built on first use: a filtered-out configuration costs nothing.
        let model: OnceCell<VHeat> = OnceCell::new();
        let model = || model.get_or_init(|| config.try_init(&device).expect("valid configuration"));
        for side in sides {
            let inference: OnceCell<VHeat> = OnceCell::new();
            for form in [Form::Ordinary, Form::Inference] {
                let macs = config
                    .macs(side, side, form)
                    .expect("size above the total stride")
                    .total();
                for batch in BATCHES {
                    let key = format!("{name}/{side}/b{batch}/{}", form_name(form));
                    let flops = 2.0 * macs as f64 * batch as f64;
                    group.throughput(Throughput::Elements(flops as u64));
                    let input: OnceCell<Tensor<4>> = OnceCell::new();
                    group.bench_function(
                        BenchmarkId::new(
                            format!("{name}/{side}"),
                            format!("b{batch}/{}", form_name(form)),
                        ),
                        |b| {
                            let net = match form {
                                Form::Ordinary => model(),
                                Form::Inference => inference.get_or_init(|| {
                                    model().to_inference(side, side).expect("inference form")
                                }),
                            };
                            let x = input.get_or_init(|| {
                                Tensor::random(
                                    [batch, 3, side, side],
                                    Distribution::Default,
                                    &device,
                                )
                            });
                            b.iter_custom(|iters| {
                                rec.time(&key, iters, || net.forward(x.clone()).into_data())
                            })
                        },
                    );
                    points.push(Point { key, batch, flops });
                }
            }
        }
    }
    group.finish();
    report(&rec, &points);
}

fn report(rec: &Recorder, points: &[Point]) {
    let rows: Vec<(&Point, f64)> = points
        .iter()
        .filter_map(|p| rec.median(&p.key, SAMPLES).map(|t| (p, t)))
        .collect();
    if rows.is_empty() {
        return;
    }
    println!("\nvHeat forward on flex: median of {SAMPLES} calls");
    println!(
        "{:<28} {:>10} {:>9} {:>9}",
        "point", "ms/call", "img/s", "GFLOP/s"
    );
    for (p, t) in rows {
        println!(
            "{:<28} {:>10.1} {:>9.2} {:>9.1}",
            p.key,
            t * 1e3,
            p.batch as f64 / t,
            p.flops / t / 1e9
        );
    }
    println!();
}

criterion_group!(benches, models);
criterion_main!(benches);
