//! The all-reduce's share of a data-parallel training step: vHeat-T at 224², batch 8 per rank,
//! on the flex (CPU) device, under an MPI launcher.
//!
//! ```text
//! cargo build --release --features mpi --example allreduce_share
//! mpirun --bind-to none -np 2 target/release/examples/allreduce_share [--steps 3] [--side 224] [--batch 8]
//! ```
//!
//! Each rank times `--steps` steps (after one untimed step): forward and backward of its batch
//! ([`ImageClassifier::gradients`] without averaging), then the averaging of the gradients
//! alone ([`average_gradients`]: pack, one fused sum all-reduce, × 1/N, unpack). Rank 0 prints
//! the medians and the all-reduce's share of the step (the optimizer step, the same with or
//! without ranks, is left out of both, so the share is an upper bound).

use std::time::Instant;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use vheat::data::{ImageBatcher, ShapesConfig, SyntheticShapes};
use vheat::train::distributed::{average_gradients, from_launcher, DEFAULT_FUSION_BYTES};
use vheat::train::ImageClassifier;
use vheat::VHeatConfig;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> vheat::Result<()> {
    let (steps, side, batch) = (arg("--steps", 3), arg("--side", 224), arg("--batch", 8));
    let dist = from_launcher(Some("mpi"))?.expect("--distributed mpi always joins");
    let (rank, ranks) = (dist.rank(), dist.size());
    let device = Device::flex().autodiff();
    let config = VHeatConfig::tiny().with_num_classes(8).with_img_size(side);
    let model = config.init_seeded(&device, 0)?;
    let classifier = ImageClassifier::new(model, 0.1, Some(5.0));
    let shapes = SyntheticShapes::new(ShapesConfig::new(side, batch * ranks, 1))?;
    let items = (rank * batch..(rank + 1) * batch)
        .map(|i| shapes.get(i).expect("synthetic image"))
        .collect();
    let images = ImageBatcher.batch(items, &device);
    let (mut compute, mut reduce) = (Vec::new(), Vec::new());
    for step in 0..=steps {
        let t = Instant::now();
        let (mut grads, _) = classifier.gradients(images.clone());
        let c = t.elapsed().as_secs_f64();
        let t = Instant::now();
        average_gradients(
            &classifier.model,
            &mut grads,
            dist.comm.as_ref(),
            DEFAULT_FUSION_BYTES,
        )?;
        let r = t.elapsed().as_secs_f64();
        if step > 0 {
            compute.push(c);
            reduce.push(r);
        }
    }
    let (c, r) = (median(compute), median(reduce));
    if rank == 0 {
        println!(
            "vHeat-T {side}x{side}, batch {batch} per rank, {ranks} ranks, {} parameters: \
             forward+backward {:.0} ms, gradient averaging {:.1} ms ({:.1} % of the step)",
            classifier.model.num_params(),
            c * 1e3,
            r * 1e3,
            100.0 * r / (c + r)
        );
    }
    dist.comm.finish();
    Ok(())
}
