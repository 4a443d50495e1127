//! The ONNX export ([`VHeat::save_onnx`], `vheat export`) checked by a second runtime: tract,
//! a pure-Rust ONNX runtime, loads each exported file and runs it, and its outputs equal the
//! crate's own forward pass (the trainable form at the same size, so the inference form's
//! precomputation is checked too). Small random configurations: pre-norm, post-norm with layer
//! scale, a square and a non-square size, batch 1 and 3 from the same file (the batch is
//! symbolic), the backbone variant's stage maps with output norms; and the errors: a size the
//! model cannot take, a training-mode export, an unwritable path — none leaving a file.
#![cfg(feature = "cli")]

mod common;
#[path = "common/onnx_runtime.rs"]
mod onnx_runtime;

use std::path::Path;
use std::process::Command;

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::Distribution;
use common::{assert_close_tol, cpu, unique_temp_dir, values};
use onnx_runtime::{run_plan, run_tract, tract_plan, write_io};
use vheat::train::{save_checkpoint, CheckpointMeta};
use vheat::weights::onnx::proto::ModelProto;
use vheat::weights::OnnxOptions;
use vheat::{Error, VHeat, VHeatConfig};

/// Tract against the crate, |a − e| ≤ ATOL + RTOL·|e|. Both compute in float32 with other
/// summation orders (tract's and Burn's matrix products and convolutions) and other `Erf`
/// approximations (tract's polynomial, the crate's erfc kernel, both within ~1e-7 relative), so
/// each operator's result differs by a few ulps of its magnitude (~1e-6 relative). Through the
/// five to seven blocks of these models, each ending in LayerNorms that divide by a standard
/// deviation of order one, such differences stay of that order on outputs of order one: ONNX
/// Runtime running `vheat export`'s files of these configurations differs from the PyTorch
/// implementation (scripts/vheat_torch.py, same weights) by at most 6.6e-7. 2e-5 leaves a wide margin over that, while a
/// wrong operator (a transposed basis, a missed norm, a swapped half of `linear`, a decay in the
/// wrong layout) moves the outputs by 1e-2 and more (the decays here span (0, 1]).
const ATOL: f32 = 2e-5;
/// See [`ATOL`].
const RTOL: f32 = 2e-5;

/// Moves every parameter by uniform noise in ±`scale`, so that no LayerNorm is the identity,
/// no bias is zero and the layer scales differ per channel.
struct Perturb {
    scale: f64,
}

impl ModuleMapper for Perturb {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let scale = self.scale;
        param.map(|t| {
            let noise = Tensor::random(t.dims(), Distribution::Uniform(-scale, scale), &t.device());
            t + noise
        })
    }
}

/// A random four-stage model of `config`, perturbed, with every stage's FVE drawn from
/// N(0, 1): `k = ReLU(to_k(FVE))` is then of order one and the decays span (0, 1], so the
/// spectral diffusion is far from the identity and a wrong DCT basis would show.
fn random_model(config: &VHeatConfig, seed: u64) -> VHeat {
    let device = cpu();
    let model = config.init_seeded(&device, seed).unwrap();
    let mut model = model.map(&mut Perturb { scale: 0.2 });
    for stage in &mut model.layers {
        if let Some(fve) = stage.freq_embed.as_mut() {
            let dims = fve.dims();
            fve.weight = Param::from_tensor(Tensor::random(
                dims,
                Distribution::Normal(0.0, 1.0),
                &device,
            ));
        }
    }
    model
}

/// Pre-norm, no layer scale (vHeat-T's form), 10 classes, FVEs for 64².
fn pre_norm() -> VHeatConfig {
    VHeatConfig::new(vec![1, 1, 2, 1], vec![8, 16, 24, 32])
        .with_num_classes(10)
        .with_img_size(64)
        .with_post_norm(false)
        .with_drop_path_rate(0.1)
}

/// Post-norm with layer scale (vHeat-S/B's form).
fn post_norm_layer_scale() -> VHeatConfig {
    VHeatConfig::new(vec![1, 2, 1, 1], vec![8, 16, 16, 24])
        .with_num_classes(7)
        .with_img_size(64)
        .with_post_norm(true)
        .with_layer_scale(Some(0.5))
}

/// Random images `[batch, 3, h, w]`.
fn images(batch: usize, h: usize, w: usize) -> Tensor<4> {
    Tensor::random([batch, 3, h, w], Distribution::Normal(0.0, 1.0), &cpu())
}

