//! `vheat train`: train a small vHeat from scratch on the built-in procedural dataset (no
//! download), or fine-tune one on an image folder; `examples/train.rs` is a thin wrapper.
//!
//! ```text
//! vheat train                                  # synthetic shapes, flex CPU
//! vheat train --devices flex,flex              # data parallel on two devices
//! vheat train --resume                         # continue an interrupted run
//! vheat train --data DIR --from artifacts/train/model.bpk
//! vheat train --data DIR --from vheat_tiny.pth --config tiny
//! ```
//!
//! To add a flag: add a documented field to [`TrainArgs`] (`#[arg(long, default_value_t = …)]`
//! when it has one default, `Option<T>` when the default depends on the mode), then read it in
//! [`recipe`], [`starting_model`] or [`run`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::data::dataset::Dataset;
use burn::prelude::*;
use clap::Parser;

use super::{device_by_name, resolve_config, BackendArgs};
use crate::data::{
    hstack, save_png, vstack, AugmentPolicy, EvalTransform, ImageFolder, ShapesConfig,
    SyntheticShapes,
};
use crate::error::{Error, Result};
use crate::train::{
    distributed, fit, meta_path, pretrained_for_fine_tuning, save_checkpoint, CheckpointMeta,
    FitOptions, FitReport, ModelChoice, Pretrained, TrainingConfig,
};
use crate::vheat::{VHeat, VHeatConfig};

/// Arguments of `vheat train` (and of `examples/train.rs`).
#[derive(Debug, Clone, Parser)]
#[command(
    about = "Train a small vHeat on the built-in synthetic shapes, or fine-tune on an image folder"
)]
pub struct TrainArgs {
    /// The backend to train on (one device; see --devices for several).
    #[command(flatten)]
    pub backend: BackendArgs,

    /// Data-parallel training on several devices, comma-separated (e.g. flex,flex or
    /// wgpu:0,wgpu:1); overrides --backend.
    #[arg(long, value_name = "A,B,…", value_delimiter = ',')]
    pub devices: Option<Vec<String>>,

    /// Passes over the training set [default: 6 on synthetic shapes, 10 on a folder].
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,

    /// Images per batch [default: 64] (the reference recipe: 512 / --accum).
    #[arg(long, value_name = "N")]
    pub batch: Option<usize>,

    /// Recipe for a folder: `auto` picks from-scratch defaults without --from and fine-tuning
    /// defaults with it (and prints what it chose and why); `reference` is the paper's full
    /// ImageNet recipe (300 epochs, AdamW 5e-4 per 512 images, RandAugment, RandomErasing,
    /// Mixup/CutMix, model EMA) for the model's configuration.
    #[arg(long, value_name = "NAME", default_value = "auto", value_parser = ["auto", "reference"])]
    pub recipe: String,

    /// Augmentation policy: none, light (small shifts/scale/rotation, no flip) or reference
    /// (timm's: random resized crop, flip, RandAugment, RandomErasing) [default: the recipe's:
    /// light for images of 64 px or less, crop + flip above].
    #[arg(long = "aug", value_name = "POLICY")]
    pub aug: Option<String>,

    /// Random-resized-crop area range as LO,HI (fractions of the image, 0 < LO <= HI <= 1)
    /// [default: the policy's, 0.08,1].
    #[arg(long, value_name = "LO,HI", value_delimiter = ',')]
    pub scale: Option<Vec<f64>>,

    /// Probability of a horizontal flip [default: the policy's: 0 for none/light, 0.5 for reference].
    #[arg(long, value_name = "P")]
    pub hflip: Option<f64>,

    /// RandAugment as timm spells it (e.g. rand-m9-mstd0.5-inc1), or `none` [default: the
    /// policy's].
    #[arg(long, value_name = "SPEC")]
    pub rand_augment: Option<String>,

    /// RandomErasing probability (0-1) [default: the policy's: 0.25 for reference, else 0].
    #[arg(long, value_name = "P")]
    pub reprob: Option<f64>,

