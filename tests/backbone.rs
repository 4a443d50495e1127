//! The dense-prediction checkpoint layout (`micro_backbone`): backbone weights under
//! `backbone.` in a `{"state_dict": …}` file, next to detector keys, on a non-square 64×96 input.
//!
//! The per-level output norms (`outnorm{i}`) belong to the backbone API of a later change; here
//! they are applied by the test itself, so the check is on the stages: every stage output of a
//! non-square input, with each FVE resized bicubically to its map.

mod common;

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::store::{ModuleSnapshot, PytorchStore};
use common::*;
use vheat::weights::{load_pytorch_into, LoadOptions};

/// The checkpoint's `backbone.outnorm{i}` LayerNorms (eps 1e-5).
#[derive(Module, Debug)]
struct OutNorms {
    outnorm: Vec<LayerNorm>,
}

#[test]
fn backbone_checkpoint_reproduces_the_reference_stage_outputs() {
    let d = device();
    let config = fixture_config("micro_backbone.json").with_num_classes(0);
    let mut model = config.init(&d);
    let report = load_pytorch_into(
        &mut model,
        fixture("micro_backbone.pth"),
        &LoadOptions::lenient().with_backbone_prefix(true),
    )
    .unwrap();
    // The backbone has no classifier: only the head's LayerNorm is missing.
    assert_eq!(
        report.missing,
        vec!["classifier.norm.beta", "classifier.norm.gamma"],
        "{report}"
    );
    // Detector keys and the output norms are not the classification model's.
    assert!(
        report.unused.iter().any(|k| k.starts_with("neck.")),
        "{report}"
    );
    assert!(
        report.unused.iter().any(|k| k.starts_with("rpn_head.")),
        "{report}"
    );
    assert!(
        report.unused.iter().all(|k| !k.starts_with("layers.")),
        "{report}"
    );
    // Strictly, the same file is an error that names what does not fit.
    let mut strict = config.init(&d);
    let err = load_pytorch_into(
        &mut strict,
        fixture("micro_backbone.pth"),
        &LoadOptions::strict().with_backbone_prefix(true),
    )
    .unwrap_err();
    assert!(err.to_string().contains("rpn_head"), "{err}");

    let mut norms = OutNorms {
        outnorm: config
            .dims
            .iter()
            .map(|&c| LayerNormConfig::new(c).init(&d))
            .collect(),
    };
    let mut store = PytorchStore::from_file(fixture("micro_backbone.pth"))
        .with_top_level_key("state_dict")
        .with_key_remapping(r"^backbone\.outnorm(\d+)\.", "outnorm.$1.")
        .allow_partial(true);
    let applied = norms.load_from(&mut store).unwrap();
    assert_eq!(
        applied.applied.len(),
        8,
        "four output norms, weight and bias"
    );

    let fx = Tensors::open("micro_backbone.io.safetensors");
    let input = fx.get::<4>("input", &d);
    assert_eq!(input.dims(), [1, 3, 64, 96]);
    let (_, stages) = model.forward_stages(input);
    for (i, (stage, norm)) in stages.into_iter().zip(&norms.outnorm).enumerate() {
        let out = norm
            .forward(stage.permute([0, 2, 3, 1]))
            .permute([0, 3, 1, 2]);
        assert_matches(&format!("backbone out{i}"), out, &fx, &format!("out{i}"));
    }
}
