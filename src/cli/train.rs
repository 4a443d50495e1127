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
//! The decisions live in [`crate::train`] (the recipe and its overrides, the starting model, the
//! best of the raw model and its EMA); this file parses the flags, calls them and prints.
//! To add a flag: add a documented field to [`TrainArgs`] (`#[arg(long, default_value_t = …)]`
//! when it has one default, `Option<T>` when the default depends on the mode), then pass it on
//! in [`TrainArgs::overrides`] (a recipe flag) or read it in [`train`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::data::dataset::Dataset;
use burn::prelude::*;
use clap::Parser;

use super::{device_by_name, resolve_config, BackendArgs};
use crate::data::{
    hstack, save_png, vstack, EvalTransform, ImageFolder, ShapesConfig, SyntheticShapes,
};
use crate::error::{Error, Result};
use crate::train::{
    describe_mixing_and_ema, distributed, fit, meta_path, refuse_overwriting_inputs,
    save_checkpoint, small_config, starting_model, CheckpointMeta, FitOptions, FitReport,
    ModelChoice, RecipeChoice, RecipeOverrides, RunLock, StartingModel,
};

/// Arguments of `vheat train` (and of `examples/train.rs`).
#[derive(Debug, Clone, Parser)]
#[command(
    about = "Train a small vHeat on the built-in synthetic shapes, or fine-tune on an image folder"
)]
#[non_exhaustive]
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

    /// Leave out the training and validation images that do not decode (every image is
    /// decoded once before training; each one left out is reported with its path) instead of
    /// stopping with an error; an image that fails later, mid-epoch, is skipped too.
    #[arg(long)]
    pub skip_bad_images: bool,

    /// Peak learning rate [default: 2e-3 on synthetic shapes, 2e-4 on a folder].
    #[arg(long, value_name = "X")]
    pub lr: Option<f64>,

    /// Image side [default: 32 on synthetic shapes; on a folder the checkpoint's training size,
    /// or from scratch the first image's shorter side clamped to 32…224].
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

    /// Start from our checkpoint (NAME.bpk + NAME.json) or a reference .pth or .safetensors
    /// (its classifier is replaced by a new one for the folder's classes); only with --data.
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

/// The one device of a rank of a data-parallel job: `--devices` naming one device, or
/// `--backend`, where a GPU backend without an index becomes the rank's GPU on its machine
/// ([`distributed::backend_for_rank`]: `wgpu` is `wgpu:LOCAL_RANK`).
///
/// # Errors
/// [`Error::InvalidInput`] when `--devices` names several devices (each rank trains on one);
/// the errors of [`devices`].
fn rank_device(args: &TrainArgs) -> Result<Device> {
    match args.devices.as_deref() {
        Some([one]) => device_by_name(one.trim()),
        Some(list) => Err(Error::InvalidInput {
            what: "--devices under an MPI launcher".into(),
            expected: "one device per process (each rank trains on its own; give --backend \
                       wgpu and rank r takes wgpu:LOCAL_RANK)"
                .into(),
            found: list.join(","),
        }),
        None => device_by_name(&distributed::backend_for_rank(
            &args.backend.backend,
            distributed::local_rank(),
        )),
    }
}

impl TrainArgs {
    /// The recipe flags as [`RecipeOverrides`] (`--accum`, `--workers` and `--seed` always
    /// override: their defaults are the command's).
    pub fn overrides(&self) -> RecipeOverrides {
        RecipeOverrides {
            epochs: self.epochs,
            batch: self.batch,
            accum: Some(self.accum),
            lr: self.lr,
            warmup_epochs: self.warmup_epochs,
            weight_decay: self.weight_decay,
            workers: Some(self.workers),
            seed: Some(self.seed),
            aug: self.aug.clone(),
            scale: self.scale.clone(),
            hflip: self.hflip,
            rand_augment: self.rand_augment.clone(),
            reprob: self.reprob,
            mixup: self.mixup,
            cutmix: self.cutmix,
            ema: self.ema,
            ema_warmup: self.ema_warmup,
        }
    }