    /// Batches whose gradients are summed before each optimizer step (an effective batch of
    /// --batch x N).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub accum: usize,

    /// Warm-up length in epochs [default: the recipe's].
    #[arg(long, value_name = "E")]
    pub warmup_epochs: Option<f64>,

    /// Weight decay of the decayed parameter group [default: the recipe's].
    #[arg(long, value_name = "X")]
    pub weight_decay: Option<f64>,

    /// Mixup alpha (0 turns Mixup off; with --cutmix 0 too, no batch mixing) [default: the
    /// recipe's: 0.8 for reference, off otherwise].
    #[arg(long, value_name = "ALPHA")]
    pub mixup: Option<f64>,

    /// CutMix alpha (0 turns CutMix off) [default: the recipe's: 1.0 for reference, off otherwise].
    #[arg(long, value_name = "ALPHA")]
    pub cutmix: Option<f64>,

    /// Decay of a model EMA updated after every optimizer step (0 turns it off); it is validated
    /// beside the model every epoch and saved beside it as model_ema.bpk [default: the recipe's: 0.9999 for reference, off
    /// otherwise].
    #[arg(long, value_name = "DECAY")]
    pub ema: Option<f64>,

    /// Warm the EMA decay up as min(decay, (1+t)/(10+t)) after t updates.
    #[arg(long)]
    pub ema_warmup: bool,

    /// Skip an image that cannot be read during training (reported with its path and counted)
    /// instead of stopping the run with an error.
    #[arg(long)]
    pub skip_bad_images: bool,

    /// Peak learning rate [default: 2e-3 on synthetic shapes, 2e-4 on a folder].
    #[arg(long, value_name = "X")]
    pub lr: Option<f64>,

    /// Image side [default: 32 on synthetic shapes; on a folder the checkpoint's training size,
    /// or 64 from scratch].
    #[arg(long, value_name = "S")]
    pub size: Option<usize>,

    /// Size of the synthetic training set (a new set of images is drawn per seed).
    #[arg(long, value_name = "N", default_value_t = 12288)]
    pub train_images: usize,

    /// Size of the synthetic validation set.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub val_images: usize,

    /// Image-loading threads.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub workers: usize,

    /// Seed of the data, the initial weights and the data order.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,

    /// Artefacts: model.bpk + model.json, logs, per-epoch checkpoints.
    #[arg(long, value_name = "DIR", default_value = "artifacts/train")]
    pub out: PathBuf,

    /// Continue from the newest checkpoint in --out.
    #[arg(long)]
    pub resume: bool,

    /// Fine-tune on DIR (one sub-folder per class, or DIR/train + DIR/val) instead of the
    /// synthetic shapes.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// Share of each class kept for validation when --data is not pre-split.
    #[arg(long, value_name = "F", default_value_t = 0.2)]
    pub val_fraction: f64,

    /// Start from our checkpoint (NAME.bpk + NAME.json) or a reference .pth (its classifier is
    /// replaced by a new one for the folder's classes); only with --data.
    #[arg(long, value_name = "PATH", requires = "data")]
    pub from: Option<PathBuf>,

    /// The configuration of a --from .pth: tiny, small, base, or a JSON file [default: tiny].
    #[arg(long, value_name = "NAME|FILE")]
    pub config: Option<String>,

    /// Write a PNG grid of synthetic training images (two of each class) to PATH and exit.
    #[arg(long, value_name = "PATH")]
    pub samples: Option<PathBuf>,

    /// Data-parallel training across the processes an MPI launcher started (`mpirun -np N
    /// vheat train …`, --batch per process): auto (when a launcher of several processes is
    /// detected), mpi (always), none. Needs a build with `--features mpi`.
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = ["auto", "mpi", "none"])]
    pub distributed: String,
}

/// The devices to train on: `--devices`, or `--backend`.
///
/// # Errors
/// An unknown, not compiled or unavailable backend.
pub fn devices(args: &TrainArgs) -> Result<Vec<Device>> {
    match &args.devices {
        Some(list) => list.iter().map(|n| device_by_name(n.trim())).collect(),
        None => Ok(vec![args.backend.device()?]),
    }
}

