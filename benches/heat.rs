//! The DCT transforms and one heat-conduction operator at the map sizes of vHeat-T.
//!
//! `cargo bench --bench heat`

use burn::prelude::*;
use burn::tensor::Distribution;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use vheat::hco::{FrequencyEmbeddingConfig, HeatConductionConfig};
use vheat::heat::{dct2d, idct2d};

/// (map side, channels) of vHeat-T's four stages at 224×224.
const STAGES: [(usize, usize); 4] = [(56, 96), (28, 192), (14, 384), (7, 768)];

fn transforms(c: &mut Criterion) {
    let device = Device::default();
    let mut group = c.benchmark_group("dct2d+idct2d");
    for (n, ch) in STAGES {
        let x = Tensor::<4>::random([1, n, n, ch], Distribution::Default, &device);
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{n}x{n}x{ch}")),
            &x,
            |b, x| b.iter(|| idct2d(dct2d(x.clone())).into_data()),
        );
    }
    group.finish();
}

fn operator(c: &mut Criterion) {
    let device = Device::default();
    let mut group = c.benchmark_group("heat_conduction");
    group.sample_size(20);
    for (n, ch) in STAGES {
        let op = HeatConductionConfig::new(ch).init(&device);
        let fve = FrequencyEmbeddingConfig::new(n, n, ch)
            .init(&device)
            .resized(n, n);
        let x = Tensor::<4>::random([1, n, n, ch], Distribution::Default, &device);
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{n}x{n}x{ch}")),
            &x,
            |b, x| {
                b.iter(|| {
                    op.forward_channels_last(x.clone(), Some(fve.clone()))
                        .into_data()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, transforms, operator);
criterion_main!(benches);
