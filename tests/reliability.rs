//! Every bad input to the public API is a typed `vheat::Error` that names the problem, never a
//! panic, and a failed load changes nothing. One test per case of issue 7:
//!
//! - configurations: unknown name, missing file, malformed JSON, wrong types, inconsistent
//!   fields, absurd sizes;
//! - backends: unknown name, malformed index, backend not compiled in;
//! - inputs: wrong channel count, smaller than the network's minimum, wrong rank, empty batch,
//!   inference form at another size, bad form changes;
//! - checkpoints (`.pth`, safetensors, burnpack): missing, truncated and corrupt files, a
//!   checkpoint for another depth, width or class count, keys from another model, f16/bf16/f64
//!   tensors (converted), integer tensors (refused, naming key and dtype), NaN/inf weights
//!   (refused, naming the key);
//! - concurrency: one loaded model used from several threads gives the single-thread result;
//! - fuzzing: a bounded smoke run of the offline fuzzer (`examples/fuzz_loaders.rs`) and every
//!   input of the committed corpus `tests/fuzz_corpus/` load without a panic.
//!
//! Bad checkpoints are built here from the fixtures with `tests/common/pth.rs` (zip container,
//! f16/bf16 encoding written from the specifications) and the `safetensors` crate.

#[macro_use]
mod common;
#[path = "common/fuzz.rs"]
mod fuzz;
#[path = "common/pth.rs"]
mod pth;

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use common::*;
use safetensors::{Dtype, SafeTensors};
use vheat::weights::{load_pytorch_into, load_safetensors_into, LoadOptions};
use vheat::{Error, VHeat, VHeatConfig};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "vheat-reliability-{}-{name}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// Every float parameter of a module as (path, values), in module order.
#[derive(Default)]
struct Params {
    path: Vec<String>,
    out: Vec<(String, Vec<f32>)>,
}

impl ModuleVisitor for Params {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.out.push((self.path.join("."), values(param.val())));
    }
}

fn params(model: &VHeat) -> Vec<(String, Vec<f32>)> {
    let mut p = Params::default();
    model.visit(&mut p);
    p.out
}

fn base_config() -> VHeatConfig {
    fixture_config("micro_base.json")
}

fn base_model(d: &Device) -> VHeat {
    VHeat::load_pytorch(fixture("micro_base.pth"), &base_config(), d).unwrap()
}

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

/// Loads `path` strictly into a copy of `model` and returns the error, asserting that the model
/// handed in is unchanged afterwards.
fn load_err(model: &VHeat, path: &Path, format: Format) -> Error {
    let before = params(model);
    let mut target = model.clone();
    let result = match format {
        Format::Pth => load_pytorch_into(&mut target, path, &LoadOptions::strict()),
        Format::Safetensors => load_safetensors_into(&mut target, path, &LoadOptions::strict()),
    };
    let err = result.expect_err("the load should fail");
    println!("{}: {err}", path.display());
    assert!(
        params(&target) == before,
        "a failed load changed the model ({err})"
    );
    err
}

#[derive(Clone, Copy)]
enum Format {
    Pth,
    Safetensors,
}

/// The fixture safetensors with every tensor passed through `f(key, dtype, shape, bytes)`.
fn rewrite_safetensors(
    name: &str,
    f: impl Fn(&str, Dtype, &[usize], &[u8]) -> (Dtype, Vec<usize>, Vec<u8>),
) -> Vec<u8> {
    let bytes = fixture_bytes(name);
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(k, v)| {
            let (dt, shape, data) = f(&k, v.dtype(), v.shape(), v.data());
            (k, dt, shape, data)
        })
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(k, dt, shape, data)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(*dt, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn encode_f16(x: f32) -> Vec<u8> {
    pth::f16_bits(x).to_le_bytes().to_vec()
}
fn encode_bf16(x: f32) -> Vec<u8> {
    pth::bf16_bits(x).to_le_bytes().to_vec()
}
fn encode_f64(x: f32) -> Vec<u8> {
    (x as f64).to_le_bytes().to_vec()
}

/// A model loaded from a lower/higher-precision checkpoint holds exactly the rounded values of
/// the float32 reference weights, in float32.
fn assert_rounded_weights(loaded: &VHeat, reference: &VHeat, round: impl Fn(f32) -> f32) {
    let (got, want) = (params(loaded), params(reference));
    assert_eq!(got.len(), want.len());
    for ((key, g), (_, w)) in got.iter().zip(&want) {
        let expected: Vec<f32> = w.iter().map(|&x| round(x)).collect();
        assert!(
            g == &expected,
            "{key}: loaded values are not the rounded checkpoint values"
        );
    }
}

fn fixture_input(d: &Device) -> Tensor<4> {
    Tensors::open("micro_base.io.safetensors").get::<4>("x32.input", d)
}

// ---------------------------------------------------------------------------------------------
// Configurations (host only)
// ---------------------------------------------------------------------------------------------

#[test]
fn config_unknown_name_is_an_error() {
    let err = VHeatConfig::by_name("vheat_huge").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::InvalidConfig(_)), "{msg}");
    assert!(msg.contains("vheat_huge") && msg.contains("tiny"), "{msg}");
    for ok in ["tiny", "S", "vheat-base", "vheat_t"] {
        assert!(VHeatConfig::by_name(ok).is_ok(), "{ok}");
    }
}

#[test]
fn config_missing_file_names_the_path() {
    let err = VHeatConfig::load("/nonexistent/vheat_config.json").unwrap_err();
    assert!(matches!(err, Error::ConfigFile { .. }), "{err}");
    assert!(
        err.to_string().contains("/nonexistent/vheat_config.json"),
        "{err}"
    );
}