/// The small vHeat of the main job: 4 stages, depths 1-1-2-1, widths 16…128.
pub fn small_config(size: usize, classes: usize) -> VHeatConfig {
    VHeatConfig::new(vec![1, 1, 2, 1], vec![16, 32, 64, 128])
        .with_num_classes(classes)
        .with_img_size(size)
        .with_post_norm(false)
        .with_drop_path_rate(0.05)
}

/// A model to fine-tune with a new `classes`-way head, its configuration and input side: from
/// our checkpoint, from a reference `.pth` (its classifier is dropped), or fresh.
///
/// # Errors
/// The loaders' errors, naming the file.
pub fn starting_model(
    args: &TrainArgs,
    train: &ImageFolder,
    device: &Device,
) -> Result<(VHeat, VHeatConfig, usize)> {
    let classes = train.classes.len();
    let Some(from) = &args.from else {
        let size = args.size.unwrap_or(native_side(train)?);
        let config = small_config(size, classes);
        return Ok((config.init_seeded(device, args.seed)?, config, size));
    };
    let is_pth = from
        .extension()
        .is_some_and(|e| e == "pth" || e == "pt" || e == "bin");
    let pretrained = if is_pth {
        let config = resolve_config(args.config.as_deref().unwrap_or("tiny"))?;
        Pretrained::Pytorch(from.clone(), config)
    } else {
        Pretrained::Ours(from.clone())
    };
    let (model, config) = pretrained_for_fine_tuning(&pretrained, classes, device)?;
    println!(
        "loaded {} (backbone kept, new {classes}-way classifier)",
        from.display()
    );
    let size = args.size.unwrap_or(config.img_size);
    Ok((model, config, size))
}

/// The side a from-scratch run trains at when `--size` is not given: the shorter side of the
/// folder's first image, clamped to 32 (the network's total stride) … 224.
///
/// # Errors
/// [`Error::ImageRead`] if that image's header cannot be read.
pub fn native_side(train: &ImageFolder) -> Result<usize> {
    let Some(first) = train.samples.first() else {
        return Ok(64);
    };
    let (w, h) = crate::data::image_dimensions(&first.path)?;
    Ok((w.min(h) as usize).clamp(32, 224))
}

