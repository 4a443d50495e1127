//! Classifies image files with a trained vHeat: top-5 labels with probabilities.
//!
//! ```text
//! # our checkpoint (written by the train example), on images of your own:
//! cargo run --release --example classify -- --checkpoint artifacts/train/model.bpk a.png b.jpg
//! # … or on freshly drawn synthetic images (written as PNGs first, then read back):
//! cargo run --release --example classify -- --checkpoint artifacts/train/model.bpk --synthetic 4
//! # a reference ImageNet checkpoint, any input size, another backend:
//! cargo run --release --example classify -- --pth vheat_tiny.pth --config tiny --size 384 cat.jpg
//! ```
//!
//! Options: `--backend NAME` (flex, ndarray, wgpu, cuda), `--size S` (input side; default the
//! checkpoint's training size), `--top K` (default 5), `--synthetic N` (draw N images of the
//! built-in dataset into `--out DIR`, default `artifacts/classify`, and classify them).
//!
//! Images are preprocessed as the reference evaluates: bicubic resize of the shorter side to
//! `S·256/224`, centre crop `S`, ImageNet mean/std (our checkpoints record their own crop
//! fraction: the synthetic model's is 1, i.e. a plain resize).

use std::path::PathBuf;
use std::process::ExitCode;

use burn::prelude::*;
use burn::tensor::activation::softmax;
use vheat::data::{
    imagenet_classes, load_rgb, save_png, EvalTransform, ShapesConfig, SyntheticShapes,
};
use vheat::train::load_checkpoint;
use vheat::weights::{load_pytorch_into, LoadOptions};
use vheat::{VHeat, VHeatConfig};

struct Args {
    backend: String,
    checkpoint: Option<PathBuf>,
    pth: Option<PathBuf>,
    config: String,
    size: Option<u32>,
    top: usize,
    synthetic: usize,
    out: PathBuf,
    images: Vec<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        backend: "flex".into(),
        checkpoint: None,
        pth: None,
        config: "tiny".into(),
        size: None,
        top: 5,
        synthetic: 0,
        out: PathBuf::from("artifacts/classify"),
        images: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| {
            v.parse::<usize>()
                .map_err(|_| format!("{v:?} is not a valid number"))
        };
        match flag.as_str() {
            "--backend" => a.backend = value()?,
            "--checkpoint" => a.checkpoint = Some(PathBuf::from(value()?)),
            "--pth" => a.pth = Some(PathBuf::from(value()?)),
            "--config" => a.config = value()?,
            "--size" => a.size = Some(number(value()?)? as u32),
            "--top" => a.top = number(value()?)?.max(1),
            "--synthetic" => a.synthetic = number(value()?)?,
            "--out" => a.out = PathBuf::from(value()?),
            "--help" | "-h" => {
                return Err("see the usage at the top of examples/classify.rs".into())
            }
            f if f.starts_with("--") => return Err(format!("unknown option {f:?}")),
            _ => a.images.push(PathBuf::from(flag)),
        }
    }
    if a.checkpoint.is_none() && a.pth.is_none() {
        return Err("give --checkpoint NAME.bpk (ours) or --pth FILE --config NAME".into());
    }
    if a.images.is_empty() && a.synthetic == 0 {
        return Err("give image files to classify, or --synthetic N".into());
    }
    Ok(a)
}

/// The model, its class names and the evaluation transform.
fn load(args: &Args, device: &Device) -> vheat::Result<(VHeat, Vec<String>, EvalTransform)> {
    if let Some(path) = &args.checkpoint {
        let (model, meta) = load_checkpoint(path, device)?;
        let size = args.size.unwrap_or(meta.image_size as u32);
        return Ok((
            model,
            meta.classes,
            EvalTransform::with_crop_pct(size, meta.crop_pct),
        ));
    }
    let path = args.pth.as_ref().expect("checked in parse_args");
    let config = if args.config.ends_with(".json") {
        VHeatConfig::load(&args.config)?
    } else {
        VHeatConfig::by_name(&args.config)?
    };
    let mut model = config.try_init(device)?;
    let report = load_pytorch_into(&mut model, path, &LoadOptions::strict())?;
    println!(
        "loaded {} ({} tensors)",
        path.display(),
        report.applied.len()
    );
    let classes = if config.num_classes == 1000 {
        imagenet_classes().into_iter().map(String::from).collect()
    } else {
        (0..config.num_classes)
            .map(|i| format!("class {i}"))
            .collect()
    };
    let size = args.size.unwrap_or(config.img_size as u32);
    Ok((model, classes, EvalTransform::new(size)))
}

fn run(mut args: Args) -> vheat::Result<()> {
    let device = vheat::device_from_name(&args.backend)?;
    vheat::probe_device(&device)?;
    let (model, classes, transform) = load(&args, &device)?;
    if args.synthetic > 0 {
        let shapes = SyntheticShapes::new(ShapesConfig::new(
            transform.size.max(16) as usize,
            args.synthetic,
            0xC1A55,
        ))?;
        let s = shapes.config().image_size as u32;
        for i in 0..args.synthetic {
            let (rgb, label) = shapes.render_rgb(i);
            let bytes = rgb.iter().map(|v| (v * 255.0).round() as u8).collect();
            let img = image::RgbImage::from_raw(s, s, bytes).expect("s*s*3 values");
            let name = SyntheticShapes::class_names()[label].replace(' ', "_");
            let path = args.out.join(format!("{i:02}_{name}.png"));
            save_png(&img, &path)?;
            args.images.push(path);
        }
    }
    println!(
        "{} classes, input {}x{} (resize {} + centre crop), {:?}",
        classes.len(),
        transform.size,
        transform.size,
        transform.resize,
        device
    );
    for path in &args.images {
        let img = load_rgb(path)?;
        let pixels = transform.apply(&img);
        let s = transform.size as usize;
        let x = Tensor::<4>::from_data(TensorData::new(pixels, [1, 3, s, s]), &device);
        let logits = model.try_forward(x)?;
        let probs: Vec<f32> = softmax(logits, 1)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        println!("{}", path.display());
        for &k in order.iter().take(args.top) {
            println!("  {:6.2} %  {}", 100.0 * probs[k], classes[k]);
        }
    }
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