#[test]
fn config_malformed_json_names_the_file_and_position() {
    let scratch = Scratch::new("config-json");
    let path = scratch.write("bad.json", br#"{"depths": [2, 2, 6, 2], "dims": [96, 19"#);
    let err = VHeatConfig::load(&path).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::ConfigFile { .. }), "{msg}");
    assert!(msg.contains("bad.json") && msg.contains("line 1"), "{msg}");
    // Not JSON at all, and not UTF-8.
    let path = scratch.write("binary.json", &[0xff, 0xfe, 0x00, 0x12]);
    assert!(matches!(
        VHeatConfig::load(&path),
        Err(Error::ConfigFile { .. })
    ));
}

#[test]
fn config_wrong_field_types_are_errors() {
    for json in [
        r#"{"depths": [2, -1], "dims": [8, 16]}"#,
        r#"{"depths": "2,2", "dims": [8, 16]}"#,
        r#"{"depths": [1], "dims": [8], "post_norm": "yes"}"#,
        r#"{"depths": [1], "dims": [8.5]}"#,
        r#"{"dims": [8, 16]}"#,
        r#"[1, 2, 3]"#,
        "",
    ] {
        let err = VHeatConfig::from_json(json).unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)), "{json}: {err}");
        assert!(err.to_string().contains("malformed JSON"), "{json}: {err}");
    }
}

