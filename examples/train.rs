//! The main job: train a small vHeat from scratch on the built-in procedural dataset (no
//! download), or fine-tune one on your own image folder.
//!
//! ```text
//! cargo run --release --example train                       # synthetic shapes, flex CPU
//! cargo run --release --example train -- --devices flex,flex  # data parallel on two devices
//! cargo run --release --example train -- --resume           # continue an interrupted run
//! cargo run --release --example train -- --data DIR --from artifacts/train/model.bpk
//! cargo run --release --example train -- --data DIR --from vheat_tiny.pth --config tiny
//! ```
//!
//! Options:
//! ```text
//! --backend NAME      flex (default), ndarray, wgpu or cuda (compiled in by Cargo features)
//! --devices A,B,…     data-parallel training on several devices (e.g. flex,flex or wgpu:0,wgpu:1)
//! --epochs N          passes over the training set
//! --batch N           images per optimizer step
//! --lr X              peak learning rate
//! --size S            image side (synthetic: 32; folder: the checkpoint's training size)
//! --train-images N    size of the synthetic training set (a new set of images is drawn per seed)
//! --val-images N      size of the synthetic validation set
//! --workers N         image-loading threads
//! --seed N            seed of the data, the initial weights and the data order
//! --out DIR           artefacts: model.bpk + model.json, logs, per-epoch checkpoints
//! --resume            continue from the newest checkpoint in --out
//! --data DIR          fine-tune on DIR (one sub-folder per class, or DIR/train + DIR/val)
//! --val-fraction F    share of each class kept for validation when DIR is not pre-split (0.2)
//! --from PATH         start from our checkpoint (NAME.bpk + NAME.json) or a reference .pth
//! --config NAME|FILE  the configuration of a .pth: tiny, small, base, or a JSON file
//! --samples PATH      write a PNG grid of training images (two of each class) and exit
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use burn::data::dataset::Dataset;
use burn::prelude::*;
use vheat::data::{
    hstack, save_png, vstack, EvalTransform, ImageFolder, ShapesConfig, SyntheticShapes,
    TrainTransform,
};
use vheat::train::{
    fit, pretrained_for_fine_tuning, save_checkpoint, CheckpointMeta, FitOptions, Pretrained,
    TrainingConfig,
};
use vheat::{VHeat, VHeatConfig};

struct Args {
    backend: String,
    devices: Option<String>,
    epochs: Option<usize>,
    batch: Option<usize>,
    lr: Option<f64>,
    size: Option<usize>,
    train_images: usize,
    val_images: usize,
    workers: usize,
    seed: u64,
    out: PathBuf,
    resume: bool,
    data: Option<PathBuf>,
    val_fraction: f64,
    from: Option<PathBuf>,
    config: Option<String>,
    samples: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        backend: "flex".into(),
        devices: None,
        epochs: None,
        batch: None,
        lr: None,
        size: None,
        train_images: 12288,
        val_images: 1024,
        workers: 1,
        seed: 0,
        out: PathBuf::from("artifacts/train"),
        resume: false,
        data: None,
        val_fraction: 0.2,
        from: None,
        config: None,
        samples: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{flag}: {v:?} is not a valid number"))
        }
        match flag.as_str() {
            "--backend" => a.backend = value()?,
            "--devices" => a.devices = Some(value()?),
            "--epochs" => a.epochs = Some(num(&flag, value()?)?),
            "--batch" => a.batch = Some(num(&flag, value()?)?),
            "--lr" => a.lr = Some(num(&flag, value()?)?),
            "--size" => a.size = Some(num(&flag, value()?)?),
            "--train-images" => a.train_images = num(&flag, value()?)?,
            "--val-images" => a.val_images = num(&flag, value()?)?,
            "--workers" => a.workers = num(&flag, value()?)?,
            "--seed" => a.seed = num(&flag, value()?)?,
            "--out" => a.out = PathBuf::from(value()?),
            "--resume" => a.resume = true,
            "--data" => a.data = Some(PathBuf::from(value()?)),
            "--val-fraction" => a.val_fraction = num(&flag, value()?)?,
            "--from" => a.from = Some(PathBuf::from(value()?)),
            "--config" => a.config = Some(value()?),
            "--samples" => a.samples = Some(PathBuf::from(value()?)),
            "--help" | "-h" => {
                return Err("see the options at the top of examples/train.rs".into());
            }
            other => return Err(format!("unknown option {other:?} (try --help)")),
        }
    }
    Ok(a)
}

/// The devices to train on: `--devices` (comma-separated) or `--backend`.
fn devices(args: &Args) -> vheat::Result<Vec<Device>> {
    let names: Vec<String> = match &args.devices {
        Some(list) => list.split(',').map(|s| s.trim().to_string()).collect(),
        None => vec![args.backend.clone()],
    };
    let mut out = Vec::new();
    for name in names {
        let device = vheat::device_from_name(&name)?;
        vheat::probe_device(&device)?;
        out.push(device);
    }
    Ok(out)
}

