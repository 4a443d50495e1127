//! `vheat verify`: parity with the official PyTorch vHeat on the reference fixtures
//! (`tests/fixtures/`: checkpoints in the release format and the reference's outputs for them),
//! then the parameter counts and the time of one 224×224 forward pass of vHeat-T in both forms.
//! `examples/verify.rs` is a thin wrapper.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use clap::Parser;

use super::BackendArgs;
use crate::error::{Error, Result};
use crate::vheat::{VHeat, VHeatConfig};

/// Arguments of `vheat verify` (and of `examples/verify.rs`).
#[derive(Debug, Clone, Parser)]
#[command(about = "Check parity with the PyTorch reference fixtures, then time vHeat-T")]
#[non_exhaustive]
pub struct VerifyArgs {
    /// Folder of the reference fixtures (micro_*.pth, .json, .io.safetensors).
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))]
    pub fixtures: PathBuf,

    /// Timed 224×224 passes of vHeat-T per form after the parity check (0 skips the timing).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub runs: usize,

    /// The backend to run on.
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// The float32 tensors of a safetensors fixture: name → (shape, values).
type Fixture = HashMap<String, (Vec<usize>, Vec<f32>)>;

fn read_fixture(path: &Path) -> Result<Fixture> {
    let fail = |reason: String| Error::CheckpointRead {
        path: path.to_path_buf(),
        reason,
    };
    if let Some(reason) = crate::special_file::not_a_regular_file(path) {
        return Err(fail(reason));
    }
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| fail(e.to_string()))?;
    let mut out = HashMap::new();
    for (k, v) in st.tensors() {
        if v.dtype() != safetensors::Dtype::F32 {
            continue;
        }
        let vals = v
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(k.to_string(), (v.shape().to_vec(), vals));
    }
    Ok(out)
}

fn entry<'a>(fx: &'a Fixture, key: &str, path: &Path) -> Result<&'a (Vec<usize>, Vec<f32>)> {
    fx.get(key).ok_or_else(|| Error::CheckpointRead {
        path: path.to_path_buf(),
        reason: format!("no float32 tensor {key:?}"),
    })
}

/// The largest absolute difference between `t` and a fixture tensor of the same shape.
///
/// # Errors
/// [`Error::InvalidInput`] when the shapes differ.
pub fn max_diff<const D: usize>(
    what: &str,
    t: Tensor<D>,
    expected: &(Vec<usize>, Vec<f32>),
) -> Result<f32> {
    if t.dims().to_vec() != expected.0 {
        return Err(Error::InvalidInput {
            what: what.into(),
            expected: format!("{:?}", expected.0),
            found: format!("{:?}", t.dims()),
        });
    }
    let got = t
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default();
    Ok(got
        .iter()
        .zip(&expected.1)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max))
}

fn config_of(json: &Path) -> Result<VHeatConfig> {
    let fail = |reason: String| Error::ConfigFile {
        path: json.to_path_buf(),
        reason,
    };
    if let Some(reason) = crate::special_file::not_a_regular_file(json) {
        return Err(fail(reason));
    }
    let text = std::fs::read_to_string(json).map_err(|e| fail(e.to_string()))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
    VHeatConfig::from_json(&v["config"].to_string())
}

/// Runs every fixture model on its inputs and prints the largest difference of every
/// intermediate map and of the logits; returns the largest difference anywhere.
///
/// # Errors
/// A missing or unreadable fixture, a shape that differs from the reference's.
pub fn parity(dir: &Path, device: &Device) -> Result<f32> {
    let mut worst = 0f32;
    for (name, tags) in [
        ("micro_tiny", &["x64", "x96"][..]),
        ("micro_base", &["x32"][..]),
    ] {
        let config = config_of(&dir.join(format!("{name}.json")))?;
        let model = VHeat::load_pytorch(dir.join(format!("{name}.pth")), &config, device)?;
        let io = dir.join(format!("{name}.io.safetensors"));
        let fx = read_fixture(&io)?;
        for tag in tags {
            let input = entry(&fx, &format!("{tag}.input"), &io)?;
            let x =
                Tensor::<4>::from_data(TensorData::new(input.1.clone(), input.0.clone()), device);
            let (stem, stages) = model.forward_stages(x.clone());
            let mut line = format!("{name:<11} {tag}  {:?}", input.0);
            let mut report = |label: &str, err: f32| {
                worst = worst.max(err);
                line.push_str(&format!("  {label} {err:.1e}"));
            };
            let key = |part: &str| format!("{tag}.{part}");
            report(
                "stem",
                max_diff("stem", stem, entry(&fx, &key("stem"), &io)?)?,
            );
            for (i, s) in stages.into_iter().enumerate() {
                let part = format!("stage{i}");
                report(&part, max_diff(&part, s, entry(&fx, &key(&part), &io)?)?);
            }
            let logits = model.try_forward(x.clone())?;
            report(
                "logits",
                max_diff("logits", logits, entry(&fx, &key("logits"), &io)?)?,
            );
            if let Some(expected) = fx.get(&key("logits_infer_mode")) {
                let [h, w] = [input.0[2], input.0[3]];
                let fast = model.to_inference(h, w)?;
                report(
                    "infer-form logits",
                    max_diff("infer-form logits", fast.try_forward(x)?, expected)?,
                );
            }
            println!("{line}");
        }
    }
    Ok(worst)
}

/// Runs `vheat verify`.
///
/// # Errors
/// As [`parity`]; device errors.
pub fn run(args: VerifyArgs) -> Result<()> {
    let device = args.backend.device()?;
    println!("device: {device:?}");
    println!("\n== parity with the PyTorch reference (max |difference|) ==");
    let worst = parity(&args.fixtures, &device)?;
    println!("largest difference anywhere: {worst:.2e} (float32; parity tests require <= 1e-4)");
    if args.runs == 0 {
        return Ok(());
    }

    println!("\n== vHeat-T (ImageNet-1k configuration) ==");
    let model = VHeatConfig::tiny().try_init(&device)?;
    let fast = model.to_inference(224, 224)?;
    println!(
        "parameters: {} (trainable form), {} (inference form)",
        model.num_params(),
        fast.num_params()
    );
    let x = Tensor::<4>::random(
        [1, 3, 224, 224],
        burn::tensor::Distribution::Default,
        &device,
    );
    for (form, m) in [("trainable", &model), ("inference", &fast)] {
        let _ = m.try_forward(x.clone())?.into_data(); // warm-up: caches the DCT bases
        let start = Instant::now();
        for _ in 0..args.runs {
            let _ = m.try_forward(x.clone())?.into_data();
        }
        let secs = start.elapsed().as_secs_f64() / args.runs as f64;
        println!(
            "{form:>9} form: {:.0} ms per 224x224 image (batch 1, {:.1} img/s)",
            secs * 1e3,
            1.0 / secs
        );
    }
    Ok(())
}
