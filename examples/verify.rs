//! Checks this crate against the official PyTorch vHeat, then runs vHeat-T.
//!
//! Loads the reference fixtures in `tests/fixtures/` (checkpoints in the release format, and the
//! reference's outputs for them), runs every model, and prints the largest difference of every
//! intermediate map and of the logits; then builds vHeat-T and times one 224×224 forward pass in
//! the trainable and the inference form.
//!
//! ```text
//! cargo run --release --example verify                          # flex CPU
//! cargo run --release --features wgpu --example verify -- --backend wgpu
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use vheat::{VHeat, VHeatConfig};

/// mimalloc reuses freed pages; see the README's Performance section.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Fixture = HashMap<String, (Vec<usize>, Vec<f32>)>;

fn read_fixture(path: &Path) -> Result<Fixture, Box<dyn std::error::Error>> {
    let bytes = std::fs::read(path)?;
    let st = safetensors::SafeTensors::deserialize(&bytes)?;
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

fn max_diff<const D: usize>(t: Tensor<D>, expected: &(Vec<usize>, Vec<f32>)) -> f32 {
    assert_eq!(t.dims().to_vec(), expected.0, "shape");
    let got = t
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default();
    got.iter()
        .zip(&expected.1)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

fn config_of(json: &Path) -> Result<VHeatConfig, Box<dyn std::error::Error>> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(json)?)?;
    Ok(VHeatConfig::from_json(&v["config"].to_string())?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `--backend flex|ndarray|wgpu|cuda` (default flex).
    let args: Vec<String> = std::env::args().collect();
    let backend = match args.iter().position(|a| a == "--backend") {
        Some(i) => args
            .get(i + 1)
            .ok_or("--backend needs a value: flex, ndarray, wgpu or cuda")?
            .clone(),
        None => "flex".to_string(),
    };
    let device = vheat::device_from_name(&backend)?;
    vheat::probe_device(&device)?;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    println!("device: {device:?}");
    println!("\n== parity with the PyTorch reference (max |difference|) ==");
    let mut worst = 0f32;
    for (name, tags) in [
        ("micro_tiny", &["x64", "x96"][..]),
        ("micro_base", &["x32"][..]),
    ] {
        let config = config_of(&dir.join(format!("{name}.json")))?;
        let model = VHeat::load_pytorch(dir.join(format!("{name}.pth")), &config, &device)?;
        let fx = read_fixture(&dir.join(format!("{name}.io.safetensors")))?;
        for tag in tags {
            let input = &fx[&format!("{tag}.input")];
            let x =
                Tensor::<4>::from_data(TensorData::new(input.1.clone(), input.0.clone()), &device);
            let (stem, stages) = model.forward_stages(x.clone());
            let mut line = format!("{name:<11} {tag}  {:?}", input.0);
            let mut report = |label: &str, err: f32| {
                worst = worst.max(err);
                line.push_str(&format!("  {label} {err:.1e}"));
            };
            report("stem", max_diff(stem, &fx[&format!("{tag}.stem")]));
            for (i, s) in stages.into_iter().enumerate() {
                report(
                    &format!("stage{i}"),
                    max_diff(s, &fx[&format!("{tag}.stage{i}")]),
                );
            }
            report(
                "logits",
                max_diff(model.try_forward(x.clone())?, &fx[&format!("{tag}.logits")]),
            );
            if let Some(expected) = fx.get(&format!("{tag}.logits_infer_mode")) {
                let [h, w] = [input.0[2], input.0[3]];
                let fast = model.to_inference(h, w)?;
                report(
                    "infer-form logits",
                    max_diff(fast.try_forward(x)?, expected),
                );
            }
            println!("{line}");
        }
    }
    println!("largest difference anywhere: {worst:.2e} (float32; parity tests require <= 1e-4)");

    println!("\n== vHeat-T (ImageNet-1k configuration) ==");
    let config = VHeatConfig::tiny();
    let model = config.init(&device);
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
        let _ = m.forward(x.clone()).into_data(); // warm-up: caches the DCT bases
        let runs = 3;
        let start = Instant::now();
        for _ in 0..runs {
            let _ = m.forward(x.clone()).into_data();
        }
        let secs = start.elapsed().as_secs_f64() / runs as f64;
        println!(
            "{form:>9} form: {:.0} ms per 224x224 image (batch 1, {:.1} img/s)",
            secs * 1e3,
            1.0 / secs
        );
    }
    Ok(())
}
