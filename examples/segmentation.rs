//! Semantic segmentation with a vHeat backbone: a small vHeat with the reference's per-stage
//! output norms, a light FPN head, trained with AdamW on procedurally generated shapes (disks,
//! rings, bars; 4 classes with the background), printing the validation mIoU per epoch.
//!
//! ```text
//! cargo run --release --example segmentation     # flex CPU: about 2.5 minutes on 2 busy cores
//! cargo run --release --features wgpu --example segmentation -- --device wgpu --epochs 10
//! ```
//!
//! Options (`--help` lists them with their defaults): `--device NAME` (flex, ndarray, wgpu, cuda), `--epochs N` (default 12), `--steps N`
//! training steps per epoch (default 100), `--batch N` (default 16), `--size H` or `--size HxW`
//! (default 64), `--lr X` (default 2e-3, with a 5% linear warm-up and cosine decay), `--seed N`.

use std::time::Instant;

use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use clap::Parser;
use vheat::dense::{
    ConfusionMatrix, SegmentationModel, ShapeMasks, ShapeMasksConfig, MASK_CLASSES,
};
use vheat::{device_from_name, Indices, VHeatConfig};

/// Segmentation of the synthetic shape masks with an FPN head on a small vHeat.
#[derive(Parser)]
struct Args {
    /// Backend: flex, ndarray, wgpu or cuda.
    #[arg(long, value_name = "NAME", default_value = "flex")]
    device: String,
    /// Training epochs.
    #[arg(long, value_name = "N", default_value_t = 12, value_parser = positive)]
    epochs: usize,
    /// Training steps per epoch.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = positive)]
    steps: usize,
    /// Images per step.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = positive)]
    batch: usize,
    /// Image size: H (square) or HxW.
    #[arg(long, value_name = "H|HxW", default_value = "64", value_parser = parse_size)]
    size: [usize; 2],
    /// Peak learning rate (5 % linear warm-up, then cosine decay).
    #[arg(long, value_name = "X", default_value_t = 2e-3)]
    lr: f64,
    /// Seed of the weights and the data.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
}

/// A count of at least 1.
fn positive(v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{v:?} is not a positive whole number")),
    }
}

/// `H` or `HxW`.
fn parse_size(v: &str) -> Result<[usize; 2], String> {
    let parts: Vec<&str> = v.split('x').collect();
    let n = |s: &str| s.parse::<usize>().map_err(|e| format!("{s:?}: {e}"));
    match parts.as_slice() {
        [s] => Ok([n(s)?; 2]),
        [h, w] => Ok([n(h)?, n(w)?]),
        _ => Err(format!("{v:?}: expected H or HxW")),
    }
}

/// Validation: loss, pixel accuracy and the confusion matrix over a fixed set of batches.
fn evaluate(
    model: &SegmentationModel,
    batches: &[(Tensor<4>, Tensor<3, Int>)],
) -> vheat::Result<(f64, ConfusionMatrix)> {
    let mut cm = ConfusionMatrix::new(model.num_classes());
    let mut loss = 0.0;
    for (images, masks) in batches {
        let logits = model.forward(images.clone())?;
        loss += vheat::dense::pixel_cross_entropy(logits.clone(), masks.clone())?
            .into_scalar::<f32>() as f64;
        cm.update_tensors(logits.argmax(1).squeeze_dim(1), masks.clone())?;
    }
    Ok((loss / batches.len() as f64, cm))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let device = device_from_name(&args.device)?;
    let train_device = device.clone().autodiff();
    let [h, w] = args.size;

    // A small vHeat (widths 16…128, six blocks), headless, with the reference's output norms.
    let backbone = VHeatConfig::new(vec![1, 1, 2, 1], vec![16, 32, 64, 128])
        .with_num_classes(0)
        .with_img_size(h.min(w))
        .with_post_norm(false)
        .with_drop_path_rate(0.0)
        .init_seeded(&train_device, args.seed)?
        .with_output_norms(Indices::All)?;
    let mut model = SegmentationModel::new(backbone, MASK_CLASSES.len(), 32)?;
    println!(
        "device: {device:?}\nmodel: vHeat depths [1, 1, 2, 1], widths [16, 32, 64, 128] + FPN head \
         (width 32): {} parameters\ndata: {h}x{w} shapes, {} classes {:?}; {} epochs x {} steps \
         x batch {}, AdamW lr {} (warm-up, cosine)",
        model.num_params(),
        MASK_CLASSES.len(),
        MASK_CLASSES,
        args.epochs,
        args.steps,
        args.batch,
        args.lr
    );

    let mut train = ShapeMasks::new(ShapeMasksConfig::new(h, w), args.seed.wrapping_add(1));
    let mut val_gen = ShapeMasks::new(
        ShapeMasksConfig::new(h, w),
        args.seed.wrapping_add(1_000_003),
    );
    let val: Vec<_> = (0..8).map(|_| val_gen.batch(8, &device)).collect();

    let mut optim = AdamWConfig::new()
        .with_weight_decay(0.01)
        .with_epsilon(1e-8)
        .init();
    let total = args.epochs * args.steps;
    let start = Instant::now();
    let (loss0, cm0) = evaluate(&model.valid(), &val)?;
    println!(
        "epoch  0  train loss   -     val loss {loss0:.3}  pixel acc {:.3}  mIoU {:.3}",
        cm0.pixel_accuracy(),
        cm0.mean_iou()
    );
    for epoch in 1..=args.epochs {
        let mut train_loss = 0.0;
        for step in 0..args.steps {
            // Linear warm-up over the first 5% of the steps, then cosine decay to 0.
            let i = (epoch - 1) * args.steps + step;
            let warmup = (total / 20).max(1);
            let lr = if i < warmup {
                args.lr * (i + 1) as f64 / warmup as f64
            } else {
                let t = (i - warmup) as f64 / (total - warmup).max(1) as f64;
                args.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            };
            let (images, masks) = train.batch(args.batch, &train_device);
            let loss = model.loss(images, masks)?;
            train_loss += loss.clone().into_scalar::<f32>() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
        }
        let (val_loss, cm) = evaluate(&model.valid(), &val)?;
        let per_class: Vec<String> = cm
            .iou()
            .iter()
            .zip(MASK_CLASSES)
            .map(|(iou, name)| match iou {
                Some(v) => format!("{name} {v:.2}"),
                None => format!("{name} -"),
            })
            .collect();
        println!(
            "epoch {epoch:2}  train loss {:.3}  val loss {val_loss:.3}  pixel acc {:.3}  \
             mIoU {:.3}  ({})  [{:.0} s]",
            train_loss / args.steps as f64,
            cm.pixel_accuracy(),
            cm.mean_iou(),
            per_class.join(", "),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
