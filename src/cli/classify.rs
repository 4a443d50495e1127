//! `vheat classify`: top-k labels of image files under one of our checkpoints, a reference
//! `.pth`, or published weights by name.
//!
//! Images are preprocessed as the reference evaluates: bicubic resize of the shorter side to
//! `S·256/224`, centre crop `S`, ImageNet mean/std (our checkpoints record their own crop
//! fraction: the synthetic model's is 1, i.e. a plain resize).

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::activation::softmax;
use clap::Parser;

use super::{resolve_config, BackendArgs};
use crate::data::{
    imagenet_classes, load_rgb, save_png, EvalTransform, ShapesConfig, SyntheticShapes,
};
use crate::error::{Error, Result};
use crate::train::load_checkpoint;
use crate::vheat::{VHeat, VHeatConfig};
use crate::weights::{load_pytorch_into, load_safetensors_into, LoadOptions};

/// Arguments of `vheat classify` (and of `examples/classify.rs`).
#[derive(Debug, Clone, Parser)]
#[command(
    about = "Classify image files with a vHeat checkpoint: top labels with probabilities",
    group(clap::ArgGroup::new("weights").required(true).args(["from", "pretrained"])),
    group(clap::ArgGroup::new("inputs").required(true).multiple(true).args(["images", "synthetic"]))
)]
#[non_exhaustive]
pub struct ClassifyArgs {
    /// Image files (PNG or JPEG) to classify.
    #[arg(value_name = "IMAGE")]
    pub images: Vec<PathBuf>,

    /// Weights: our checkpoint (NAME.bpk with NAME.json beside it), or a reference checkpoint
    /// (.pth/.pt/.bin or .safetensors, whose configuration --config gives).
    #[arg(long, value_name = "PATH", visible_alias = "checkpoint", alias = "pth")]
    pub from: Option<PathBuf>,

    /// Published weights by name (e.g. vheat_tiny), downloaded into the local cache.
    #[arg(long, value_name = "NAME", conflicts_with = "from")]
    pub pretrained: Option<String>,

    /// Download --pretrained weights from this mirror of the reference's releases, as
    /// URL/RELEASE/FILE (e.g. URL/vheatcls/vHeat_tiny.pth) [default: $VHEAT_MIRROR if set, else
    /// https://github.com/MzeroMiko/vHeat/releases/download]
    #[arg(
        long,
        value_name = "URL",
        requires = "pretrained",
        conflicts_with = "from"
    )]
    pub mirror: Option<String>,

    /// Configuration of a reference checkpoint: tiny, small, base, or a JSON file.
    #[arg(long, value_name = "NAME|FILE", default_value = "tiny")]
    pub config: String,

    /// Input side in pixels [default: the checkpoint's training size].
    #[arg(long, value_name = "S")]
    pub size: Option<u32>,

    /// How many of the most probable labels to print per image.
    #[arg(long, value_name = "K", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub top: u32,

    /// Draw N images of the built-in synthetic dataset into --out and classify them too.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub synthetic: usize,

    /// Folder for the images --synthetic draws.
    #[arg(long, value_name = "DIR", default_value = "artifacts/classify")]
    pub out: PathBuf,

    /// The backend to run on.
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// A model ready to classify: the network, its class names and its evaluation transform.
#[non_exhaustive]
pub struct Classifier {
    /// The network.
    pub model: VHeat,
    /// Its configuration (what the memory estimate of an input size is computed from).
    pub config: VHeatConfig,
    /// One name per output.
    pub classes: Vec<String>,
    /// The preprocessing its inputs get.
    pub transform: EvalTransform,
    /// The share of the resized image the centre crop keeps, kept to rebuild `transform` at
    /// another size; `None` for the reference's transform ([`EvalTransform::new`]).
    pub crop_pct: Option<f64>,
}

