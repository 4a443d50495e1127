//! Effective receptive field (ERF): how much each input pixel moves the centre of the last
//! stage's output, `mean |∂ y_centre / ∂ x|` over a batch of images, as a heat map — for the
//! trained model of the `train` example and for the same network with random weights.
//!
//! ```text
//! cargo run --release --example train         # first: writes artifacts/train/model.bpk
//! cargo run --release --example erf           # writes artifacts/img/erf.png
//! cargo run --release --example erf -- --checkpoint PATH --size 128 --out erf.png --backend wgpu
//! ```
//!
//! `y_centre` is the sum over channels of the centre pixel of the last stage's output map
//! (before the head), as in the paper's analysis; the input is `--size` pixels square (default:
//! about 4× the training size with an odd last-stage map, e.g. 160 for 32-pixel training; the
//! FVEs are resized bicubically), `--images` (64) images come from the built-in
//! dataset, and the gradient is averaged over them and over the colour channels. The map is
//! shown as `log10(1 + 1000·g / max g)` so that the faint far field is visible; the printed
//! numbers are on the raw gradients.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::module::Module;
use burn::prelude::*;
use clap::Parser;
use vheat::data::{heat_map, hstack, save_png, ShapesConfig, SyntheticShapes};
use vheat::train::load_checkpoint;
use vheat::VHeat;

/// Effective receptive field of the trained model's last stage, as a PNG.
#[derive(Parser)]
struct Args {
    /// Our checkpoint (NAME.bpk + NAME.json), as the train example writes it.
    #[arg(long, value_name = "PATH", default_value = "artifacts/train/model.bpk")]
    checkpoint: PathBuf,
    /// The PNG to write.
    #[arg(long, value_name = "FILE", default_value = "artifacts/img/erf.png")]
    out: PathBuf,
    /// Input side in pixels [default: the checkpoint's training size].
    #[arg(long, value_name = "S")]
    size: Option<usize>,
    /// Images of the built-in dataset the map is averaged over.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    images: usize,
    /// Backend: flex, ndarray, wgpu or cuda.
    #[arg(long, value_name = "NAME", default_value = "flex")]
    backend: String,
}

/// `mean |∂ y_centre / ∂ x|` over the batch and the colour channels, `[size, size]` row-major.
fn erf(model: &VHeat, images: &Tensor<4>) -> Vec<f32> {
    let x = images.clone().autodiff().require_grad();
    let (_, stages) = model.forward_stages(x.clone());
    let last = stages
        .last()
        .expect("a model has at least one stage")
        .clone();
    let [b, c, h, w] = last.dims();
    let centre = last
        .slice([0..b, 0..c, h / 2..h / 2 + 1, w / 2..w / 2 + 1])
        .sum();
    let grads = centre.backward();
    let g: Tensor<4> = x.grad(&grads).expect("the input requires a gradient");
    let [_, _, hh, ww] = g.dims();
    let map: Tensor<2> = g.abs().mean_dim(0).mean_dim(1).reshape([hh, ww]);
    map.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}

/// The mean conductivity `k = ReLU(to_k(FVE))` of each stage's blocks: how far heat spreads.
fn mean_conductivity(model: &VHeat) -> Vec<f32> {
    model
        .layers
        .iter()
        .map(|stage| {
            let [h, w, _] = stage.freq_embed.as_ref().map_or([1, 1, 1], |f| f.dims());
            let ks: Vec<f32> = stage
                .blocks
                .iter()
                .filter_map(|b| b.op.conductivity(stage.fve_at(h, w)?))
                .map(|k| k.mean().into_scalar::<f32>())
                .collect();
            ks.iter().sum::<f32>() / ks.len().max(1) as f32
        })
        .collect()
}

/// The share of the total gradient inside the central square of side `frac · size`, and the
/// share of pixels above 1 % of the peak.
fn spread(map: &[f32], size: usize) -> (f32, f32, f32) {
    let total: f32 = map.iter().sum();
    let peak = map.iter().copied().fold(0.0, f32::max);
    let inner = |frac: f32| {
        let half = (frac * size as f32 / 2.0).round() as usize;
        let (lo, hi) = (size / 2 - half.min(size / 2), (size / 2 + half).min(size));
        let mut s = 0.0;
        for y in lo..hi {
            for x in lo..hi {
                s += map[y * size + x];
            }
        }
        s / total
    };
    let above = map.iter().filter(|&&v| v > 0.01 * peak).count() as f32 / map.len() as f32;
    (inner(0.25), inner(0.5), above)
}

fn display(map: &[f32]) -> Vec<f32> {
    let peak = map.iter().copied().fold(f32::MIN_POSITIVE, f32::max);
    map.iter()
        .map(|v| (1.0 + 1000.0 * v / peak).log10())
        .collect()
}

fn run(args: Args) -> vheat::Result<()> {
    let device = vheat::device_from_name(&args.backend)?;
    vheat::probe_device(&device)?;
    let (trained, meta) = load_checkpoint(&args.checkpoint, &device).map_err(|e| {
        vheat::Error::InvalidConfig(format!(
            "{e}\n(run `cargo run --release --example train` first, or pass --checkpoint)"
        ))
    })?;
    // Evaluation mode: stochastic depth off (the input will be on an autodiff device).
    let trained = trained.valid();
    let random = meta.config.init_seeded(&device, 1)?.valid();
    // Default: about 4× the training size, with an odd last-stage map so that it has a centre.
    let stride = meta.config.total_stride();
    let size = args
        .size
        .unwrap_or(stride * (2 * (2 * meta.image_size / stride).max(1) + 1));
    trained.check_input(&[1, 3, size, size])?;

    let shapes = SyntheticShapes::new(ShapesConfig::new(size, args.images, 0xE4F))?;
    let items: Vec<Tensor<4>> = (0..args.images)
        .map(|i| shapes.item(i).to_tensor(&device))
        .collect();
    let images = Tensor::cat(items, 0);

    let maps = [("random", &random), ("trained", &trained)].map(|(name, model)| {
        let map = erf(model, &images);
        let (q, h, above) = spread(&map, size);
        println!(
            "{name:>8}: {:.1} % of the gradient within the central quarter, {:.1} % within the \
             central half; {:.1} % of pixels above 1 % of the peak",
            100.0 * q,
            100.0 * h,
            100.0 * above
        );
        let k: Vec<String> = mean_conductivity(model)
            .iter()
            .map(|k| format!("{k:.3}"))
            .collect();
        println!(
            "{name:>8}: mean conductivity k per stage [{}]",
            k.join(", ")
        );
        map
    });
    let scale = (320 / size).max(1) as u32;
    let tiles: Vec<image::RgbImage> = maps
        .iter()
        .map(|m| heat_map(&display(m), size, size, 0.0, 3.0, scale))
        .collect();
    save_png(&hstack(&tiles, 8, image::Rgb([255, 255, 255])), &args.out)?;
    println!(
        "wrote {} (left: random weights, right: trained; input {size}x{size}, last stage {:?})",
        args.out.display(),
        trained.stage_sizes(size, size).last()
    );
    Ok(())
}

fn main() -> ExitCode {
    vheat::cli::exit_code(run(Args::parse()))
}