/// The recipe for an image folder: `--recipe reference` or the automatic from-scratch /
/// fine-tuning defaults (whose reasons are printed), then every flag that was given on top.
///
/// # Errors
/// [`Error::InvalidConfig`] naming a contradictory or out-of-range flag (checked before any
/// training starts).
pub fn folder_recipe(
    args: &TrainArgs,
    config: &VHeatConfig,
    size: usize,
    num_images: usize,
) -> Result<TrainingConfig> {
    let mut recipe = if args.recipe == "reference" {
        let total = args.batch.unwrap_or(512usize.div_ceil(args.accum)) * args.accum;
        println!(
            "recipe: the paper's reference recipe for this configuration at {total} images per step"
        );
        let mut r = TrainingConfig::reference(config, total);
        r.batch_size = args.batch.unwrap_or(512usize.div_ceil(args.accum));
        r
    } else {
        let chosen = if args.from.is_some() {
            TrainingConfig::fine_tune(size, num_images)
        } else {
            TrainingConfig::from_scratch(size, num_images)
        };
        for why in &chosen.reasons {
            println!("recipe: {why}");
        }
        chosen.config
    };
    if let Some(e) = args.epochs {
        recipe.epochs = e;
    }
    if let Some(b) = args.batch {
        recipe.batch_size = b;
    }
    if let Some(lr) = args.lr {
        recipe.lr = lr;
    }
    if let Some(w) = args.warmup_epochs {
        recipe.warmup_epochs = w;
    }
    if let Some(w) = args.weight_decay {
        recipe.weight_decay = w;
    }
    recipe.grad_accumulation = args.accum;
    recipe.num_workers = args.workers;
    recipe.seed = args.seed;
    if let Some(policy) = &args.aug {
        recipe.augment = policy.parse::<AugmentPolicy>()?.config();
    }
    if let Some(scale) = &args.scale {
        let [lo, hi] = scale[..] else {
            return Err(Error::InvalidConfig(format!(
                "--scale takes two numbers LO,HI, got {scale:?}"
            )));
        };
        recipe.augment.scale = (lo, hi);
    }
    if let Some(p) = args.hflip {
        recipe.augment.hflip = p;
    }
    if let Some(spec) = &args.rand_augment {
        recipe.augment.rand_augment = (spec != "none").then(|| spec.clone());
    }
    if let Some(p) = args.reprob {
        recipe.augment.reprob = p;
    }
    for (flag, v) in [("--mixup", args.mixup), ("--cutmix", args.cutmix)] {
        if let Some(a) = v.filter(|a| !(a.is_finite() && *a >= 0.0)) {
            return Err(Error::InvalidConfig(format!(
                "{flag} {a}: the alpha must be a finite number >= 0 (0 turns it off)"
            )));
        }
    }
    if args.mixup.is_some() || args.cutmix.is_some() {
        let mut m = recipe
            .mixup
            .clone()
            .unwrap_or_else(|| {
                crate::data::MixupConfig::new(config.num_classes)
                    .with_mixup_alpha(0.0)
                    .with_cutmix_alpha(0.0)
            })
            .with_label_smoothing(recipe.label_smoothing);
        if let Some(a) = args.mixup {
            m = m.with_mixup_alpha(a);
        }
        if let Some(a) = args.cutmix {
            m = m.with_cutmix_alpha(a);
        }
        recipe.mixup = (m.mixup_alpha > 0.0 || m.cutmix_alpha > 0.0).then_some(m);
    }
    if let Some(d) = args.ema {
        recipe.ema_decay = (d > 0.0).then_some(d);
    }
    recipe.ema_warmup |= args.ema_warmup;
    if let Some(m) = &recipe.mixup {
        println!(
            "mixup: alpha {} / cutmix alpha {}, switch {}, prob {}, smoothing {} in the soft targets",
            m.mixup_alpha, m.cutmix_alpha, m.switch_prob, m.prob, m.label_smoothing
        );
    }
    if let Some(d) = recipe.ema_decay {
        println!(
            "model EMA: decay {d}{}",
            if recipe.ema_warmup {
                " with warm-up"
            } else {
                ""
            }
        );
    }
    recipe.validate()?;
    Ok(recipe)
}

/// The training recipe from the flags, with the mode's defaults for what was not given
/// (`--ema` and `--ema-warmup` included: a decay of 0 or less is no EMA, one above 1 is an
/// error when training starts).
pub fn recipe(args: &TrainArgs, default_epochs: usize, default_lr: f64) -> TrainingConfig {
    TrainingConfig {
        epochs: args.epochs.unwrap_or(default_epochs),
        batch_size: args.batch.unwrap_or(64),
        grad_accumulation: args.accum,
        lr: args.lr.unwrap_or(default_lr),
        warmup_epochs: 1.0,
        num_workers: args.workers,
        seed: args.seed,
        ema_decay: args.ema.filter(|d| *d > 0.0),
        ema_warmup: args.ema_warmup,
        ..TrainingConfig::default()
    }
}

