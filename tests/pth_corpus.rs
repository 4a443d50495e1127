//! Checkpoints exactly as `torch.save` writes them (`tests/fixtures/pth_corpus/`, written with
//! PyTorch by `scripts/pth_corpus.py` from the reference's model code in a micro
//! configuration) load, and give the outputs PyTorch computed from the same file.
//!
//! Every layout the PyTorch world writes: the reference's training checkpoint (with a yacs
//! `CfgNode`, AdamW, scheduler and scaler state, EMA weights), timm's `{state_dict}` with an
//! `argparse.Namespace`, an mmengine dense-prediction checkpoint (custom objects and numpy values
//! in `meta`, the backbone under `backbone.`), a DistributedDataParallel state dict (`module.`),
//! a Lightning one (`model.`), float16, bfloat16 and float64 tensors, the legacy non-zip format,
//! and tensors that are views into one shared storage.

mod common;

use burn::prelude::*;
use common::{assert_close_tol, cpu, fixture, values, ATOL, RTOL};
use vheat::weights::{load_pytorch_into, LoadOptions};
use vheat::{Error, Indices, VHeat, VHeatConfig};

fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture("pth_corpus/expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn config() -> VHeatConfig {
    VHeatConfig::from_json(&expected()["config"].to_string()).unwrap()
}

/// The input the script used: x[c, h, w] = f32(sin(0.37 i + 0.11 c)), i = (c·32 + h)·32 + w,
/// evaluated in f64 as PyTorch did.
fn input(device: &Device) -> Tensor<4> {
    let values: Vec<f32> = (0..3 * 32 * 32)
        .map(|i| {
            let c = (i / (32 * 32)) as f64;
            (0.37 * i as f64 + 0.11 * c).sin() as f32
        })
        .collect();
    Tensor::from_data(TensorData::new(values, [1, 3, 32, 32]), device)
}

fn corpus(name: &str) -> std::path::PathBuf {
    fixture(&format!("pth_corpus/{name}"))
}

/// Loads `file` strictly with `options` and checks the logits against `expected[key]`.
fn check_logits(file: &str, options: LoadOptions, key: &str) -> vheat::weights::LoadReport {
    let device = cpu();
    let mut model = config().try_init(&device).unwrap();
    let report = load_pytorch_into(&mut model, corpus(file), &options)
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    assert!(report.is_clean(), "{file}:\n{report}");
    let logits = model.forward(input(&device));
    let want = floats(&expected()[key]);
    // The parity tolerance: the same f32 weights, another implementation's summation order.
    assert_close_tol(
        &format!("{file} ({key})"),
        &values(logits),
        &[1, want.len()],
        &want,
        &[1, want.len()],
        ATOL,
        RTOL,
    );
    report
}

#[test]
fn the_reference_training_checkpoint_loads_model_and_model_ema() {
    // `config` is a yacs CfgNode, `optimizer` an AdamW state, `scaler` and `lr_scheduler`
    // dicts: all read as data and left alone.
    check_logits("reference_train.pth", LoadOptions::strict(), "logits");
    check_logits(
        "reference_train.pth",
        LoadOptions::strict().with_key("model_ema"),
        "logits_ema",
    );
}

#[test]
fn timm_legacy_and_shared_storage_layouts_load() {
    // timm: `{state_dict, args: argparse.Namespace, metric: numpy.float64}`.
    check_logits("timm.pth", LoadOptions::strict(), "logits");
    // The legacy non-zip format.
    check_logits("legacy.pth", LoadOptions::strict(), "logits");
    // Every tensor a view of one storage (offsets), a transposed view, `.chunk` halves and a
    // stride-0 expand.
    check_logits("views.pth", LoadOptions::strict(), "logits_views");
}

#[test]
fn half_and_double_precision_load_with_the_logits_of_their_rounded_weights() {
    // PyTorch computed these logits in float32 from the stored (rounded) float16, bfloat16 or
    // float64 weights. Every float16 and bfloat16 value is exactly representable in f32, so
    // the crate's conversion adds no error and the f32 parity tolerance applies unchanged.
    // (Against the float32 file's logits, the rounding itself moves them: by up to 2^-11
    // relative per float16 weight and 2^-8 per bfloat16 weight; that is not what is tested.)
    // float64 → f32 rounds each weight to the nearest f32, as PyTorch's `.float()` does.
    for name in ["half_fp16", "half_bf16", "float64"] {
        check_logits(
            &format!("{name}.pth"),
            LoadOptions::strict(),
            &format!("logits_{name}"),
        );
    }
}

#[test]
fn a_ddp_state_dict_loads_with_module_stripped_and_said_so() {
    let report = check_logits("ddp.pth", LoadOptions::strict(), "logits");
    assert_eq!(report.stripped_prefix.as_deref(), Some("module."));
    assert!(report.to_string().contains("\"module.\""), "{report}");
    // The public constructor too.
    VHeat::load_pytorch(corpus("ddp.pth"), &config(), &cpu()).unwrap();
}

#[test]
fn a_model_prefixed_checkpoint_is_one_line_naming_the_option_then_loads_with_it() {
    let err = VHeat::load_pytorch(corpus("lightning.pth"), &config(), &cpu()).unwrap_err();
    let msg = err.to_string();
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(msg.contains("\"model.\""), "{msg}");
    assert!(msg.contains("with_strip_prefix(\"model.\")"), "{msg}");
    let Error::CheckpointMismatch { report, .. } = err else {
        panic!("{msg}")
    };
    // The full lists are in the error's data: every model key missing, every file key unused.
    assert_eq!(report.foreign_prefix.as_deref(), Some("model."));
    assert!(report.applied.is_empty());
    assert_eq!(report.missing.len(), report.unused.len(), "{report}");
    assert!(report.unused.iter().all(|k| k.starts_with("model.")));

    let report = check_logits(
        "lightning.pth",
        LoadOptions::strict().with_strip_prefix("model."),
        "logits",
    );
    assert_eq!(report.stripped_prefix.as_deref(), Some("model."));
}

#[test]
fn an_mmengine_checkpoint_names_load_backbone_and_loads_through_it() {
    let path = corpus("mmengine.pth");
    // Plainly: one line naming the function that loads it.
    let err = VHeat::load_pytorch(&path, &config(), &cpu()).unwrap_err();
    let msg = err.to_string();
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(msg.contains("\"backbone.\""), "{msg}");
    assert!(msg.contains("VHeat::load_backbone"), "{msg}");
    assert!(
        matches!(&err, Error::CheckpointMismatch { report, .. } if report.foreign_prefix.as_deref() == Some("backbone.")),
        "{msg}"
    );

    // Through `load_backbone`: `meta` holds a HistoryBuffer-like object, numpy arrays and
    // scalars and a set; the decode head's keys are reported, not loaded.
    let device = cpu();
    let config = config().with_num_classes(0);
    let (model, report) = VHeat::load_backbone(&path, &config, &device).unwrap();
    assert!(
        report.unused.iter().any(|k| k.starts_with("decode_head.")),
        "{report}"
    );
    let outs = model
        .forward_intermediates(input(&device), Indices::All)
        .unwrap();
    let last = outs.last().unwrap().clone();
    let shape = last.dims().to_vec();
    let want = floats(&expected()["last_stage"]);
    // The parity tolerance, as for the logits.
    assert_close_tol(
        "mmengine.pth last stage",
        &values(last),
        &shape,
        &want,
        &[1, want.len(), 1, 1],
        ATOL,
        RTOL,
    );
}