    /// `--recipe` as a [`RecipeChoice`].
    pub fn recipe_choice(&self) -> RecipeChoice {
        if self.recipe == "reference" {
            RecipeChoice::Reference
        } else {
            RecipeChoice::Auto
        }
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
#[non_exhaustive]
pub struct TrainOutcome {
    /// Per-epoch records, the trained model, the time taken.
    pub report: FitReport,
    /// The checkpoint written: `--out`/model.bpk (+ model.json beside it).
    pub checkpoint: PathBuf,
    /// This process's rank in a data-parallel job (0 alone); only rank 0 writes the checkpoint.
    pub rank: usize,
}

/// Trains as the flags say and saves `--out`/model.bpk + model.json; `Ok(None)` when
/// `--samples` only wrote the picture.
///
/// # Errors
/// Device, data, loading and training errors, typed.
pub fn train(args: &TrainArgs) -> Result<Option<TrainOutcome>> {
    let dist = distributed::from_launcher(Some(&args.distributed))?;
    // In a data-parallel job rank 0 alone prints; each rank's start-up line comes from `fit`.
    let rank = dist.as_ref().map_or(0, |d| d.rank());
    let speaks = rank == 0;
    macro_rules! say {
        ($($arg:tt)*) => {
            if speaks {
                println!($($arg)*);
            }
        };
    }
    let devices = match &dist {
        None => devices(args)?,
        Some(_) => vec![rank_device(args)?],
    };
    let device = devices[0].clone();
    if dist.is_none() {
        say!(
            "devices: {}",
            devices
                .iter()
                .map(|d| format!("{d:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let weights = args.out.join("model.bpk");
    let ema_weights = args.out.join("model_ema.bpk");
    let mut options = FitOptions::new(&args.out, device.clone())
        .with_devices(devices.clone())
        .with_resume(args.resume)
        .with_distributed(dist);

    let (report, meta) = if let Some(dir) = &args.data {
        let (train, val) = ImageFolder::list_split(dir, args.val_fraction, args.seed)?;
        if let Some(from) = &args.from {
            let from_meta = meta_path(from);
            let mut inputs = vec![
                (from.as_path(), "the --from checkpoint"),
                (from_meta.as_path(), "the --from checkpoint's configuration"),
            ];
            let config_file = args.config.as_deref().map(Path::new);
            if let Some(c) = config_file.filter(|c| c.is_file()) {
                inputs.push((c, "the --config file"));
            }
            refuse_overwriting_inputs(&weights, &inputs)?;
            refuse_overwriting_inputs(&ema_weights, &inputs)?;
        }
        // Every image decoded once before the first step, training and validation alike.
        let checking = Instant::now();
        let bar = decode_progress(train.len() + val.len(), speaks);
        let tick = || bar.inc(1);
        let (train, bad_train) = train.decoded_with(args.skip_bad_images, &tick)?;
        let (val, bad_val) = val.decoded_with(args.skip_bad_images, &tick)?;
        bar.finish_and_clear();
        for bad in bad_train.iter().chain(&bad_val).filter(|_| speaks) {
            eprintln!("skipped: {bad}");
        }
        say!(
            "checked {} images in {:.1} s{}",
            train.len() + val.len() + bad_train.len() + bad_val.len(),
            checking.elapsed().as_secs_f64(),
            if bad_train.len() + bad_val.len() > 0 {
                format!(
                    "; left out {} training and {} validation images that do not decode",
                    bad_train.len(),
                    bad_val.len()
                )
            } else {
                String::new()
            }
        );
        options = options.with_data_identity(format!(
            "{} (classes {:?}, {} training and {} validation images, validation fraction {})",
            dir.display(),
            train.classes,
            train.len(),
            val.len(),
            args.val_fraction
        ));
        say!(
            "data: {} ({} classes, {} training and {} validation images)",
            dir.display(),
            train.classes.len(),
            train.len(),
            val.len()
        );
        let StartingModel {
            model,
            config,
            size,
        } = starting_model(
            args.from.as_deref(),
            || resolve_config(args.config.as_deref().unwrap_or("tiny")),
            args.size,
            args.seed,
            &train,
            &device,
        )?;
        if let Some(from) = &args.from {
            say!(
                "loaded {} (backbone kept, new {}-way classifier)",
                from.display(),
                config.num_classes
            );
        }
        let chosen = args.overrides().folder_recipe(
            args.recipe_choice(),
            args.from.is_some(),
            &config,
            size,
            train.len(),
        )?;
        for why in &chosen.reasons {
            say!("recipe: {why}");
        }
        let recipe = chosen.config;
        config.check_memory(recipe.batch_size, size, true)?;
        for line in describe_mixing_and_ema(&recipe) {
            say!("{line}");
        }
        say!(
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
        say!("{}", recipe.augment);
        let train_set = train
            .augmented_dataset(&recipe.augment, size as u32, args.seed)?
            .skip_unreadable(args.skip_bad_images);
        let skipped = train_set.skipped_counter();
        let val_set = val.eval_dataset(EvalTransform::with_crop_pct(
            size as u32,
            recipe.eval_crop_pct,
        ));
        // Everything is checked: the folder is this run's from here until the final model is
        // written (the lock lives in `options`).
        options = hold_run_folder(options, &args.out)?;
        let report = fit(model, train_set, val_set, &recipe, &options)?;
        let n_skipped = skipped.load(std::sync::atomic::Ordering::Relaxed);
        if n_skipped > 0 {
            say!("skipped {n_skipped} unreadable training image reads (paths above)");
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
        let overrides = args.overrides();
        let recipe = overrides.synthetic_recipe(6, 2e-3, SyntheticShapes::num_classes())?;
        config.check_memory(recipe.batch_size, size, true)?;
        let model = config.init_seeded(&device, args.seed)?;
        if overrides.sets_augmentation() {
            say!(
                "note: --aug, --scale, --hflip, --rand-augment and --reprob shape image-folder \
                 training (--data); the synthetic shapes are drawn fresh and not augmented"
            );
        }
        options = options.with_data_identity(format!(
            "synthetic shapes {size}x{size}, {} training and {} validation images, seed {}",
            train.len(),
            valid.len(),
            args.seed
        ));
        for line in describe_mixing_and_ema(&recipe) {
            say!("{line}");
        }
        say!(
            "data: synthetic shapes {:?}, {size}x{size}, {} training and {} validation images",
            SyntheticShapes::class_names(),
            train.len(),
            valid.len()
        );
        say!(
            "model: vHeat depths {:?} widths {:?}, {} parameters; {} epochs, batch {}, lr {}",
            config.depths,
            config.dims,
            model.num_params(),
            recipe.epochs,
            recipe.batch_size,
            recipe.lr
        );
        // Everything is checked: the folder is this run's from here until the final model is
        // written (the lock lives in `options`).
        options = hold_run_folder(options, &args.out)?;
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
            save_checkpoint(ema, &meta, &ema_weights)?;
        }
    }
    Ok(Some(TrainOutcome {
        report,
        checkpoint: weights,
        rank,
    }))
}

/// Runs `vheat train`: [`train`], then a summary (accuracy of the model and, with an EMA, of the
/// EMA and which of the two validated better; time; where the files are).
///
/// # Errors
/// As [`train`].
pub fn run(args: TrainArgs) -> Result<()> {
    let start = Instant::now();
    let Some(TrainOutcome {
        report,
        checkpoint,
        rank,
    }) = train(&args)?
    else {
        return Ok(());
    };
    // Every rank ends with the same model; rank 0 reports it (and wrote the files).
    if rank > 0 {
        return Ok(());
    }
    if report.resumed_from > 0 {
        println!("resumed after epoch {}", report.resumed_from);
    }
    let best = report.best_epoch();
    if let (Some(last), Some((best_acc, best_epoch))) = (report.final_accuracy(), best) {
        println!(
            "final validation accuracy: {last:.1} % (best {best_acc:.1} % at epoch {best_epoch})"
        );
    }
    if let Some(ema) = report.ema_accuracy {
        let ema_path = args.out.join("model_ema.bpk");
        let best_ema = report.best_ema_epoch();
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

/// Takes the run's lock on `out` when this process writes the run's files (alone, or rank 0 of
/// a data-parallel job); the other ranks of a job only read the folder.
fn hold_run_folder(options: FitOptions, out: &Path) -> Result<FitOptions> {
    if !options.writes_artifacts() {
        return Ok(options);
    }
    Ok(options.with_run_lock(Arc::new(RunLock::acquire(out)?)))
}

/// The bar of the up-front decode of `len` images, on stderr: drawn on a terminal by the
/// process that prints the run's progress (`prints`: alone, or rank 0 of a data-parallel job),
/// hidden otherwise (a log gets the one "checked N images" line).
fn decode_progress(len: usize, prints: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !(prints && std::io::stderr().is_terminal()) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("decoding images {bar:30} {pos}/{len} ({eta})")
    {
        bar.set_style(style);
    }
    bar
}