/// Writes a PNG grid of `shapes` (two rows, one tile per class) to `path`.
///
/// # Errors
/// [`Error::ImageWrite`] when the file cannot be written.
pub fn write_samples(shapes: &SyntheticShapes, path: &Path) -> Result<()> {
    let s = shapes.config().image_size as u32;
    let n = SyntheticShapes::num_classes();
    let mut rows = Vec::with_capacity(2);
    for r in 0..2 {
        let mut tiles = Vec::with_capacity(n);
        for c in 0..n {
            let (rgb, _) = shapes.render_rgb(r * n + c);
            let bytes = rgb.iter().map(|v| (v * 255.0).round() as u8).collect();
            let img = image::RgbImage::from_raw(s, s, bytes).ok_or_else(|| Error::ImageWrite {
                path: path.to_path_buf(),
                reason: format!("a rendered tile does not hold {s}x{s}x3 values"),
            })?;
            tiles.push(image::imageops::resize(
                &img,
                s * 2,
                s * 2,
                image::imageops::Nearest,
            ));
        }
        rows.push(hstack(&tiles, 4, image::Rgb([255, 255, 255])));
    }
    save_png(&vstack(&rows, 4, image::Rgb([255, 255, 255])), path)?;
    println!("wrote {}", path.display());
    Ok(())
}

/// What [`train`] produced: the fit's report and where the checkpoint went (`None` when only
/// `--samples` was written).
#[derive(Debug)]
pub struct TrainOutcome {
    /// Per-epoch records, the trained model, the time taken.
    pub report: FitReport,
    /// The checkpoint written: `--out`/model.bpk (+ model.json beside it).
    pub checkpoint: PathBuf,
}