/// Loads `path` once and checks the logits for a batch of 1 and one of 3 against the crate's.
fn check_logits(what: &str, model: &VHeat, path: &Path, [h, w]: [usize; 2]) {
    let plan = tract_plan(path);
    for batch in [1, 3] {
        let x = images(batch, h, w);
        let expected = model.forward(x.clone());
        let shape = expected.dims().to_vec();
        let got = run_plan(&plan, &x);
        assert_eq!(got.len(), 1, "{what}: one output");
        assert_close_tol(
            &format!("{what} {h}x{w} batch {batch}"),
            &got[0].1,
            &got[0].0,
            &values(expected),
            &shape,
            ATOL,
            RTOL,
        );
    }
}

/// The decoded file: opset, IR version, input and output names.
fn header(path: &Path) -> ModelProto {
    use prost::Message;
    ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap()
}

#[test]
fn tract_runs_the_exported_classifier_like_the_crate() {
    let dir = unique_temp_dir("onnx-classifier");
    for (name, config, seed) in [
        ("pre-norm", pre_norm(), 11),
        ("post-norm + layer scale", post_norm_layer_scale(), 12),
    ] {
        let model = random_model(&config, seed);
        for size in [[64, 64], [96, 48]] {
            let path = dir.join(format!("{}-{}x{}.onnx", seed, size[0], size[1]));
            model
                .save_onnx(&path, &OnnxOptions::new(size[0], size[1]))
                .unwrap();
            let proto = header(&path);
            assert_eq!(proto.ir_version, 8);
            assert_eq!(proto.opset_import.len(), 1);
            assert_eq!(proto.opset_import[0].version, 17);
            let graph = proto.graph.unwrap();
            assert_eq!(graph.input.len(), 1);
            assert_eq!(graph.input[0].name, "images");
            assert_eq!(graph.output.len(), 1);
            assert_eq!(graph.output[0].name, "logits");
            // The inference form: no `to_k`, no FVE among the constants.
            assert!(
                graph
                    .initializer
                    .iter()
                    .all(|t| !t.name.contains("to_k") && !t.name.contains("freq_embed")),
                "{name}: a trainable-form weight was exported"
            );
            check_logits(name, &model, &path, size);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tract_runs_the_backbone_variant_with_output_norms() {
    let dir = unique_temp_dir("onnx-features");
    let model = random_model(&post_norm_layer_scale(), 21)
        .with_output_norms(vheat::vheat::Indices::All)
        .unwrap()
        .map(&mut Perturb { scale: 0.2 });
    let [h, w] = [96, 64];
    let path = dir.join("features.onnx");
    model
        .save_onnx(&path, &OnnxOptions::new(h, w).with_features(true))
        .unwrap();
    let names: Vec<String> = header(&path)
        .graph
        .unwrap()
        .output
        .iter()
        .map(|o| o.name.clone())
        .collect();
    assert_eq!(names, ["stage0", "stage1", "stage2", "stage3"]);
    let x = images(3, h, w);
    let expected = model
        .forward_intermediates(x.clone(), vheat::vheat::Indices::All)
        .unwrap();
    let got = run_tract(&path, &x);
    assert_eq!(got.len(), 4);
    for (i, (e, (shape, g))) in expected.into_iter().zip(got).enumerate() {
        let eshape = e.dims().to_vec();
        assert_close_tol(
            &format!("stage{i}"),
            &g,
            &shape,
            &values(e),
            &eshape,
            ATOL,
            RTOL,
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_inference_form_model_exports_at_its_own_size_only() {
    let dir = unique_temp_dir("onnx-inference-form");
    let model = random_model(&pre_norm(), 31);
    let inference = model.to_inference(64, 96).unwrap();
    let path = dir.join("inference.onnx");
    inference
        .save_onnx(&path, &OnnxOptions::new(64, 96))
        .unwrap();
    check_logits("inference form", &model, &path, [64, 96]);
    let other = dir.join("other.onnx");
    let err = inference
        .save_onnx(&other, &OnnxOptions::square(64))
        .unwrap_err();
    assert!(
        matches!(err, Error::InferenceSizeMismatch { stage: 0, .. }),
        "{err}"
    );
    assert!(!other.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn bad_requests_are_typed_errors_that_leave_no_file() {
    let dir = unique_temp_dir("onnx-errors");
    let model = random_model(&pre_norm(), 41);
    let path = dir.join("model.onnx");

    // A side below the total stride (32 for four stages).
    let err = model
        .save_onnx(&path, &OnnxOptions::new(64, 16))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InputTooSmall {
                height: 64,
                width: 16,
                stride: 32
            }
        ),
        "{err}"
    );
    // A training-mode export.
    let err = model
        .save_onnx(&path, &OnnxOptions::square(64).with_training(true))
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("training"), "{err}");
    assert!(listing(&dir).is_empty(), "{:?}", listing(&dir));

    // A folder that does not exist, and a path that is a folder.
    let missing = dir.join("no-such-folder").join("model.onnx");
    let err = model
        .save_onnx(&missing, &OnnxOptions::square(64))
        .unwrap_err();
    assert!(
        matches!(&err, Error::CheckpointWrite { path, .. } if *path == missing),
        "{err}"
    );
    let folder = dir.join("a-folder.onnx");
    std::fs::create_dir(&folder).unwrap();
    let err = model
        .save_onnx(&folder, &OnnxOptions::square(64))
        .unwrap_err();
    assert!(
        matches!(&err, Error::CheckpointWrite { path, .. } if *path == folder),
        "{err}"
    );
    // No temporary file was left beside it.
    assert_eq!(listing(&dir), ["a-folder.onnx"]);
    assert!(listing(&folder).is_empty());

    // A failed save does not touch an existing file under the final name.
    std::fs::write(&path, b"previous").unwrap();
    assert!(model.save_onnx(&path, &OnnxOptions::square(8)).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"previous");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `vheat export CHECKPOINT OUT --size SIZE`.
fn export_command(checkpoint: &Path, out: &Path, size: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vheat"));
    command
        .arg("export")
        .arg(checkpoint)
        .arg(out)
        .args(["--size", size]);
    command
}

#[test]
fn vheat_export_writes_a_file_tract_runs_like_the_checkpoint() {
    let dir = unique_temp_dir("onnx-cli");
    let config = post_norm_layer_scale();
    let model = random_model(&config, 51);
    let ckpt = dir.join("micro.bpk");
    let meta = CheckpointMeta {
        classes: (0..config.num_classes).map(|i| format!("c{i}")).collect(),
        config,
        image_size: 64,
        crop_pct: 1.0,
    };
    save_checkpoint(&model, &meta, &ckpt).unwrap();
    let out = dir.join("micro.onnx");
    let run = export_command(&ckpt, &out, "64,96").output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("opset 17"), "{stdout}");
    assert!(
        stdout.contains("input images [N, 3, 64, 96], output logits [N, 7]"),
        "{stdout}"
    );
    check_logits("vheat export", &model, &out, [64, 96]);

    // A size the model cannot take: status 1, a message naming it, no file.
    let small = dir.join("small.onnx");
    let run = export_command(&ckpt, &small, "16").output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: input 16x16 is too small"),
        "{stderr}"
    );
    assert!(!small.exists());

    // A size whose inference form would not fit: refused by the memory estimate before the
    // form is built (it would allocate tens of GB), no file.
    let huge = dir.join("huge.onnx");
    let run = export_command(&ckpt, &huge, "100000")
        .env("VHEAT_MEMORY_LIMIT", "1G")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("100000x100000"), "{stderr}");
    assert!(stderr.contains("memory limit of 1.0 GiB"), "{stderr}");
    assert!(!huge.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// With `VHEAT_ONNX_CHECK_DIR=DIR`: vHeat-T (random weights, perturbed as above) exported at
/// 224² and 512² (`vheat_t_{side}.onnx`), with an input batch of 2 and the crate's logits for it
/// (`vheat_t_{side}.io.safetensors`), for `scripts/check_onnx.py` (ONNX Runtime).
#[test]
#[ignore = "writes vHeat-T files for scripts/check_onnx.py; needs VHEAT_ONNX_CHECK_DIR"]
fn write_vheat_t_for_onnx_runtime() {
    let dir = std::env::var_os("VHEAT_ONNX_CHECK_DIR").expect("set VHEAT_ONNX_CHECK_DIR=DIR");
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).unwrap();
    let model = random_model(&VHeatConfig::tiny(), 61);
    for side in [224, 512] {
        let started = std::time::Instant::now();
        let path = dir.join(format!("vheat_t_{side}.onnx"));
        model.save_onnx(&path, &OnnxOptions::square(side)).unwrap();
        let exported = started.elapsed();
        let x = images(2, side, side);
        let logits = model.forward(x.clone());
        write_io(
            &dir.join(format!("vheat_t_{side}.io.safetensors")),
            x,
            logits,
        );
        println!(
            "{} written in {:.1} s ({} bytes)",
            path.display(),
            exported.as_secs_f64(),
            std::fs::metadata(&path).unwrap().len()
        );
    }
}
