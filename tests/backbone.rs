//! The dense-prediction checkpoint layout (`micro_backbone`): backbone weights under
//! `backbone.` in a `{"state_dict": …}` file, next to detector keys, on a non-square 64×96 input.
//!
//! The first test applies the per-level output norms (`outnorm{i}`) by hand, so its check is on
//! the stages: every stage output of a non-square input, with each FVE resized bicubically to its
//! map. The tests after it go through the backbone API: `VHeat::load_backbone`,
//! `LoadOptions::backbone`, `forward_intermediates`, `feature_info`, `forward_head`,
//! `reset_classifier`, output norms and `zero_pad_fve`.

#[macro_use]
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

per_backend! {
fn backbone_checkpoint_reproduces_the_reference_stage_outputs(d) {
    let config = fixture_config("micro_backbone.json").with_num_classes(0);
    let mut model = config.init(d);
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
    let mut strict = config.init(d);
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
            .map(|&c| LayerNormConfig::new(c).init(d))
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
    let input = fx.get::<4>("input", d);
    assert_eq!(input.dims(), [1, 3, 64, 96]);
    let (_, stages) = model.forward_stages(input);
    for (i, (stage, norm)) in stages.into_iter().zip(&norms.outnorm).enumerate() {
        let out = norm
            .forward(stage.permute([0, 2, 3, 1]))
            .permute([0, 3, 1, 2]);
        assert_matches(&format!("backbone out{i}"), out, &fx, &format!("out{i}"));
    }
}
}

// ---- The backbone API (issue 6): `load_backbone`, `forward_intermediates`, `feature_info`,
// output norms, the head, and the zero-padding FVE conversion. ----

use burn::prelude::*;
use vheat::{Error, Indices, OutputNorm, VHeat};

/// The `micro_tiny` checkpoint (classification layout, no output norms).
fn micro_tiny(d: &Device) -> VHeat {
    VHeat::load_pytorch(
        fixture("micro_tiny.pth"),
        &fixture_config("micro_tiny.json"),
        d,
    )
    .unwrap()
}

