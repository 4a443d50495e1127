//! Export to the reference's PyTorch layout (`VHeat::save_pytorch_safetensors`) and format
//! conversion by extension (`vheat::weights::convert`).

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::Distribution;
use common::*;
use vheat::weights::{convert, CheckpointFormat};
use vheat::{Error, VHeat};

/// Every tensor of a safetensors file: key → (dtype, shape, raw little-endian bytes).
type Header = BTreeMap<String, (String, Vec<usize>, Vec<u8>)>;

fn read_safetensors(path: &Path) -> Header {
    let bytes = std::fs::read(path).expect("file written");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
    st.tensors()
        .into_iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                (
                    format!("{:?}", v.dtype()),
                    v.shape().to_vec(),
                    v.data().to_vec(),
                ),
            )
        })
        .collect()
}

/// Adds noise to every float parameter, so that no tensor is left at a constant
/// initialisation (zero biases, unit LayerNorm gains) that would hide a swapped key.
struct Perturb;

impl ModuleMapper for Perturb {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let v = param.val();
        let noise = Tensor::random(v.dims(), Distribution::Normal(0.0, 0.2), &v.device());
        Param::from_tensor(v + noise)
    }
}

fn perturbed(name: &str, d: &Device) -> VHeat {
    d.seed(7);
    fixture_config(&format!("{name}.json"))
        .init(d)
        .map(&mut Perturb)
}

fn input(d: &Device, size: usize) -> Tensor<4> {
    d.seed(11);
    Tensor::random([2, 3, size, size], Distribution::Normal(0.0, 1.0), d)
}

