//! The physics inside the operator: a point source and a hot square, diffused by one
//! heat-conduction operator for increasing `k·t`, written as a PNG strip.
//!
//! ```text
//! cargo run --release --example heat_diffusion                 # writes artifacts/img/heat_diffusion.png
//! cargo run --release --example heat_diffusion -- --out x.png --size 96 --backend wgpu
//! ```
//!
//! The conductivity is set by hand: the operator's `to_k` Linear gets zero weights and bias
//! `k·t`, so `HeatConduction::decay` returns `exp(-(ωₙ² + ωₘ²)·k·t)` at every frequency, which
//! is exactly the solution operator of `∂u/∂t = k∇²u` with insulated borders. The field is taken
//! to the cosine domain (`dct2d`), multiplied by that decay, and brought back (`idct2d`) — the
//! diffusion step of the operator, without the convolution, projections and gate around it.
//! Every tile is scaled to its own range (the peak drops fast); the printed table shows that
//! the total heat is conserved while the peak flattens.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::module::Param;
use burn::prelude::*;
use vheat::data::{heat_map, hstack, save_png, vstack};
use vheat::hco::HeatConductionConfig;
use vheat::heat::{dct2d, idct2d};

const KT: [f32; 6] = [0.0, 1.0, 4.0, 16.0, 64.0, 256.0];

fn values(t: Tensor<4>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}

/// One operator's diffusion of `u` (`[1, n, n, 1]`, channels last) for conductivity·time `kt`.
fn diffuse(u: Tensor<4>, kt: f32, n: usize, device: &Device) -> Tensor<4> {
    let mut op = HeatConductionConfig::new(1).init(device);
    let to_k = op
        .to_k
        .as_mut()
        .expect("a new operator is in the trainable form");
    to_k.weight = Param::from_tensor(Tensor::zeros([1, 1], device));
    to_k.bias = Some(Param::from_tensor(Tensor::from_floats([kt], device)));
    let fve = Tensor::<3>::zeros([n, n, 1], device);
    let decay: Tensor<4> = op
        .decay(Some(fve))
        .expect("trainable form with an FVE")
        .unsqueeze();
    idct2d(dct2d(u) * decay)
}

fn source(kind: &str, n: usize, device: &Device) -> Tensor<4> {
    let mut field = vec![0.0f32; n * n];
    match kind {
        "point" => field[(n / 3) * n + n / 3] = 1.0,
        _ => {
            for y in n / 4..n / 2 + n / 8 {
                for x in n / 4..3 * n / 4 {
                    field[y * n + x] = 1.0;
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(field, [1, n, n, 1]), device)
}

/// Draws heat diffusing from a point and a square for growing k·t.
#[derive(Debug, clap::Parser)]
struct DiffusionArgs {
    /// Where the picture is written.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "artifacts/img/heat_diffusion.png"
    )]
    out: PathBuf,
    /// Side of the simulated plate.
    #[arg(long, value_name = "N", default_value_t = 64)]
    size: usize,
    /// Backend: flex, ndarray, wgpu or cuda (as compiled in).
    #[arg(long, value_name = "NAME", default_value = "flex")]
    backend: String,
}

fn run() -> vheat::Result<()> {
    let DiffusionArgs {
        out,
        size: n,
        backend,
    } = clap::Parser::parse();
    let device = vheat::device_from_name(&backend)?;
    vheat::probe_device(&device)?;

    let scale = (192 / n).max(1) as u32;
    let mut rows = Vec::new();
    println!(
        "{:>8} {:>14} {:>12}   {:>14} {:>12}",
        "k·t", "point: total", "peak", "square: total", "peak"
    );
    let mut table = vec![String::new(); KT.len()];
    for kind in ["point", "square"] {
        let u0 = source(kind, n, &device);
        let mut tiles = Vec::new();
        for (i, &kt) in KT.iter().enumerate() {
            let v = values(diffuse(u0.clone(), kt, n, &device));
            let lo = v.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let total: f32 = v.iter().sum();
            table[i] += &format!(" {total:>14.4} {hi:>12.5}  ");
            tiles.push(heat_map(&v, n, n, lo.min(0.0), hi, scale));
        }
        rows.push(hstack(&tiles, 6, image::Rgb([255, 255, 255])));
    }
    for (kt, row) in KT.iter().zip(&table) {
        println!("{kt:>8}{row}");
    }
    save_png(&vstack(&rows, 6, image::Rgb([255, 255, 255])), &out)?;
    println!(
        "wrote {} (rows: point source, hot square; columns: k·t = {:?})",
        out.display(),
        KT
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
