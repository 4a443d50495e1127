//! Semantic segmentation with a vHeat backbone: a small vHeat with the reference's per-stage
//! output norms, a light FPN head, trained with AdamW on procedurally generated shapes (disks,
//! rings, bars; 4 classes with the background), printing the validation mIoU per epoch.
//!
//! ```text
//! cargo run --release --example segmentation     # flex CPU: about 2.5 minutes on 2 busy cores
//! cargo run --release --features wgpu --example segmentation -- --device wgpu --epochs 10
//! ```
//!
//! Options: `--device NAME` (flex, ndarray, wgpu, cuda), `--epochs N` (default 12), `--steps N`
//! training steps per epoch (default 100), `--batch N` (default 16), `--size H` or `--size HxW`
//! (default 64), `--lr X` (default 2e-3, with a 5% linear warm-up and cosine decay), `--seed N`.

use std::time::Instant;

use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use vheat::dense::{
    ConfusionMatrix, SegmentationModel, ShapeMasks, ShapeMasksConfig, MASK_CLASSES,
};
use vheat::{device_from_name, Indices, VHeatConfig};

struct Args {
    device: String,
    epochs: usize,
    steps: usize,
    batch: usize,
    size: [usize; 2],
    lr: f64,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        device: "flex".into(),
        epochs: 12,
        steps: 100,
        batch: 16,
        size: [64, 64],
        lr: 2e-3,
        seed: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--device" => a.device = value()?,
            "--epochs" => a.epochs = num(value()?)?,
            "--steps" => a.steps = num(value()?)?,
            "--batch" => a.batch = num(value()?)?,
            "--seed" => a.seed = num(value()?)? as u64,
            "--lr" => {
                let v = value()?;
                a.lr = v.parse().map_err(|e| format!("--lr {v}: {e}"))?;
            }
            "--size" => {
                let v = value()?;
                let parts: Vec<&str> = v.split('x').collect();
                a.size = match parts.as_slice() {
                    [s] => [num(s.to_string())?; 2],
                    [h, w] => [num(h.to_string())?, num(w.to_string())?],
                    _ => return Err(format!("--size {v}: expected H or HxW")),
                };
            }
            "-h" | "--help" => {
                return Err("options: --device NAME --epochs N --steps N --batch N \
                            --size H|HxW --lr X --seed N"
                    .into())
            }
            other => return Err(format!("unknown option {other} (see --help)")),
        }
    }
    if a.epochs == 0 || a.steps == 0 || a.batch == 0 {
        return Err("--epochs, --steps and --batch must be positive".into());
    }
    Ok(a)
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
    let args = parse_args()?;
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