/// Trains as the flags say and saves `--out`/model.bpk + model.json; `Ok(None)` when
/// `--samples` only wrote the picture.
///
/// # Errors
/// Device, data, loading and training errors, typed.
pub fn train(args: &TrainArgs) -> Result<Option<TrainOutcome>> {
    let devices = devices(args)?;
    let device = devices[0].clone();
    println!(
        "devices: {}",
        devices
            .iter()
            .map(|d| format!("{d:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let weights = args.out.join("model.bpk");
    let options = FitOptions::new(&args.out, device.clone())
        .with_devices(devices.clone())
        .with_resume(args.resume)
        .with_distributed(distributed::from_launcher(Some(&args.distributed))?);

    let (report, meta) = if let Some(dir) = &args.data {
        let (train, val) = ImageFolder::open_split(dir, args.val_fraction, args.seed)?;
        println!(
            "data: {} ({} classes, {} training and {} validation images)",
            dir.display(),
            train.classes.len(),
            train.len(),
            val.len()
        );
        let (model, config, size) = starting_model(args, &train, &device)?;
        let recipe = folder_recipe(args, &config, size, train.len())?;
        println!(
            "model: {} parameters, input {size}x{size}; {} epochs, batch {}{}, lr {}, \
             warm-up {} epochs, weight decay {}",
            model.num_params(),
            recipe.epochs,
            recipe.batch_size,
            if recipe.grad_accumulation > 1 {
                format!(" x {} accumulated", recipe.grad_accumulation)
            } else {
                String::new()
            },
            recipe.lr,
            recipe.warmup_epochs,
            recipe.weight_decay
        );
        println!("{}", recipe.augment);
        let train_set = train
            .augmented_dataset(&recipe.augment, size as u32, args.seed)?
            .skip_unreadable(args.skip_bad_images);
        let skipped = train_set.skipped_counter();
        let val_set = val.eval_dataset(EvalTransform::with_crop_pct(
            size as u32,
            recipe.eval_crop_pct,
        ));
        let report = fit(model, train_set, val_set, &recipe, &options)?;
        let n_skipped = skipped.load(std::sync::atomic::Ordering::Relaxed);
        if n_skipped > 0 {
            println!("skipped {n_skipped} unreadable training image reads (paths above)");
        }
        let meta = CheckpointMeta {
            config,
            classes: train.classes.clone(),
            image_size: size,
            crop_pct: recipe.eval_crop_pct,
        };
        (report, meta)
    } else {
        let size = args.size.unwrap_or(32);
        let train = SyntheticShapes::new(ShapesConfig::new(size, args.train_images, args.seed))?;
        let valid = SyntheticShapes::new(ShapesConfig::new(
            size,
            args.val_images,
            args.seed.wrapping_add(1_000_003),
        ))?;
        if let Some(path) = &args.samples {
            write_samples(&train, path)?;
            return Ok(None);
        }
        let config = small_config(size, SyntheticShapes::num_classes());
        let model = config.init_seeded(&device, args.seed)?;
        let recipe = recipe(args, 6, 2e-3);
        if let Some(d) = recipe.ema_decay {
            println!(
                "model EMA: decay {d}{}",
                if recipe.ema_warmup {
                    " with warm-up"
                } else {
                    ""
                }
            );
        }
        println!(
            "data: synthetic shapes {:?}, {size}x{size}, {} training and {} validation images",
            SyntheticShapes::class_names(),
            train.len(),
            valid.len()
        );
        println!(
            "model: vHeat depths {:?} widths {:?}, {} parameters; {} epochs, batch {}, lr {}",
            config.depths,
            config.dims,
            model.num_params(),
            recipe.epochs,
            recipe.batch_size,
            recipe.lr
        );
        let report = fit(model, train, valid, &recipe, &options)?;
        let meta = CheckpointMeta {
            config,
            classes: SyntheticShapes::class_names(),
            image_size: size,
            crop_pct: 1.0,
        };
        (report, meta)
    };
    if options.writes_artifacts() {
        save_checkpoint(&report.model, &meta, &weights)?;
        if let Some(ema) = &report.ema {
            save_checkpoint(ema, &meta, args.out.join("model_ema.bpk"))?;
        }
    }
    Ok(Some(TrainOutcome {
        report,
        checkpoint: weights,
    }))
}

/// Runs `vheat train`: [`train`], then a summary (accuracy of the model and, with an EMA, of the
/// EMA and which of the two validated better; time; where the files are).
///
/// # Errors
/// As [`train`].
pub fn run(args: TrainArgs) -> Result<()> {
    let start = Instant::now();
    let Some(TrainOutcome { report, checkpoint }) = train(&args)? else {
        return Ok(());
    };
    if report.resumed_from > 0 {
        println!("resumed after epoch {}", report.resumed_from);
    }
    let best = report
        .epochs
        .iter()
        .filter_map(|e| e.valid_accuracy.map(|a| (a, e.epoch)))
        .fold(None, |best: Option<(f64, usize)>, x| match best {
            Some(b) if b.0 >= x.0 => Some(b),
            _ => Some(x),
        });
    if let (Some(last), Some((best_acc, best_epoch))) = (report.final_accuracy(), best) {
        println!(
            "final validation accuracy: {last:.1} % (best {best_acc:.1} % at epoch {best_epoch})"
        );
    }
    if let Some(ema) = report.ema_accuracy {
        let ema_path = args.out.join("model_ema.bpk");
        let best_ema = report
            .epochs
            .iter()
            .filter_map(|e| e.ema_valid_accuracy.map(|a| (a, e.epoch)))
            .fold(None, |best: Option<(f64, usize)>, x| match best {
                Some(b) if b.0 >= x.0 => Some(b),
                _ => Some(x),
            });
        match best_ema {
            Some((best_acc, best_epoch)) => println!(
                "model EMA validation accuracy: {ema:.1} % (best {best_acc:.1} % at epoch {best_epoch}; saved as {})",
                ema_path.display()
            ),
            None => println!(
                "model EMA validation accuracy: {ema:.1} % (saved as {})",
                ema_path.display()
            ),
        }
        if let Some((choice, acc)) = report.best_of_raw_and_ema() {
            let (which, path) = match choice {
                ModelChoice::Ema => ("the model EMA", ema_path),
                ModelChoice::Raw => ("the raw model", checkpoint.clone()),
            };
            println!(
                "better after the last epoch: {which} ({acc:.1} %), {}",
                path.display()
            );
        }
    }
    println!(
        "trained in {:.0} s ({:.0} s with set-up)",
        report.elapsed.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    println!(
        "checkpoint: {} (+ {}); resume state in {}",
        checkpoint.display(),
        meta_path(&checkpoint).display(),
        args.out.join("checkpoint").display()
    );
    Ok(())
}