/// Loads published weights by name (`--pretrained`): downloaded once into the cache
/// (`VHEAT_CACHE`, `VHEAT_OFFLINE`; see [`crate::pretrained::Cache::from_env_with_mirror`])
/// from `mirror` (`--mirror`) when given, else from `VHEAT_MIRROR` when set, else from GitHub,
/// with the checkpoint's ImageNet class names and evaluation preprocessing.
///
/// # Errors
/// [`Error::UnknownWeights`] for a name that is not published; [`Error::InvalidMirror`] for a
/// malformed mirror URL (both before any download); the download and load errors of
/// [`crate::pretrained::Cache::load`].
#[cfg(feature = "pretrained")]
pub fn load_pretrained(name: &str, mirror: Option<&str>, device: &Device) -> Result<Classifier> {
    let weights: crate::pretrained::Weights = name.parse()?;
    let cache = crate::pretrained::Cache::from_env_with_mirror(mirror)?;
    let model = cache.load(weights, device)?;
    let transform = weights
        .preprocess()
        .map(|p| p.eval_transform())
        .unwrap_or_else(|| EvalTransform::new(weights.config().img_size as u32));
    Ok(Classifier {
        classes: reference_classes(weights.config().num_classes),
        config: weights.config(),
        model,
        transform,
        crop_pct: None,
    })
}

/// Without the `pretrained` feature there is no downloader.
///
/// # Errors
/// Always [`Error::Unsupported`], naming the feature to enable.
#[cfg(not(feature = "pretrained"))]
pub fn load_pretrained(name: &str, mirror: Option<&str>, device: &Device) -> Result<Classifier> {
    let _ = (mirror, device);
    Err(Error::Unsupported(format!(
        "--pretrained {name}: this build has no downloader (enable the `pretrained` feature)"
    )))
}

/// Class names for a reference checkpoint with `n` outputs: ImageNet's for 1000.
pub(crate) fn reference_classes(n: usize) -> Vec<String> {
    if n == 1000 {
        imagenet_classes().into_iter().map(String::from).collect()
    } else {
        (0..n).map(|i| format!("class {i}")).collect()
    }
}

/// Whether `path` is a reference checkpoint (PyTorch or safetensors) rather than ours.
pub(crate) fn is_reference(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| matches!(e.to_str(), Some("pth" | "pt" | "bin" | "safetensors")))
}

/// The classifier `args` name (`--from` or `--pretrained`) on `device`, at `--size` when given.
///
/// # Errors
/// [`Error::CheckpointRead`] (naming the file) for a missing or unreadable checkpoint,
/// [`Error::CheckpointMismatch`] if it does not fit the configuration; [`Error::MemoryLimit`]
/// when one image at the input size needs more memory than the limit allows (checked before
/// any input is allocated; see [`VHeatConfig::check_memory`]); for `--pretrained`,
/// the errors of [`load_pretrained`] ([`Error::Unsupported`] in a build without the
/// `pretrained` feature).
pub fn load(args: &ClassifyArgs, device: &Device) -> Result<Classifier> {
    let mut c = load_source(
        args.from.as_deref(),
        args.pretrained.as_deref(),
        args.mirror.as_deref(),
        &args.config,
        device,
    )?;
    if let Some(size) = args.size {
        c.transform = match c.crop_pct {
            Some(pct) => EvalTransform::with_crop_pct(size, pct),
            None => EvalTransform::new(size),
        };
    }
    // One image at a time: an absurd side is refused here, by its estimate, rather than by an
    // allocation failure when the image is resized.
    c.config.check_memory(1, c.transform.size as usize, false)?;
    Ok(c)
}

