//! Checks that two CPU backends compute the same vHeat outputs for the same weights and input,
//! so that a speed comparison between them compares correct computations.
//!
//! ```text
//! cargo run --release --example backend_compare --features ndarray -- --other ndarray
//! cargo run --release --example backend_compare --features openblas-system -- --other ndarray
//! ```
//!
//! Options (all optional): `--config tiny|small|base` (default `tiny`), `--size N` (default 224),
//! `--batch N` (default 2), `--seed N` (default 42), `--reference NAME` (default `flex`),
//! `--other NAME` (default `ndarray`).
//!
//! The model is built seeded on the reference backend and moved with `to_device` to the other
//! one; the input is drawn on the reference backend and moved the same way. For both the
//! trainable form and the inference form (each backend builds its own inference form, so the
//! precomputed decays are computed on that backend too), it prints the largest absolute
//! difference of the logits and of the last stage's features, next to their largest magnitude.
//! It exits with an error when a logit differs by more than `1e-4 · max(1, max |logit|)`.

use burn::prelude::*;
use clap::Parser;
use vheat::VHeatConfig;

/// Compares the vHeat outputs of two backends for the same weights and input.
#[derive(Parser)]
struct Args {
    /// Configuration: tiny, small or base.
    #[arg(long, value_name = "NAME", default_value = "tiny")]
    config: String,
    /// Square input side.
    #[arg(long, value_name = "N", default_value_t = 224)]
    size: usize,
    /// Images per forward pass.
    #[arg(long, value_name = "N", default_value_t = 2)]
    batch: usize,
    /// Seed of the weights (the input uses seed + 1).
    #[arg(long, value_name = "N", default_value_t = 42)]
    seed: u64,
    /// The backend the model is built on.
    #[arg(long, value_name = "NAME", default_value = "flex")]
    reference: String,
    /// The backend compared with it.
    #[arg(long, value_name = "NAME", default_value = "ndarray")]
    other: String,
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 data")
}

/// (largest |a - b|, largest |a|).
fn max_diff(a: &[f32], b: &[f32]) -> (f32, f32) {
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    let mag = a.iter().map(|x| x.abs()).fold(0.0f32, f32::max);
    (diff, mag)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let dev_ref = vheat::device_from_name(&args.reference)?;
    let dev_other = vheat::device_from_name(&args.other)?;
    let config = VHeatConfig::by_name(&args.config)?;
    let model_ref = config.init_seeded(&dev_ref, args.seed)?;
    let model_other = model_ref.clone().to_device(&dev_other);
    dev_ref.seed(args.seed + 1);
    let x_ref = Tensor::<4>::random(
        [args.batch, config.in_chans, args.size, args.size],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &dev_ref,
    );
    let x_other = x_ref.clone().to_device(&dev_other);
    println!(
        "{} {}x{} batch {} seed {}: {} vs {}",
        args.config, args.size, args.size, args.batch, args.seed, args.reference, args.other
    );

    let mut worst = 0.0f32;
    for form in ["trainable", "inference"] {
        let (m_ref, m_other) = if form == "trainable" {
            (model_ref.clone(), model_other.clone())
        } else {
            (
                model_ref.to_inference(args.size, args.size)?,
                model_other.to_inference(args.size, args.size)?,
            )
        };
        let f_ref = m_ref.forward_features(x_ref.clone());
        let f_other = m_other.forward_features(x_other.clone());
        let l_ref = values(m_ref.forward_head(f_ref.clone(), false));
        let l_other = values(m_other.forward_head(f_other.clone(), false));
        let (fd, fm) = max_diff(&values(f_ref), &values(f_other));
        let (ld, lm) = max_diff(&l_ref, &l_other);
        println!(
            "{form:<9}  features: max |diff| {fd:.3e} (max |value| {fm:.3e})  \
             logits: max |diff| {ld:.3e} (max |logit| {lm:.3e})"
        );
        worst = worst.max(ld / lm.max(1.0));
    }
    if worst > 1e-4 {
        return Err(
            format!("logits differ by {worst:.3e} (relative to max(1, max |logit|))").into(),
        );
    }
    println!("ok: logits agree within {worst:.3e} · max(1, max |logit|)");
    Ok(())
}