per_backend! {
fn round_trip_gives_identical_logits(d) {
    for (name, size) in [("micro_tiny", 64), ("micro_base", 32)] {
        let model = perturbed(name, d);
        let dir = unique_temp_dir("export-rt");
        let path = dir.join(format!("{name}.safetensors"));
        model.save_pytorch_safetensors(&path).unwrap();
        let config = fixture_config(&format!("{name}.json"));
        let back = VHeat::load_safetensors(&path, &config, d).unwrap();
        let x = input(d, size);
        // The same f32 values come back (the transposes are exact), and the same computation
        // runs on them: bit-identical logits.
        assert_eq!(
            values(model.forward(x.clone())),
            values(back.forward(x)),
            "{name}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
}

per_backend! {
fn exported_keys_and_shapes_are_the_references(d) {
    for name in ["micro_tiny", "micro_base"] {
        let model = perturbed(name, d);
        let dir = unique_temp_dir("export-keys");
        let path = dir.join("out.safetensors");
        model.save_pytorch_safetensors(&path).unwrap();
        let ours: BTreeMap<String, (String, Vec<usize>)> = read_safetensors(&path)
            .into_iter()
            .map(|(k, (t, s, _))| (k, (t, s)))
            .collect();
        let reference: BTreeMap<String, (String, Vec<usize>)> =
            read_safetensors(&fixture(&format!("{name}.weights.safetensors")))
                .into_iter()
                .map(|(k, (t, s, _))| (k, (t, s)))
                .collect();
        assert_eq!(ours, reference, "{name}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
}

per_backend! {
fn importing_a_fixture_then_exporting_gives_its_tensors_back(d) {
    for name in ["micro_tiny", "micro_base"] {
        let config = fixture_config(&format!("{name}.json"));
        let model = VHeat::load_pytorch(fixture(&format!("{name}.pth")), &config, d).unwrap();
        let dir = unique_temp_dir("export-fx");
        let path = dir.join("out.safetensors");
        model.save_pytorch_safetensors(&path).unwrap();
        // Byte-equal tensors: no value is recomputed on the way through.
        assert_eq!(
            read_safetensors(&path),
            read_safetensors(&fixture(&format!("{name}.weights.safetensors"))),
            "{name}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
}

per_backend! {
fn output_norms_export_as_outnorm_and_load_as_a_backbone(d) {
    let model = perturbed("micro_base", d)
        .with_output_norms(vec![1, 3])
        .unwrap()
        .map(&mut Perturb);
    let dir = unique_temp_dir("export-bb");
    let path = dir.join("bb.safetensors");
    model.save_pytorch_safetensors(&path).unwrap();
    let keys: Vec<String> = read_safetensors(&path)
        .into_keys()
        .filter(|k| k.starts_with("outnorm"))
        .collect();
    assert_eq!(
        keys,
        ["outnorm1.bias", "outnorm1.weight", "outnorm3.bias", "outnorm3.weight"]
    );
    let config = fixture_config("micro_base.json");
    let (back, report) = VHeat::load_backbone(&path, &config, d).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(back.output_norm_indices(), vec![1, 3]);
    let x = input(d, 32);
    let a = model.forward_intermediates(x.clone(), vec![1, 3]).unwrap();
    let b = back.forward_intermediates(x, vec![1, 3]).unwrap();
    for (a, b) in a.into_iter().zip(b) {
        assert_eq!(values(a), values(b));
    }
    std::fs::remove_dir_all(&dir).ok();
}
}

per_backend! {
fn write_failures_are_typed_errors_and_leave_no_file(d) {
    let model = perturbed("micro_base", d);
    let dir = unique_temp_dir("export-err");
    // A directory that does not exist.
    let path = dir.join("missing").join("out.safetensors");
    let err = model.save_pytorch_safetensors(&path).unwrap_err();
    assert!(matches!(&err, Error::CheckpointWrite { path: p, .. } if *p == path), "{err}");
    assert!(err.to_string().contains("out.safetensors"), "{err}");
    // The destination is a directory: the rename fails, the temporary file is removed.
    let target = dir.join("a-directory.safetensors");
    std::fs::create_dir(&target).unwrap();
    let err = model.save_pytorch_safetensors(&target).unwrap_err();
    assert!(matches!(err, Error::CheckpointWrite { .. }), "{err}");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("a-directory.safetensors")]);
    // The inference form is refused, and an existing file keeps its contents.
    let existing = dir.join("keep.safetensors");
    std::fs::write(&existing, b"old").unwrap();
    let inference = model.to_inference(32, 32).unwrap();
    let err = inference.save_pytorch_safetensors(&existing).unwrap_err();
    assert!(matches!(err, Error::CheckpointWrite { .. }), "{err}");
    assert!(err.to_string().contains("inference"), "{err}");
    assert_eq!(std::fs::read(&existing).unwrap(), b"old");
    std::fs::remove_dir_all(&dir).ok();
}
}

per_backend! {
fn convert_dispatches_on_extensions(d) {
    let config = fixture_config("micro_tiny.json");
    let dir = unique_temp_dir("export-convert");
    // .pth → .bpk → .safetensors gives the reference's safetensors back.
    let bpk = dir.join("m.bpk");
    convert(fixture("micro_tiny.pth"), &bpk, &config, d).unwrap();
    let st = dir.join("m.safetensors");
    convert(&bpk, &st, &config, d).unwrap();
    assert_eq!(
        read_safetensors(&st),
        read_safetensors(&fixture("micro_tiny.weights.safetensors"))
    );
    // Unknown extensions, on either side, and a .pth output are typed errors naming the file;
    // nothing is written.
    let err = convert(fixture("micro_tiny.json"), dir.join("x.bpk"), &config, d).unwrap_err();
    assert!(matches!(err, Error::UnsupportedFormat { .. }), "{err}");
    assert!(err.to_string().contains("micro_tiny.json"), "{err}");
    let err = convert(fixture("micro_tiny.pth"), dir.join("x.onnx"), &config, d).unwrap_err();
    assert!(matches!(err, Error::UnsupportedFormat { .. }), "{err}");
    let err = convert(fixture("micro_tiny.pth"), dir.join("x.pth"), &config, d).unwrap_err();
    assert!(matches!(err, Error::UnsupportedFormat { .. }), "{err}");
    assert!(!dir.join("x.pth").exists() && !dir.join("x.bpk").exists());
    assert_eq!(
        CheckpointFormat::from_path(Path::new("A.SafeTensors")).unwrap(),
        CheckpointFormat::Safetensors
    );
    std::fs::remove_dir_all(&dir).ok();
}
}

/// Writes the files `scripts/check_export.py` compares against PyTorch: run with
/// `VHEAT_EXPORT_CHECK_DIR=<dir> cargo test --release --features wgpu --test export -- --ignored`.
#[test]
#[ignore = "writes the PyTorch cross-check files; needs VHEAT_EXPORT_CHECK_DIR"]
fn write_pytorch_check_files() {
    let dir = std::env::var("VHEAT_EXPORT_CHECK_DIR").expect("VHEAT_EXPORT_CHECK_DIR set");
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).unwrap();
    let d = &cpu();
    for (name, size) in [("micro_tiny", 64), ("micro_base", 32)] {
        let model = perturbed(name, d);
        model
            .save_pytorch_safetensors(dir.join(format!("{name}.export.safetensors")))
            .unwrap();
        let x = input(d, size);
        let logits = model.forward(x.clone());
        let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = vec![
            ("input".into(), x.dims().to_vec(), values(x)),
            ("logits".into(), logits.dims().to_vec(), values(logits)),
        ];
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
            .into_iter()
            .map(|(k, s, v)| (k, s, v.iter().flat_map(|f| f.to_le_bytes()).collect()))
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
            .iter()
            .map(|(k, s, b)| {
                (
                    k.clone(),
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                        .unwrap(),
                )
            })
            .collect();
        safetensors::serialize_to_file(views, None, &dir.join(format!("{name}.io.safetensors")))
            .unwrap();
    }
}