/// The small vHeat of the main job: 4 stages, depths 1-1-2-1, widths 16…128.
fn small_config(size: usize, classes: usize) -> VHeatConfig {
    VHeatConfig::new(vec![1, 1, 2, 1], vec![16, 32, 64, 128])
        .with_num_classes(classes)
        .with_img_size(size)
        .with_post_norm(false)
        .with_drop_path_rate(0.05)
}

/// A model to fine-tune with a new `classes`-way head: from our checkpoint, from a reference
/// `.pth` (its classifier is dropped), or fresh.
fn starting_model(
    args: &Args,
    classes: usize,
    device: &Device,
) -> vheat::Result<(VHeat, VHeatConfig, usize)> {
    let Some(from) = &args.from else {
        let size = args.size.unwrap_or(64);
        let config = small_config(size, classes);
        return Ok((config.init_seeded(device, args.seed)?, config, size));
    };
    let is_pth = from
        .extension()
        .is_some_and(|e| e == "pth" || e == "pt" || e == "bin");
    let pretrained = if is_pth {
        let name = args.config.as_deref().unwrap_or("tiny");
        let config = if name.ends_with(".json") {
            VHeatConfig::load(name)?
        } else {
            VHeatConfig::by_name(name)?
        };
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

fn recipe(args: &Args, default_epochs: usize, default_lr: f64) -> TrainingConfig {
    TrainingConfig {
        epochs: args.epochs.unwrap_or(default_epochs),
        batch_size: args.batch.unwrap_or(64),
        lr: args.lr.unwrap_or(default_lr),
        warmup_epochs: 1.0,
        num_workers: args.workers,
        seed: args.seed,
        ..TrainingConfig::default()
    }
}

fn write_samples(shapes: &SyntheticShapes, path: &PathBuf) -> vheat::Result<()> {
    let s = shapes.config().image_size as u32;
    let rows: Vec<image::RgbImage> = (0..2)
        .map(|r| {
            let tiles: Vec<image::RgbImage> = (0..SyntheticShapes::num_classes())
                .map(|c| {
                    let (rgb, _) = shapes.render_rgb(r * SyntheticShapes::num_classes() + c);
                    let bytes = rgb.iter().map(|v| (v * 255.0).round() as u8).collect();
                    let img = image::RgbImage::from_raw(s, s, bytes).expect("s*s*3 values");
                    image::imageops::resize(&img, s * 2, s * 2, image::imageops::Nearest)
                })
                .collect();
            hstack(&tiles, 4, image::Rgb([255, 255, 255]))
        })
        .collect();
    save_png(&vstack(&rows, 4, image::Rgb([255, 255, 255])), path)?;
    println!("wrote {}", path.display());
    Ok(())
}

fn run(args: Args) -> vheat::Result<()> {
    let devices = devices(&args)?;
    let device = devices[0].clone();
    println!(
        "devices: {}",
        devices
            .iter()
            .map(|d| format!("{d:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let start = Instant::now();
    let weights = args.out.join("model.bpk");

    let (report, meta) = if let Some(dir) = &args.data {
        let (train, val) = ImageFolder::open_split(dir, args.val_fraction, args.seed)?;
        println!(
            "data: {} ({} classes, {} training and {} validation images)",
            dir.display(),
            train.classes.len(),
            train.len(),
            val.len()
        );
        let (model, config, size) = starting_model(&args, train.classes.len(), &device)?;
        let recipe = recipe(&args, 10, 2e-4);
        println!(
            "model: {} parameters, input {size}x{size}; {} epochs, batch {}, lr {}",
            model.num_params(),
            recipe.epochs,
            recipe.batch_size,
            recipe.lr
        );
        let train_set = train.train_dataset(TrainTransform::new(size as u32), args.seed);
        let val_set = val.eval_dataset(EvalTransform::new(size as u32));
        let options = FitOptions::new(&args.out, device.clone())
            .with_devices(devices.clone())
            .with_resume(args.resume);
        let report = fit(model, train_set, val_set, &recipe, &options)?;
        let meta = CheckpointMeta {
            config,
            classes: train.classes.clone(),
            image_size: size,
            crop_pct: 224.0 / 256.0,
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
            return write_samples(&train, path);
        }
        let config = small_config(size, SyntheticShapes::num_classes());
        let model = config.init_seeded(&device, args.seed)?;
        let recipe = recipe(&args, 6, 2e-3);
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
        let options = FitOptions::new(&args.out, device.clone())
            .with_devices(devices.clone())
            .with_resume(args.resume);
        let report = fit(model, train, valid, &recipe, &options)?;
        let meta = CheckpointMeta {
            config,
            classes: SyntheticShapes::class_names(),
            image_size: size,
            crop_pct: 1.0,
        };
        (report, meta)
    };

    save_checkpoint(&report.model, &meta, &weights)?;
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
    println!(
        "trained in {:.0} s ({:.0} s with set-up)",
        report.elapsed.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    println!(
        "checkpoint: {} (+ {}); resume state in {}",
        weights.display(),
        vheat::train::meta_path(&weights).display(),
        args.out.join("checkpoint").display()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