/// The classifier a model source names, as `vheat classify` and `vheat export` take it:
/// `pretrained` (published weights by name, from `mirror` when given), else `from` (one of our
/// checkpoints, or a reference checkpoint of configuration `config`).
///
/// # Errors
/// As [`load`].
pub fn load_source(
    from: Option<&Path>,
    pretrained: Option<&str>,
    mirror: Option<&str>,
    config: &str,
    device: &Device,
) -> Result<Classifier> {
    let c = match (from, pretrained) {
        (_, Some(name)) => load_pretrained(name, mirror, device)?,
        (Some(path), None) if is_reference(path) => {
            let config = resolve_config(config)?;
            let mut model = config.try_init(device)?;
            let report = if path.extension().is_some_and(|e| e == "safetensors") {
                load_safetensors_into(&mut model, path, &LoadOptions::strict())?
            } else {
                load_pytorch_into(&mut model, path, &LoadOptions::strict())?
            };
            println!(
                "loaded {} ({} tensors)",
                path.display(),
                report.applied.len()
            );
            Classifier {
                model,
                classes: reference_classes(config.num_classes),
                transform: EvalTransform::new(config.img_size as u32),
                crop_pct: None,
                config,
            }
        }
        (Some(path), None) => {
            let (model, meta) = load_checkpoint(path, device)?;
            Classifier {
                model,
                classes: meta.classes,
                transform: EvalTransform::with_crop_pct(meta.image_size as u32, meta.crop_pct),
                crop_pct: Some(meta.crop_pct),
                config: meta.config,
            }
        }
        (None, None) => {
            return Err(Error::InvalidInput {
                what: "model".into(),
                expected: "a checkpoint path or --pretrained NAME".into(),
                found: "neither".into(),
            })
        }
    };
    Ok(c)
}

/// Draws `n` synthetic images of side `size` into `out`, returning their paths.
fn draw_synthetic(n: usize, size: usize, out: &Path) -> Result<Vec<PathBuf>> {
    let shapes = SyntheticShapes::new(ShapesConfig::new(size.max(16), n, 0xC1A55))?;
    let s = shapes.config().image_size as u32;
    let mut paths = Vec::with_capacity(n);
    for i in 0..n {
        let (rgb, label) = shapes.render_rgb(i);
        let bytes = rgb.iter().map(|v| (v * 255.0).round() as u8).collect();
        let img = image::RgbImage::from_raw(s, s, bytes).ok_or_else(|| Error::InvalidInput {
            what: "synthetic image".into(),
            expected: format!("{s}x{s}x3 values"),
            found: "another count".into(),
        })?;
        let name = SyntheticShapes::class_names()[label].replace(' ', "_");
        let path = out.join(format!("{i:02}_{name}.png"));
        save_png(&img, &path)?;
        paths.push(path);
    }
    Ok(paths)
}

/// The `top` most probable `(probability, class index)` pairs of one image's logits.
pub fn top_k(probs: &[f32], top: usize) -> Vec<(f32, usize)> {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    order.into_iter().take(top).map(|k| (probs[k], k)).collect()
}

/// Runs `vheat classify`: prints each image's path and its top labels.
///
/// # Errors
/// See [`load`]; [`Error::ImageRead`] naming an image that cannot be decoded.
pub fn run(args: ClassifyArgs) -> Result<()> {
    let device = args.backend.device()?;
    let c = load(&args, &device)?;
    let mut images = args.images.clone();
    if args.synthetic > 0 {
        images.extend(draw_synthetic(
            args.synthetic,
            c.transform.size as usize,
            &args.out,
        )?);
    }
    println!(
        "{} classes, input {}x{} (resize {} + centre crop), {:?}",
        c.classes.len(),
        c.transform.size,
        c.transform.size,
        c.transform.resize,
        device
    );
    for path in &images {
        let img = load_rgb(path)?;
        let pixels = c.transform.apply(&img);
        let s = c.transform.size as usize;
        let x = Tensor::<4>::from_data(TensorData::new(pixels, [1, 3, s, s]), &device);
        let logits = c.model.try_forward(x)?;
        let probs: Vec<f32> = softmax(logits, 1)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        println!("{}", path.display());
        for (p, k) in top_k(&probs, args.top as usize) {
            let name = c.classes.get(k).map_or("?", String::as_str);
            println!("  {:6.2} %  {name}", 100.0 * p);
        }
    }
    Ok(())
}
