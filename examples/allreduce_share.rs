//! The all-reduce's share of a data-parallel training step: vHeat-T at 224², batch 8 per rank,
//! on the flex (CPU) device, under an MPI launcher.
//!
//! ```text
//! cargo build --release --features mpi --example allreduce_share
//! mpirun --bind-to none -np 2 target/release/examples/allreduce_share [--steps 3] [--side 224] [--batch 8]
//! ```
//!
//! Each rank times `--steps` steps (after one untimed step): forward and backward of its batch
//! ([`ImageClassifier::gradients`] without averaging); then a one-float all-reduce that waits
//! for the slower rank (so that the imbalance between the ranks' compute is not counted as
//! all-reduce time); then the averaging as training does it ([`average_gradients_in`] with a
//! buffer kept across steps: pack, one fused sum all-reduce, × 1/N, unpack). Rank 0 prints the
//! medians and the averaging's share of the step (the optimizer step, the same with or without
//! ranks, is left out of both, so the share is an upper bound). The ranks share the machine's
//! cores ([`vheat::train::distributed::share_cores_among_local_ranks`]).

use std::time::Instant;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use vheat::data::{ImageBatcher, ShapesConfig, SyntheticShapes};
use vheat::train::distributed::{average_gradients_in, from_launcher, DEFAULT_FUSION_BYTES};
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
    let mut buffer = Vec::new();
    let mut timed = Vec::new();
    for step in 0..=steps {
        let t = Instant::now();
        let (mut grads, _) = classifier.gradients(images.clone());
        let compute = t.elapsed().as_secs_f64();
        let t = Instant::now();
        dist.comm.all_reduce_sum(&mut [0.0])?;
        let wait = t.elapsed().as_secs_f64();
        let times = average_gradients_in(
            &classifier.model,
            &mut grads,
            dist.comm.as_ref(),
            DEFAULT_FUSION_BYTES,
            &mut buffer,
        )?;
        if step > 0 {
            timed.push((compute, wait, times));
        }
    }
    let med = |f: &dyn Fn(&(f64, f64, vheat::train::distributed::AveragingTimes)) -> f64| {
        median(timed.iter().map(f).collect())
    };
    let compute = med(&|t| t.0);
    let wait = med(&|t| t.1);
    let pack = med(&|t| t.2.pack.as_secs_f64());
    let reduce = med(&|t| t.2.all_reduce.as_secs_f64());
    let unpack = med(&|t| t.2.unpack.as_secs_f64());
    let averaging = med(&|t| t.2.total().as_secs_f64());
    if rank == 0 {
        println!(
            "vHeat-T {side}x{side}, batch {batch} per rank, {ranks} ranks, {} compute thread(s) \
             per rank, {} parameters:",
            rayon::current_num_threads(),
            classifier.model.num_params(),
        );
        println!(
            "  forward+backward {:.0} ms; waiting for the slower rank {:.1} ms",
            compute * 1e3,
            wait * 1e3
        );
        println!(
            "  gradient averaging {:.1} ms (pack {:.1}, all-reduce {:.1}, unpack {:.1}): \
             {:.1} % of the step",
            averaging * 1e3,
            pack * 1e3,
            reduce * 1e3,
            unpack * 1e3,
            100.0 * averaging / (compute + averaging)
        );
    }
    dist.comm.finish();
    Ok(())
}