/// Largest |a − b| of two maps of one shape.
fn max_abs_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes");
    values(a)
        .iter()
        .zip(values(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

per_backend! {
/// The dense-prediction checkpoint through the public API: output norms are created from the
/// checkpoint, the detector keys are reported (not an error), and `forward_intermediates`
/// reproduces the reference backbone's `out0`…`out3` on the non-square 64×96 input.
fn load_backbone_reproduces_out0_to_out3(d) {
    let config = fixture_config("micro_backbone.json").with_num_classes(0);
    let (model, report) =
        VHeat::load_backbone(fixture("micro_backbone.pth"), &config, d).unwrap();
    assert_eq!(model.output_norm_indices(), vec![0, 1, 2, 3]);
    // A headless dense model: only the head's LayerNorm has no weights in the file.
    assert_eq!(
        report.missing,
        vec!["classifier.norm.beta", "classifier.norm.gamma"],
        "{report}"
    );
    assert!(report.unused.iter().any(|k| k.starts_with("neck.")), "{report}");
    assert!(report.unused.iter().any(|k| k.starts_with("rpn_head.")), "{report}");
    for root in ["patch_embed.", "layers.", "out_norms."] {
        assert!(report.unused.iter().all(|k| !k.starts_with(root)), "{report}");
    }

    let fx = Tensors::open("micro_backbone.io.safetensors");
    let input = fx.get::<4>("input", d);
    let outs = model.forward_intermediates(input.clone(), 4).unwrap();
    assert_eq!(outs.len(), 4);
    for (i, out) in outs.into_iter().enumerate() {
        assert_matches(&format!("load_backbone out{i}"), out, &fx, &format!("out{i}"));
    }
    // Requiring the norms gives the same maps; a list selects (and orders) stages as timm does.
    let deep = model
        .forward_intermediates_with(input.clone(), vec![-1, 2], OutputNorm::Apply)
        .unwrap();
    assert_eq!(deep.len(), 2);
    assert_matches("out2 via [-1, 2]", deep[0].clone(), &fx, "out2");
    assert_matches("out3 via [-1, 2]", deep[1].clone(), &fx, "out3");
    // Without the norms the deepest map is the classifier's input. Same operations in the same
    // order, so the only possible difference is a backend fusing them differently: the parity
    // tolerance covers that.
    let raw = model
        .forward_intermediates_with(input.clone(), 1, OutputNorm::Skip)
        .unwrap();
    let features = model.forward_features(input);
    let diff = max_abs_diff(raw[0].clone(), features);
    assert!(diff <= ATOL, "raw deepest map vs forward_features: {diff:e}");
    let normed = model.forward_intermediates(fx.get::<4>("input", d), 1).unwrap();
    assert!(max_abs_diff(raw[0].clone(), normed[0].clone()) > 1e-2, "Skip must skip the norm");
}

/// `LoadOptions::backbone` judges the backbone strictly and reports the rest.
fn backbone_load_options_judge_only_the_backbone(d) {
    use vheat::weights::{load_pytorch_into, LoadOptions};
    let config = fixture_config("micro_backbone.json").with_num_classes(0);
    let path = fixture("micro_backbone.pth");

    // With output norms on every stage the file loads and the detector keys are reported.
    let mut model = config.init(d).with_output_norms(Indices::All).unwrap();
    let report = load_pytorch_into(&mut model, &path, &LoadOptions::backbone()).unwrap();
    assert!(report.unused.iter().any(|k| k.starts_with("rpn_head.")), "{report}");
    let fx = Tensors::open("micro_backbone.io.safetensors");
    let outs = model.forward_intermediates(fx.get::<4>("input", d), Indices::All).unwrap();
    assert_matches("backbone() out1", outs[1].clone(), &fx, "out1");

    // A model without output norms cannot take the file's: an error that names them.
    let mut plain = config.init(d);
    let err = load_pytorch_into(&mut plain, &path, &LoadOptions::backbone()).unwrap_err();
    assert!(matches!(err, Error::CheckpointMismatch { .. }), "{err}");
    assert!(err.to_string().contains("out_norms.0"), "{err}");
    assert!(!err.to_string().contains("rpn_head"), "only backbone problems are listed: {err}");

    // A backbone of another depth is an error naming the stage, even in backbone mode.
    let mut other = config.clone();
    other.depths = vec![1, 1, 1, 1];
    let err = VHeat::load_backbone(&path, &other, d).unwrap_err();
    assert!(err.to_string().contains("layers.2."), "{err}");
}

/// The `x96` stage outputs of `micro_tiny` (FVEs resized bicubically) through
/// `forward_intermediates`, with every form of index.
fn forward_intermediates_reproduces_the_x96_stages(d) {
    let model = micro_tiny(d);
    let fx = Tensors::open("micro_tiny.io.safetensors");
    let input = fx.get::<4>("x96.input", d);
    let all = model.forward_intermediates(input.clone(), Indices::All).unwrap();
    assert_eq!(all.len(), 4);
    for (i, out) in all.into_iter().enumerate() {
        assert_matches(&format!("x96 stage{i}"), out, &fx, &format!("x96.stage{i}"));
    }
    let last_two = model.forward_intermediates(input.clone(), 2).unwrap();
    assert_matches("x96 last 2 [0]", last_two[0].clone(), &fx, "x96.stage2");
    assert_matches("x96 last 2 [1]", last_two[1].clone(), &fx, "x96.stage3");
    let ends = model.forward_intermediates(input.clone(), vec![-1, 0]).unwrap();
    assert_eq!(ends.len(), 2);
    assert_matches("x96 [-1, 0] [0]", ends[0].clone(), &fx, "x96.stage0");
    assert_matches("x96 [-1, 0] [1]", ends[1].clone(), &fx, "x96.stage3");
    let one = model.forward_intermediates(input, &[1i64][..]).unwrap();
    assert_matches("x96 [1]", one[0].clone(), &fx, "x96.stage1");
}

/// The intermediates' last map is `forward_features`, at the training size and a non-square one.
fn last_intermediate_equals_forward_features(d) {
    let model = micro_tiny(d);
    let fx = Tensors::open("micro_tiny.io.safetensors");
    let x64 = fx.get::<4>("x64.input", d);
    let last = model.forward_intermediates(x64.clone(), 1).unwrap().remove(0);
    assert_matches("x64 last intermediate", last.clone(), &fx, "x64.features");
    // Same operations in the same order; the parity tolerance only covers a backend fusing
    // them differently.
    let diff = max_abs_diff(last, model.forward_features(x64));
    assert!(diff <= ATOL, "x64: {diff:e}");
    let odd = Tensor::<4>::random([1, 3, 40, 72], burn::tensor::Distribution::Default, d);
    let all = model.forward_intermediates(odd.clone(), Indices::All).unwrap();
    let diff = max_abs_diff(all[3].clone(), model.forward_features(odd));
    assert!(diff <= ATOL, "40x72: {diff:e}");
}

/// `forward_head` with timm's semantics against the reference logits, and `reset_classifier`
/// including 0 (headless).
fn forward_head_and_reset_classifier_follow_timm(d) {
    let mut model = micro_tiny(d);
    let fx = Tensors::open("micro_tiny.io.safetensors");
    let features = fx.get::<4>("x64.features", d);
    assert_matches(
        "forward_head(features, false)",
        model.forward_head(features.clone(), false),
        &fx,
        "x64.logits",
    );
    // pre_logits: the normalised, pooled features; the classifier's Linear on them is the logits.
    let pooled = model.forward_head(features.clone(), true);
    assert_eq!(pooled.dims(), [2, model.num_features()]);
    let fc = model.classifier.fc.clone().expect("micro_tiny has a classifier");
    assert_matches("fc(pre_logits)", fc.forward(pooled.clone()), &fx, "x64.logits");

    model.reset_classifier(0);
    assert_eq!(model.num_classes(), 0);
    let headless = model.forward_head(features.clone(), false);
    assert_eq!(headless.dims(), [2, 128]);
    assert!(max_abs_diff(headless.unsqueeze(), pooled.clone().unsqueeze()) == 0.0);
    let images = fx.get::<4>("x64.input", d);
    assert_eq!(model.forward(images.clone()).dims(), [2, 128]);
    model.reset_classifier(7);
    assert_eq!(model.forward(images).dims(), [2, 7]);
    assert_eq!(model.forward_head(features, true).dims(), [2, 128]);
}
}

/// Channels and reductions per stage, and every intermediate's size `⌈H/r⌉ × ⌈W/r⌉` on
/// square, non-square and odd inputs.
#[test]
fn feature_info_matches_the_intermediates() {
    let d = cpu();
    let model = fixture_config("micro_tiny.json").init(&d);
    let info = model.feature_info();
    let chs: Vec<usize> = info.iter().map(|f| f.num_chs).collect();
    let red: Vec<usize> = info.iter().map(|f| f.reduction).collect();
    assert_eq!(chs, vec![16, 32, 64, 128]);
    assert_eq!(red, vec![4, 8, 16, 32]);
    assert_eq!(info[2].module, "layers.2");
    assert_eq!(model.num_features(), 128);
    for (h, w) in [(64usize, 64usize), (64, 96), (33, 47), (100, 37)] {
        let x = Tensor::<4>::zeros([2, 3, h, w], &d);
        let outs = model.forward_intermediates(x, Indices::All).unwrap();
        for (out, f) in outs.iter().zip(&info) {
            assert_eq!(
                out.dims(),
                [
                    2,
                    f.num_chs,
                    h.div_ceil(f.reduction),
                    w.div_ceil(f.reduction)
                ],
                "{h}x{w} at reduction {}",
                f.reduction
            );
        }
    }
}

/// timm's index semantics, and a typed error for every selection that does not fit.
#[test]
fn stage_selection_resolves_and_rejects() {
    assert_eq!(Indices::All.resolve(4).unwrap(), vec![0, 1, 2, 3]);
    assert_eq!(Indices::from(2).resolve(4).unwrap(), vec![2, 3]);
    assert_eq!(Indices::from(4).resolve(4).unwrap(), vec![0, 1, 2, 3]);
    assert_eq!(Indices::from(vec![-1, 0]).resolve(4).unwrap(), vec![0, 3]);
    assert_eq!(
        Indices::from(vec![3, -1, 1]).resolve(4).unwrap(),
        vec![1, 3]
    );
    assert_eq!(Indices::from([-4]).resolve(4).unwrap(), vec![0]);
    assert_eq!(
        Indices::from(vec![3usize, 0]).resolve(4).unwrap(),
        vec![0, 3]
    );
    assert_eq!(Indices::from(&[2usize][..]).resolve(4).unwrap(), vec![2]);
    assert_eq!(
        Indices::from(&[-2i32, 1][..]).resolve(4).unwrap(),
        vec![1, 2]
    );
    let huge = Indices::from(vec![usize::MAX]).resolve(4).unwrap_err();
    assert!(matches!(huge, Error::StageSelection { .. }), "{huge}");
    for bad in [
        Indices::Last(0),
        Indices::Last(5),
        Indices::List(vec![4]),
        Indices::List(vec![-5]),
        Indices::List(vec![]),
    ] {
        let err = bad.resolve(4).unwrap_err();
        assert!(
            matches!(err, Error::StageSelection { stages: 4, .. }),
            "{bad:?}: {err}"
        );
    }
    let msg = Indices::List(vec![0, 7])
        .resolve(4)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("index 7"), "{msg}");

    let d = cpu();
    let model = fixture_config("micro_tiny.json").init(&d);
    let x = Tensor::<4>::zeros([1, 3, 64, 64], &d);
    let err = model.forward_intermediates(x.clone(), 5).unwrap_err();
    assert!(matches!(err, Error::StageSelection { .. }), "{err}");
    let err = model
        .forward_intermediates(x.clone(), vec![-5])
        .unwrap_err();
    assert!(matches!(err, Error::StageSelection { .. }), "{err}");
    // Output norms required where the model has none.
    let err = model
        .forward_intermediates_with(x.clone(), 1, OutputNorm::Apply)
        .unwrap_err();
    assert!(err.to_string().contains("no output norm"), "{err}");
    let partial = model.clone().with_output_norms(vec![1, 2]).unwrap();
    assert_eq!(partial.output_norm_indices(), vec![1, 2]);
    assert!(partial
        .forward_intermediates_with(x.clone(), vec![1, 2], OutputNorm::Apply)
        .is_ok());
    assert!(partial
        .forward_intermediates_with(x.clone(), vec![0], OutputNorm::Apply)
        .is_err());
    // Bad images: the input checks of `check_input`.
    let err = model
        .forward_intermediates(Tensor::<4>::zeros([1, 3, 16, 64], &d), 1)
        .unwrap_err();
    assert!(matches!(err, Error::InputTooSmall { .. }), "{err}");
    let err = model
        .forward_intermediates(Tensor::<4>::zeros([1, 4, 64, 64], &d), 1)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
}

/// A dense backbone saved in Burn's format comes back with its output norms.
#[test]
fn burnpack_round_trip_keeps_output_norms() {
    let d = cpu();
    let config = fixture_config("micro_backbone.json").with_num_classes(0);
    let (model, _) = VHeat::load_backbone(fixture("micro_backbone.pth"), &config, &d).unwrap();
    let path = std::env::temp_dir().join(format!("vheat-backbone-{}.bpk", std::process::id()));
    model.save_burnpack(&path).unwrap();
    let back = VHeat::load_burnpack(&path, &config, &d);
    let _ = std::fs::remove_file(&path);
    let back = back.unwrap();
    assert_eq!(back.output_norm_indices(), vec![0, 1, 2, 3]);
    let fx = Tensors::open("micro_backbone.io.safetensors");
    let outs = back
        .forward_intermediates(fx.get::<4>("input", &d), 1)
        .unwrap();
    assert_matches("burnpack out3", outs[0].clone(), &fx, "out3");
    // A classification model still round-trips without output norms.
    let plain = fixture_config("micro_tiny.json").init(&d);
    let path = std::env::temp_dir().join(format!("vheat-plain-{}.bpk", std::process::id()));
    plain.save_burnpack(&path).unwrap();
    let back = VHeat::load_burnpack(&path, &fixture_config("micro_tiny.json"), &d);
    let _ = std::fs::remove_file(&path);
    assert!(back.unwrap().output_norm_indices().is_empty());
}

/// The reference's `interpolate4downstream.py` alternative: every FVE zero-padded to the stage
/// map of the target size, the learned values kept in the low-frequency corner.
#[test]
fn zero_pad_fve_mirrors_the_conversion_script() {
    let d = cpu();
    let model = micro_tiny(&d);
    let before: Vec<Tensor<3>> = model
        .layers
        .iter()
        .map(|s| s.freq_embed.as_ref().unwrap().weight.val())
        .collect();
    let (pt, tg) = (64usize, 128usize);
    let padded = model.zero_pad_fve(tg, tg).unwrap();
    for (i, (stage, old)) in padded.layers.iter().zip(&before).enumerate() {
        let [oh, ow, c] = old.dims();
        // The script: `F.pad(fve, (0, n, 0, n))` with n = (tg − pt) // 2^(i+2).
        let n = (tg - pt) / (1 << (i + 2));
        let new = stage.freq_embed.as_ref().unwrap().weight.val();
        assert_eq!(new.dims(), [oh + n, ow + n, c], "stage {i}");
        let corner = new.clone().slice([0..oh, 0..ow, 0..c]);
        assert_eq!(
            values(corner),
            values(old.clone()),
            "stage {i}: learned values kept"
        );
        let total: f32 = values(new.abs()).iter().sum();
        let kept: f32 = values(old.clone().abs()).iter().sum();
        assert!(
            (total - kept).abs() <= 1e-3 * kept,
            "stage {i}: the padding is zero"
        );
    }
    // At that size no resize happens: every FVE is the stage map's size.
    for (stage, [h, w]) in padded.layers.iter().zip(padded.stage_sizes(tg, tg)) {
        assert_eq!(stage.freq_embed.as_ref().unwrap().dims()[..2], [h, w]);
    }
    // A non-multiple, non-square size pads to the maps the stages really see.
    let odd = model.zero_pad_fve(100, 130).unwrap();
    let sizes: Vec<[usize; 2]> = odd
        .layers
        .iter()
        .map(|s| {
            let [h, w, _] = s.freq_embed.as_ref().unwrap().dims();
            [h, w]
        })
        .collect();
    assert_eq!(sizes, vec![[25, 33], [13, 17], [7, 9], [4, 5]]);
    // The padded model runs (and precomputes) at its size; `model` itself is unchanged.
    let x = Tensor::<4>::zeros([1, 3, tg, tg], &d);
    assert_eq!(padded.forward(x).dims(), [1, 10]);
    assert!(padded.to_inference(tg, tg).is_ok());
    assert_eq!(
        model.layers[0].freq_embed.as_ref().unwrap().dims(),
        [16, 16, 16]
    );

    // Shrinking, the inference form and a too-small size are typed errors.
    let err = model.zero_pad_fve(32, 64).unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    let err = model
        .to_inference(64, 64)
        .unwrap()
        .zero_pad_fve(128, 128)
        .unwrap_err();
    assert!(matches!(err, Error::Form(_)), "{err}");
    let err = model.zero_pad_fve(16, 128).unwrap_err();
    assert!(matches!(err, Error::InputTooSmall { .. }), "{err}");
}