#[test]
fn config_inconsistent_fields_are_errors() {
    for (json, needle) in [
        (r#"{"depths": [1, 1], "dims": [8]}"#, "`dims` has 1"),
        (r#"{"depths": [], "dims": []}"#, "`depths` is empty"),
        (r#"{"depths": [1], "dims": [0]}"#, "`dims[0]` is 0"),
        (
            r#"{"depths": [1, 1], "dims": [8, 16], "img_size": 4}"#,
            "total stride",
        ),
        (
            r#"{"depths": [1], "dims": [8], "drop_path_rate": 1.5}"#,
            "drop_path_rate",
        ),
        (r#"{"depths": [1], "dims": [8], "in_chans": 0}"#, "in_chans"),
        (
            r#"{"depths": [1], "dims": [8], "mlp_ratio": -1}"#,
            "mlp_ratio",
        ),
    ] {
        let err = VHeatConfig::from_json(json).unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)), "{json}: {err}");
        assert!(err.to_string().contains(needle), "{json}: {err}");
    }
}

#[test]
fn config_absurd_sizes_are_errors_not_overflows() {
    // Each would overflow an integer or exhaust the address space while building.
    let max = usize::MAX.to_string();
    for json in [
        format!(r#"{{"depths": [{max}, 2], "dims": [8, 16], "img_size": 32}}"#),
        format!(r#"{{"depths": [1], "dims": [{max}], "img_size": 32}}"#),
        format!(r#"{{"depths": [1], "dims": [8], "img_size": {max}}}"#),
        format!(r#"{{"depths": [1], "dims": [8], "num_classes": {max}}}"#),
        format!(r#"{{"depths": [1], "dims": [8], "in_chans": {max}}}"#),
        format!(r#"{{"depths": [1, 1, 1, 1], "dims": {}}}"#, usize::MAX / 4),
    ] {
        let err = VHeatConfig::from_json(&json).unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)), "{json}: {err}");
    }
    // Through the builder API, `try_init` validates the same way.
    let config = VHeatConfig::new(vec![usize::MAX, 1], vec![8, 16]).with_img_size(32);
    let device = cpu();
    assert!(matches!(
        config.try_init(&device),
        Err(Error::InvalidConfig(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// Backends (host only)
// ---------------------------------------------------------------------------------------------

#[test]
fn backend_unknown_name_lists_the_known_ones() {
    let err = vheat::device_from_name("tpu").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::UnknownBackend { .. }), "{msg}");
    assert!(
        msg.contains("\"tpu\"") && msg.contains("flex") && msg.contains("wgpu"),
        "{msg}"
    );
    assert!(matches!(
        vheat::device_from_name(""),
        Err(Error::UnknownBackend { .. })
    ));
}

#[test]
fn backend_malformed_index_is_an_error() {
    for name in ["cuda:x", "wgpu:-1", "wgpu:99999999999999999999999", "cuda:"] {
        let err = vheat::device_from_name(name).unwrap_err();
        assert!(matches!(err, Error::UnknownBackend { .. }), "{name}: {err}");
    }
    // A CPU backend takes no index.
    let err = vheat::device_from_name("flex:1").unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
}

#[test]
fn backend_not_compiled_in_names_the_feature() {
    let missing = vheat::KNOWN_BACKENDS
        .iter()
        .find(|(name, _)| !vheat::compiled_backends().contains(name))
        .expect("this build leaves out at least one backend (cuda needs network to build)");
    let err = vheat::device_from_name(missing.0).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::BackendNotCompiled { .. }), "{msg}");
    assert!(msg.contains(&format!("`{}`", missing.1)), "{msg}");
}

// ---------------------------------------------------------------------------------------------
// The test helpers themselves, against published constants.
// ---------------------------------------------------------------------------------------------

#[test]
fn support_encoders_match_published_values() {
    // CRC-32 check value of "123456789" (the standard test vector).
    assert_eq!(pth::crc32(b"123456789"), 0xCBF4_3926);
    // binary16: 1, -2, the largest finite, the smallest subnormal, 1/3, overflow, a tie.
    assert_eq!(pth::f16_bits(1.0), 0x3c00);
    assert_eq!(pth::f16_bits(-2.0), 0xc000);
    assert_eq!(pth::f16_bits(65504.0), 0x7bff);
    assert_eq!(pth::f16_bits(2f32.powi(-24)), 0x0001);
    assert_eq!(pth::f16_bits(1.0 / 3.0), 0x3555);
    assert_eq!(pth::f16_bits(1e6), 0x7c00);
    assert_eq!(pth::f16_bits(1.0 + 2f32.powi(-11)), 0x3c00); // tie → even
    assert_eq!(pth::f16_value(0x3555), 0.333_251_95);
    assert_eq!(pth::f16_value(0x0001), 2f32.powi(-24));
    // bfloat16: 1, pi (0x4049), and the value of its bits.
    assert_eq!(pth::bf16_bits(1.0), 0x3f80);
    assert_eq!(pth::bf16_bits(std::f32::consts::PI), 0x4049);
    assert_eq!(pth::bf16_value(0x4049), 3.140_625);
    // The zip writer round-trips through the reader, and the reader reads torch's own file.
    let entries = vec![
        ("a/data.pkl".to_string(), b"pickle".to_vec()),
        ("a/data/0".to_string(), vec![1, 2, 3]),
    ];
    assert_eq!(pth::read_zip(&pth::write_zip(&entries)).unwrap(), entries);
    let torch = pth::read_zip(&fixture_bytes("micro_base.pth")).unwrap();
    assert!(torch.iter().any(|(n, _)| n == "micro_base/data.pkl"));
}

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

per_backend! {
fn input_with_wrong_channel_count(d) {
    let model = base_model(d);
    let gray = Tensor::<4>::zeros([1, 1, 32, 32], d);
    let err = model.try_forward(gray).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::InvalidInput { .. }), "{msg}");
    assert!(msg.contains("3 channels") && msg.contains("[1, 1, 32, 32]"), "{msg}");
}

fn input_smaller_than_the_network_minimum(d) {
    let model = base_model(d);
    assert_eq!(model.min_input_size(), 32);
    for [h, w] in [[16, 32], [32, 31], [0, 0], [1, 1]] {
        let err = model.check_input(&[1, 3, h, w]).unwrap_err();
        assert!(
            matches!(err, Error::InputTooSmall { height, width, stride: 32 } if height == h && width == w),
            "{h}x{w}: {err}"
        );
    }
    let err = model.try_forward(Tensor::<4>::zeros([1, 3, 16, 16], d)).unwrap_err();
    assert!(err.to_string().contains("at least 32 pixels"), "{err}");
}

fn input_of_wrong_rank_or_empty_batch(d) {
    let model = base_model(d);
    for dims in [vec![3, 32, 32], vec![1, 1, 3, 32, 32], vec![], vec![0, 3, 32, 32]] {
        let err = model.check_input(&dims).unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{dims:?}: {err}");
        assert!(err.to_string().contains(&format!("{dims:?}")), "{err}");
    }
}

fn inference_form_at_another_size(d) {
    let model = base_model(d).to_inference(32, 32).unwrap();
    let err = model.try_forward(Tensor::<4>::zeros([1, 3, 64, 64], d)).unwrap_err();
    assert!(
        matches!(err, Error::InferenceSizeMismatch { stage: 0, expected: [8, 8], found: [16, 16] }),
        "{err}"
    );
}

fn form_changes_with_bad_arguments(d) {
    let model = base_model(d);
    assert!(matches!(model.to_inference(8, 32), Err(Error::InputTooSmall { .. })));
    assert!(matches!(model.to_trainable(), Err(Error::Form(_))));
    let fast = model.to_inference(32, 32).unwrap();
    assert!(matches!(fast.to_inference(32, 32), Err(Error::Form(_))));
}
}

// ---------------------------------------------------------------------------------------------
// Missing, truncated and corrupt files
// ---------------------------------------------------------------------------------------------

per_backend! {
fn checkpoint_missing_or_a_directory(d) {
    let model = base_model(d);
    for format in [Format::Pth, Format::Safetensors] {
        let err = load_err(&model, Path::new("/nonexistent/ckpt.bin"), format);
        assert!(matches!(err, Error::CheckpointRead { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/ckpt.bin"), "{err}");
        let err = load_err(&model, &std::env::temp_dir(), format);
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
    let err = VHeat::load_burnpack("/nonexistent/m.bpk", &base_config(), d).unwrap_err();
    assert!(matches!(err, Error::CheckpointRead { .. }), "{err}");
}

fn pth_truncated(d) {
    let model = base_model(d);
    let scratch = Scratch::new("pth-truncated");
    let bytes = fixture_bytes("micro_base.pth");
    for len in [0, 1, 64, bytes.len() / 2, bytes.len() - 22, bytes.len() - 1] {
        let path = scratch.write("t.pth", &bytes[..len]);
        let err = load_err(&model, &path, Format::Pth);
        assert!(matches!(err, Error::CheckpointRead { .. }), "{len} bytes: {err}");
        assert!(err.to_string().contains("t.pth"), "{err}");
    }
}

fn pth_corrupt(d) {
    let model = base_model(d);
    let scratch = Scratch::new("pth-corrupt");
    let bytes = fixture_bytes("micro_base.pth");
    // Not a zip at all.
    let path = scratch.write("noise.pth", &[0x5a; 4096]);
    assert!(matches!(load_err(&model, &path, Format::Pth), Error::CheckpointRead { .. }));
    // A valid zip whose pickle is cut short, or has its opcodes overwritten.
    let mut entries = pth::read_zip(&bytes).unwrap();
    let pickle = pth::pickle_mut(&mut entries);
    let half = pickle.len() / 2;
    pickle.truncate(half);
    let path = scratch.write("short-pickle.pth", &pth::write_zip(&entries));
    assert!(matches!(load_err(&model, &path, Format::Pth), Error::CheckpointRead { .. }));
    let mut entries = pth::read_zip(&bytes).unwrap();
    let pickle = pth::pickle_mut(&mut entries);
    for b in pickle.iter_mut().skip(40).step_by(7) {
        *b = 0xff;
    }
    let path = scratch.write("bad-pickle.pth", &pth::write_zip(&entries));
    let err = load_err(&model, &path, Format::Pth);
    assert!(matches!(err, Error::CheckpointRead { .. }), "{err}");
    // A storage file shorter than the pickle says: the tensors using it cannot load.
    let mut entries = pth::read_zip(&bytes).unwrap();
    let (_, data) = entries.iter_mut().find(|(n, _)| n.ends_with("/data/0")).unwrap();
    data.truncate(data.len() / 2);
    let path = scratch.write("short-storage.pth", &pth::write_zip(&entries));
    let err = load_err(&model, &path, Format::Pth);
    assert!(err.to_string().contains("patch_embed.conv1.weight"), "{err}");
    // A flipped byte in a storage breaks its CRC: the tensor stored there cannot load.
    let mut corrupt = bytes.clone();
    corrupt[pth::entry_data_offset(&bytes, "micro_base/data/0").unwrap() + 5] ^= 0x40;
    let path = scratch.write("flipped.pth", &corrupt);
    let err = load_err(&model, &path, Format::Pth);
    assert!(err.to_string().contains("patch_embed.conv1.weight"), "{err}");
}

fn safetensors_truncated(d) {
    let model = base_model(d);
    let scratch = Scratch::new("st-truncated");
    let bytes = fixture_bytes("micro_base.weights.safetensors");
    for len in [0, 4, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        let path = scratch.write("t.safetensors", &bytes[..len]);
        let err = load_err(&model, &path, Format::Safetensors);
        assert!(matches!(err, Error::CheckpointRead { .. }), "{len} bytes: {err}");
        assert!(err.to_string().contains("t.safetensors"), "{err}");
    }
}

fn safetensors_corrupt_header(d) {
    let model = base_model(d);
    let scratch = Scratch::new("st-corrupt");
    let bytes = fixture_bytes("micro_base.weights.safetensors");
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    // A header length beyond the file.
    let mut bad = bytes.clone();
    bad[..8].copy_from_slice(&(bytes.len() as u64 * 2).to_le_bytes());
    let path = scratch.write("len.safetensors", &bad);
    assert!(matches!(load_err(&model, &path, Format::Safetensors), Error::CheckpointRead { .. }));
    // Broken JSON in the header.
    let mut bad = bytes.clone();
    bad[8 + header_len / 2] = b'}';
    let path = scratch.write("json.safetensors", &bad);
    assert!(matches!(load_err(&model, &path, Format::Safetensors), Error::CheckpointRead { .. }));
    // Offsets that overlap: the header no longer describes the data.
    let header = String::from_utf8(bytes[8..8 + header_len].to_vec()).unwrap();
    let first_offsets = header.find("\"data_offsets\":[").unwrap() + 16;
    let mut header = header.into_bytes();
    header[first_offsets] = b'9';
    let mut bad = bytes[..8].to_vec();
    bad.extend_from_slice(&header);
    bad.extend_from_slice(&bytes[8 + header_len..]);
    let path = scratch.write("offsets.safetensors", &bad);
    let _ = load_err(&model, &path, Format::Safetensors);
}

fn burnpack_truncated_and_corrupt(d) {
    let model = base_model(d);
    let scratch = Scratch::new("bpk");
    let good = scratch.0.join("good.bpk");
    model.save_burnpack(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    for len in [0, 3, 10, bytes.len() / 2, bytes.len() - 1] {
        let path = scratch.write("t.bpk", &bytes[..len]);
        let err = VHeat::load_burnpack(&path, &base_config(), d).unwrap_err();
        assert!(matches!(err, Error::CheckpointRead { .. }), "{len} bytes: {err}");
        assert!(err.to_string().contains("t.bpk"), "{err}");
    }
    let mut bad = bytes.clone();
    bad[..4].copy_from_slice(b"JUNK");
    let path = scratch.write("magic.bpk", &bad);
    let err = VHeat::load_burnpack(&path, &base_config(), d).unwrap_err();
    assert!(matches!(err, Error::CheckpointRead { .. }), "{err}");
}
}

// ---------------------------------------------------------------------------------------------
// A checkpoint for another model
// ---------------------------------------------------------------------------------------------

per_backend! {
fn checkpoint_for_another_depth(d) {
    // micro_base has depths [1, 2, 1, 1]; a model with one block in stage 1 finds the
    // checkpoint's second block unused.
    let mut config = base_config();
    config.depths[1] = 1;
    let model = config.init(d);
    let err = load_err(&model, &fixture("micro_base.pth"), Format::Pth);
    let msg = err.to_string();
    assert!(matches!(err, Error::CheckpointMismatch { .. }), "{msg}");
    assert!(msg.contains("unused checkpoint keys"), "{msg}");
    assert!(msg.contains("layers.1.blocks.1.op.linear.weight"), "{msg}");
}

fn checkpoint_for_another_width(d) {
    let mut config = base_config();
    config.dims[2] = 48;
    let model = config.init(d);
    let err = load_err(&model, &fixture("micro_base.weights.safetensors"), Format::Safetensors);
    let msg = err.to_string();
    assert!(matches!(err, Error::CheckpointMismatch { .. }), "{msg}");
    // Burn stores Linear weights [in, out]: 48 → 96 here, 32 → 64 in the checkpoint.
    assert!(
        msg.contains("layers.2.blocks.0.op.linear.weight: model expects [48, 96], checkpoint has [32, 64]"),
        "{msg}"
    );
}

fn checkpoint_for_another_class_count(d) {
    let model = base_config().with_num_classes(7).init(d);
    let err = load_err(&model, &fixture("micro_base.pth"), Format::Pth);
    let msg = err.to_string();
    assert!(
        msg.contains("classifier.fc.weight: model expects [64, 7], checkpoint has [64, 5]"),
        "{msg}"
    );
    assert!(msg.contains("classifier.fc.bias: model expects [7], checkpoint has [5]"), "{msg}");
}

fn checkpoint_keys_from_another_model(d) {
    // The heat-operator fixture: tensors of a different module altogether.
    let model = base_model(d);
    let err = load_err(&model, &fixture("heat2d_op.safetensors"), Format::Safetensors);
    let msg = err.to_string();
    assert!(matches!(err, Error::CheckpointMismatch { .. }), "{msg}");
    assert!(msg.contains("missing in checkpoint") && msg.contains("patch_embed.conv1.weight"), "{msg}");
    assert!(msg.contains("unused checkpoint keys") && msg.contains("op.dwconv.weight"), "{msg}");
    // And the other micro model's checkpoint.
    let err = load_err(&model, &fixture("micro_tiny.pth"), Format::Pth);
    assert!(matches!(err, Error::CheckpointMismatch { .. }), "{err}");
}
}

// ---------------------------------------------------------------------------------------------
// Other dtypes
// ---------------------------------------------------------------------------------------------

fn safetensors_as(dtype: Dtype, encode: fn(f32) -> Vec<u8>) -> Vec<u8> {
    rewrite_safetensors("micro_base.weights.safetensors", |_, dt, shape, data| {
        assert_eq!(dt, Dtype::F32);
        let bytes = f32s(data).into_iter().flat_map(encode).collect();
        (dtype, shape.to_vec(), bytes)
    })
}

fn pth_as(storage: &str, encode: fn(f32) -> Vec<u8>) -> Vec<u8> {
    pth::convert_pth(&fixture_bytes("micro_base.pth"), storage, encode)
}

/// Loads a converted checkpoint strictly and checks the rounded weights and that the model
/// runs in float32.
fn check_converted(d: &Device, bytes: &[u8], format: Format, round: fn(f32) -> f32) {
    let scratch = Scratch::new("dtype");
    let path = scratch.write("converted.bin", bytes);
    let reference = base_model(d);
    let mut model = base_config().init(d);
    match format {
        Format::Pth => load_pytorch_into(&mut model, &path, &LoadOptions::strict()),
        Format::Safetensors => load_safetensors_into(&mut model, &path, &LoadOptions::strict()),
    }
    .unwrap();
    assert_rounded_weights(&model, &reference, round);
    let logits = model.try_forward(fixture_input(d)).unwrap();
    assert_eq!(logits.dtype(), burn::tensor::DType::F32);
    assert!(values(logits).iter().all(|v| v.is_finite()));
}

fn round_f16(x: f32) -> f32 {
    pth::f16_value(pth::f16_bits(x))
}
fn round_bf16(x: f32) -> f32 {
    pth::bf16_value(pth::bf16_bits(x))
}
fn exact(x: f32) -> f32 {
    x
}

per_backend! {
fn safetensors_f16_is_converted(d) {
    check_converted(d, &safetensors_as(Dtype::F16, encode_f16), Format::Safetensors, round_f16);
}

fn safetensors_bf16_is_converted(d) {
    check_converted(d, &safetensors_as(Dtype::BF16, encode_bf16), Format::Safetensors, round_bf16);
}

fn safetensors_f64_is_converted(d) {
    check_converted(d, &safetensors_as(Dtype::F64, encode_f64), Format::Safetensors, exact);
}

fn pth_f16_is_converted(d) {
    check_converted(d, &pth_as("HalfStorage", encode_f16), Format::Pth, round_f16);
}

fn pth_bf16_is_converted(d) {
    check_converted(d, &pth_as("BFloat16Storage", encode_bf16), Format::Pth, round_bf16);
}

fn pth_f64_is_converted(d) {
    check_converted(d, &pth_as("DoubleStorage", encode_f64), Format::Pth, exact);
}

fn integer_tensor_for_a_float_weight(d) {
    let bytes = rewrite_safetensors("micro_base.weights.safetensors", |key, dt, shape, data| {
        if key == "patch_embed.conv1.bias" {
            let ints = f32s(data).into_iter().flat_map(|x| (x as i64).to_le_bytes()).collect();
            (Dtype::I64, shape.to_vec(), ints)
        } else {
            (dt, shape.to_vec(), data.to_vec())
        }
    });
    let scratch = Scratch::new("int");
    let path = scratch.write("int.safetensors", &bytes);
    let err = load_err(&base_model(d), &path, Format::Safetensors);
    let msg = err.to_string();
    assert!(matches!(err, Error::CheckpointMismatch { .. }), "{msg}");
    assert!(msg.contains("patch_embed.conv1.bias") && msg.contains("I64"), "{msg}");
    // Leniently too: a tensor that cannot be applied is never skipped silently.
    let mut model = base_model(d);
    assert!(load_safetensors_into(&mut model, &path, &LoadOptions::lenient()).is_err());
}
}

// ---------------------------------------------------------------------------------------------
// Non-finite weights
// ---------------------------------------------------------------------------------------------

per_backend! {
fn nan_weight_in_safetensors_is_refused(d) {
    let bytes = rewrite_safetensors("micro_base.weights.safetensors", |key, dt, shape, data| {
        let mut data = data.to_vec();
        if key == "layers.1.1.op.out_linear.weight" {
            data[12..16].copy_from_slice(&f32::NAN.to_le_bytes());
        }
        (dt, shape.to_vec(), data)
    });
    let scratch = Scratch::new("nan");
    let path = scratch.write("nan.safetensors", &bytes);
    let model = base_model(d);
    let err = load_err(&model, &path, Format::Safetensors);
    assert!(
        matches!(&err, Error::NonFiniteWeights { keys, .. }
            if keys == &["layers.1.blocks.1.op.out_linear.weight".to_string()]),
        "{err}"
    );
    assert!(err.to_string().contains("nan.safetensors"), "{err}");
    // Lenient loading refuses it as well.
    let mut target = model.clone();
    let err = load_safetensors_into(&mut target, &path, &LoadOptions::lenient()).unwrap_err();
    assert!(matches!(err, Error::NonFiniteWeights { .. }), "{err}");
    assert!(params(&target) == params(&model));
}

fn infinite_weights_in_pth_are_refused(d) {
    // +inf in the first storage and -inf in the last one.
    let bytes = fixture_bytes("micro_base.pth");
    let mut entries = pth::read_zip(&bytes).unwrap();
    let last = entries.iter().filter(|(n, _)| n.contains("/data/")).count() - 1;
    for (name, data) in entries.iter_mut() {
        if name.ends_with("/data/0") {
            data[..4].copy_from_slice(&f32::INFINITY.to_le_bytes());
        }
        if name.ends_with(&format!("/data/{last}")) {
            data[..4].copy_from_slice(&f32::NEG_INFINITY.to_le_bytes());
        }
    }
    let scratch = Scratch::new("inf");
    let path = scratch.write("inf.pth", &pth::write_zip(&entries));
    let err = load_err(&base_model(d), &path, Format::Pth);
    let Error::NonFiniteWeights { keys, .. } = &err else {
        panic!("expected NonFiniteWeights, got {err}");
    };
    assert_eq!(keys.len(), 2, "{err}");
    assert_eq!(keys[0], "patch_embed.conv1.weight", "{err}");
}

fn non_finite_weight_in_burnpack_is_refused(d) {
    let mut model = base_model(d);
    let fc = model.classifier.fc.as_mut().unwrap();
    let mut bias = values(fc.bias.as_ref().unwrap().val());
    bias[0] = f32::NAN;
    let n = bias.len();
    fc.bias = Some(Param::from_tensor(Tensor::from_data(TensorData::new(bias, [n]), d)));
    let scratch = Scratch::new("bpk-nan");
    let path = scratch.0.join("nan.bpk");
    model.save_burnpack(&path).unwrap();
    let err = VHeat::load_burnpack(&path, &base_config(), d).unwrap_err();
    assert!(
        matches!(&err, Error::NonFiniteWeights { keys, .. } if keys == &["classifier.fc.bias".to_string()]),
        "{err}"
    );
}
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

per_backend! {
fn one_model_from_several_threads_matches_one_thread(d) {
    let model = base_model(d);
    let fast = model.to_inference(32, 32).unwrap();
    let input = fixture_input(d);
    let single = values(model.forward(input.clone()));
    let single_fast = values(fast.forward(input.clone()));
    let results: Vec<(Vec<f32>, Vec<f32>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (model, fast, input) = (&model, &fast, input.clone());
                s.spawn(move || {
                    let mut last = (Vec::new(), Vec::new());
                    for _ in 0..3 {
                        last = (
                            values(model.forward(input.clone())),
                            values(fast.forward(input.clone())),
                        );
                    }
                    last
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (a, b) in results {
        assert_eq!(a, single, "trainable form from a thread");
        assert_eq!(b, single_fast, "inference form from a thread");
    }
}
}

// ---------------------------------------------------------------------------------------------
// Fuzzing: a bounded smoke run and the committed corpus
// ---------------------------------------------------------------------------------------------

/// A few hundred deterministic fuzz inputs (all four targets) and every file of
/// `tests/fuzz_corpus/` go through the loaders without a panic. The full run
/// (`cargo run --release --example fuzz_loaders`) uses the same mutations. Loader logic does not
/// depend on the backend, so this runs on the CPU backend only, to stay within seconds.
#[test]
fn fuzz_smoke_run_and_corpus_never_panic() {
    let scratch = Scratch::new("fuzz");
    let harness = fuzz::Harness::new(cpu(), scratch.0.join("work"));
    let panics = fuzz::smoke(&harness, 20_261_125, 400);
    assert!(panics.is_empty(), "loaders panicked: {panics:#?}");

    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus");
    let mut files: Vec<(PathBuf, fuzz::Target)> = std::fs::read_dir(&corpus)
        .expect("tests/fuzz_corpus exists")
        .map(|e| e.unwrap().path())
        .filter_map(|p| fuzz::Target::from_path(&p).map(|t| (p, t)))
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(files.len() >= 10, "the corpus lost files: {files:?}");
    for (file, target) in files {
        // Every combination of options the harness draws, for each corpus file.
        for seed in 0..8 {
            let mut rng = fuzz::Rng::new(seed);
            let outcome = harness.run_path(&mut rng, target, &file);
            assert!(
                !matches!(outcome, fuzz::Outcome::Panic(_)),
                "{}: {outcome:?}",
                file.display()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Images and image folders
// ---------------------------------------------------------------------------------------------

/// Encodes an image in `format` in memory.
#[cfg(feature = "image")]
fn encode(img: impl Into<image::DynamicImage>, format: image::ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    img.into()
        .write_to(&mut std::io::Cursor::new(&mut bytes), format)
        .unwrap();
    bytes
}

#[cfg(feature = "image")]
#[test]
fn image_unreadable_files_are_errors_naming_the_file() {
    let scratch = Scratch::new("images");
    let png = encode(
        image::RgbImage::from_fn(16, 16, |x, y| image::Rgb([x as u8, y as u8, 7])),
        image::ImageFormat::Png,
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("text.png", b"this is not an image".to_vec()),
        ("empty.jpg", Vec::new()),
        ("cut.png", png[..png.len() / 2].to_vec()),
        ("header-only.png", png[..33].to_vec()),
    ];
    for (name, bytes) in cases {
        let path = scratch.write(name, &bytes);
        let err = vheat::data::load_rgb(&path).unwrap_err();
        assert!(
            matches!(&err, Error::ImageRead { path: p, .. } if p == &path),
            "{name}: {err}"
        );
        assert!(err.to_string().contains(name), "{err}");
    }
    for missing in [scratch.0.join("missing.png"), scratch.0.clone()] {
        let err = vheat::data::load_rgb(&missing).unwrap_err();
        assert!(matches!(err, Error::ImageRead { .. }), "{err}");
    }
}

#[cfg(feature = "image")]
#[test]
fn image_grayscale_and_alpha_are_converted_to_rgb() {
    let scratch = Scratch::new("gray");
    let gray = image::GrayImage::from_fn(5, 3, |x, y| image::Luma([(x * 40 + y * 7) as u8]));
    // 16-bit samples that are multiples of 257 reduce to an exact 8-bit value.
    let gray16 = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(5, 3, |x, y| {
        image::Luma([(x * 40 + y * 7) as u16 * 257])
    });
    let rgba = image::RgbaImage::from_fn(5, 3, |x, y| {
        let v = (x * 40 + y * 7) as u8;
        image::Rgba([v, v, v, 17])
    });
    for (name, bytes) in [
        ("gray8.png", encode(gray.clone(), image::ImageFormat::Png)),
        ("gray16.png", encode(gray16, image::ImageFormat::Png)),
        ("rgba.png", encode(rgba, image::ImageFormat::Png)),
        // A PNG named .jpg: the format is taken from the content.
        ("misnamed.jpg", encode(gray, image::ImageFormat::Png)),
    ] {
        let path = scratch.write(name, &bytes);
        let rgb = vheat::data::load_rgb(&path).unwrap();
        assert_eq!(rgb.dimensions(), (5, 3), "{name}");
        for (x, y, p) in rgb.enumerate_pixels() {
            let v = (x * 40 + y * 7) as u8;
            assert_eq!(p.0, [v, v, v], "{name} at ({x}, {y})");
        }
    }
    // A grayscale JPEG (lossy): three equal channels close to the grey level.
    let flat = image::GrayImage::from_pixel(16, 16, image::Luma([120]));
    let path = scratch.write("gray.jpg", &encode(flat, image::ImageFormat::Jpeg));
    for p in vheat::data::load_rgb(&path).unwrap().pixels() {
        assert!(
            p.0[0] == p.0[1] && p.0[1] == p.0[2] && p.0[0].abs_diff(120) <= 2,
            "{p:?}"
        );
    }
}

#[cfg(feature = "train")]
per_backend! {
fn grayscale_image_folder_feeds_a_three_channel_model(d) {
    // A folder of grayscale images goes through the dataset to a [1, 3, 32, 32] tensor the
    // model accepts: the conversion happens on reading, not as a channel-count error later.
    let scratch = Scratch::new("gray-folder");
    for class in ["a", "b"] {
        std::fs::create_dir_all(scratch.0.join(class)).unwrap();
        let img = image::GrayImage::from_fn(40, 36, |x, y| image::Luma([(x * 5 + y) as u8]));
        scratch.write(&format!("{class}/img.png"), &encode(img, image::ImageFormat::Png));
    }
    let folder = vheat::data::ImageFolder::open(&scratch.0).unwrap();
    let data = folder.eval_dataset(vheat::data::EvalTransform::new(32));
    let item = data.load(0).unwrap();
    assert_eq!(item.shape, [3, 32, 32]);
    let x = item.to_tensor(d);
    let model = base_model(d);
    assert_eq!(model.try_forward(x).unwrap().dims(), [1, 5]);
}
}

/// An input on another backend than the model is a typed error, not a panic deep inside Burn.
/// (Needs two backends in one build: runs when `wgpu` is compiled in, as in CI.)
#[cfg(feature = "wgpu")]
#[test]
fn input_on_another_device_is_an_error() {
    let cpu_device = cpu();
    let gpu_device = test_device("wgpu");
    let model = VHeatConfig::new(vec![1, 1, 1, 1], vec![8, 16, 32, 32])
        .with_num_classes(3)
        .with_img_size(32)
        .init(&cpu_device);
    let images = Tensor::<4>::zeros([1, 3, 32, 32], &gpu_device);
    let err = model.try_forward(images).unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    assert!(err.to_string().contains("model's device"), "{err}");
    // The same input on the model's device runs.
    let ok = Tensor::<4>::zeros([1, 3, 32, 32], &cpu_device);
    assert_eq!(model.try_forward(ok).unwrap().dims(), [1, 3]);
}

/// A crop size of 0 does not panic in the image transforms: it is taken as 1.
#[cfg(feature = "image")]
#[test]
fn zero_crop_size_does_not_panic() {
    use vheat::data::{EvalTransform, TrainTransform};
    let img = image::RgbImage::from_pixel(5, 7, image::Rgb([10, 20, 30]));
    assert_eq!(EvalTransform::new(0).apply(&img).len(), 3);
    assert_eq!(EvalTransform::with_crop_pct(0, 0.9).apply(&img).len(), 3);
    let mut rng = vheat::data::SplitMix64::new(1);
    assert_eq!(TrainTransform::new(0).apply(&img, &mut rng).len(), 3);
}

// ---------------------------------------------------------------------------------------------
// Issue 28, case 10: a `.pth` zip bomb is refused by its shapes, unread.
// ---------------------------------------------------------------------------------------------

/// The environment variable that makes [`pth_bomb_child`] load the `.pth` it names.
const BOMB_CHILD: &str = "VHEAT_PTH_BOMB_CHILD";

/// Zip records each holding 128 MiB of zeros, deflated (about 130 KB each).
const BOMB_RECORD: usize = 128 << 20;

/// How many such records the bomb holds: 5 GiB inflated in all, in a file of about 5 MB, each
/// record below the 64-fold inflation a single record is allowed.
const BOMB_RECORDS: usize = 40;

/// The state dict of the fixture `micro_base`, as `write_pth` takes it (reference key names,
/// read from the fixture safetensors, which has the same tensors as `micro_base.pth`).
fn micro_base_state() -> Vec<pth::StateTensor> {
    let bytes = fixture_bytes("micro_base.weights.safetensors");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let view = st.tensor(&name).unwrap();
            pth::StateTensor {
                shape: view.shape().to_vec(),
                values: f32s(view.data()),
                name,
            }
        })
        .collect()
}

/// The zip archive `entries` (stored) plus `extra` records, each a raw copy of one deflated
/// record of [`BOMB_RECORD`] zeros (compressed once, copied without recompressing).
fn zip_with_bomb_records(entries: &[(String, Vec<u8>)], extra: &[String]) -> Vec<u8> {
    use std::io::{Cursor, Write};
    use zip::write::SimpleFileOptions;
    use zip::CompressionMethod;
    let mut one = zip::ZipWriter::new(Cursor::new(Vec::new()));
    one.start_file(
        "zeros",
        SimpleFileOptions::default().compression_method(CompressionMethod::Deflated),
    )
    .unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..BOMB_RECORD >> 20 {
        one.write_all(&chunk).unwrap();
    }
    let mut one = zip::ZipArchive::new(one.finish().unwrap()).unwrap();
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    for (name, data) in entries {
        out.start_file(name, stored).unwrap();
        out.write_all(data).unwrap();
    }
    for name in extra {
        out.raw_copy_file_rename(one.by_name("zeros").unwrap(), name)
            .unwrap();
    }
    out.finish().unwrap().into_inner()
}

/// `micro_base` with its first 4-D tensor in key order declared as `claim`
/// floats stored in a deflated record of [`BOMB_RECORD`] zeros, and [`BOMB_RECORDS`] − 1 more
/// such records no tensor uses: about 5 MB that inflate to 5 GiB. Returns the file and the
/// tensor's key.
fn pth_bomb(claim: usize) -> (Vec<u8>, String) {
    let mut state = micro_base_state();
    let k = state.iter().position(|t| t.shape.len() == 4).unwrap();
    state[k].shape = vec![claim];
    state[k].values = Vec::new();
    let mut entries = vec![
        (
            "archive/data.pkl".to_string(),
            pth::state_dict_pickle(&state),
        ),
        ("archive/byteorder".to_string(), b"little".to_vec()),
    ];
    let mut bombs = vec![format!("archive/data/{k}")];
    for (i, t) in state.iter().enumerate() {
        if i != k {
            let bytes = t.values.iter().flat_map(|v| v.to_le_bytes()).collect();
            entries.push((format!("archive/data/{i}"), bytes));
        }
    }
    bombs.extend((1..BOMB_RECORDS).map(|j| format!("archive/data/unused{j}")));
    (
        zip_with_bomb_records(&entries, &bombs),
        state[k].name.clone(),
    )
}

/// The child of [`a_pth_zip_bomb_is_refused_unread`]: under an address-space limit, loads the
/// valid fixture (the limit leaves room for an ordinary load), then every `.pth` of the folder
/// the environment names, printing each one's error. Does nothing in an ordinary test run.
#[test]
fn pth_bomb_child() {
    let Some(dir) = std::env::var_os(BOMB_CHILD) else {
        return;
    };
    let d = cpu();
    base_model(&d);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for path in paths {
        let err = VHeat::load_pytorch(&path, &base_config(), &d).unwrap_err();
        println!("refused {}: {err}", path.display());
    }
}

#[cfg(unix)]
#[test]
fn a_pth_zip_bomb_is_refused_unread() {
    let scratch = Scratch::new("pth-bomb");
    // A tensor whose claimed size fits its record (2²⁵ floats, 128 MiB) but not the model; and
    // one that claims 2³⁰ floats (4 GiB).
    let fits_record = BOMB_RECORD / 4;
    let (bytes, key) = pth_bomb(fits_record);
    assert!(bytes.len() < 16 << 20, "{} bytes", bytes.len());
    let path = scratch.write("a.pth", &bytes);
    scratch.write("b.pth", &pth_bomb(1 << 30).0);
    // Loaded in a child process whose address space is limited to 2 GiB, less than the bombs'
    // 5 GiB: a reader that inflated the records before checking sizes would die there.
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 2097152 && exec \"$0\" \"$@\"")
        .arg(std::env::current_exe().unwrap())
        .args([
            "pth_bomb_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(BOMB_CHILD, &scratch.0)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&child.stdout);
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert!(child.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("refused ").count(), 2, "{stdout}");
    assert!(stdout.contains(&fits_record.to_string()), "{stdout}");
    assert!(stdout.contains("larger than 1 GiB"), "{stdout}");

    // In this process: a shape mismatch naming the parameter and the claimed shape, the model
    // unchanged.
    let d = cpu();
    let model = base_model(&d);
    let err = load_err(&model, &path, Format::Pth);
    let Error::CheckpointMismatch { report, .. } = &err else {
        panic!("expected a shape mismatch for {key}, got {err}");
    };
    assert_eq!(report.shape_mismatches.len(), 1, "{err}");
    let mismatch = &report.shape_mismatches[0];
    assert_eq!(mismatch.found, vec![fits_record], "{err}");
    let stored = micro_base_state()
        .into_iter()
        .find(|t| t.name == key)
        .unwrap();
    assert_eq!(
        mismatch.expected.iter().product::<usize>(),
        stored.values.len(),
        "{err}"
    );
    assert!(report.missing.is_empty(), "{err}");

    // A tensor whose shape fits but whose zip record claims more bytes than the pickle declares
    // for its storage is refused before the record is inflated.
    let state = micro_base_state();
    let k = state.iter().position(|t| t.shape.len() == 4).unwrap();
    let mut entries = vec![
        (
            "archive/data.pkl".to_string(),
            pth::state_dict_pickle(&state),
        ),
        ("archive/byteorder".to_string(), b"little".to_vec()),
    ];
    for (i, t) in state.iter().enumerate() {
        if i != k {
            let bytes = t.values.iter().flat_map(|v| v.to_le_bytes()).collect();
            entries.push((format!("archive/data/{i}"), bytes));
        }
    }
    let lying = zip_with_bomb_records(&entries, &[format!("archive/data/{k}")]);
    let path = scratch.write("lying.pth", &lying);
    let err = load_err(&model, &path, Format::Pth);
    assert!(matches!(err, Error::CheckpointRead { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("claims {BOMB_RECORD} bytes")),
        "{err}"
    );
}
