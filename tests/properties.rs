//! timm-style property matrix on micro configurations, parameter counts of the published
//! configurations, configuration files and input validation.

#[macro_use]
mod common;

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::Distribution;
use common::*;
use vheat::{Error, VHeatConfig};

fn micro_configs() -> Vec<(&'static str, VHeatConfig)> {
    vec![
        (
            "pre-norm",
            VHeatConfig::new(vec![1, 2, 1, 1], vec![8, 16, 24, 32])
                .with_post_norm(false)
                .with_num_classes(7)
                .with_img_size(64),
        ),
        (
            "post-norm+layer-scale",
            VHeatConfig::new(vec![1, 1, 2, 1], vec![8, 16, 32, 32])
                .with_post_norm(true)
                .with_layer_scale(Some(0.5))
                .with_num_classes(3)
                .with_img_size(48),
        ),
        (
            "three stages, no MLP, 2 channels in",
            VHeatConfig::new(vec![2, 1, 1], vec![6, 12, 18])
                .with_post_norm(false)
                .with_mlp_ratio(0.0)
                .with_in_chans(2)
                .with_num_classes(4)
                .with_img_size(40),
        ),
    ]
}

per_backend! {
fn output_shape_finite_and_class_count(d) {
    for (name, config) in micro_configs() {
        let model = config.init(d);
        for [h, w] in [[config.img_size, config.img_size], [48, 80], [96, 64]] {
            let x = Tensor::<4>::random([2, config.in_chans, h, w], Distribution::Default, d);
            let logits = model.try_forward(x.clone()).unwrap();
            assert_eq!(logits.dims(), [2, config.num_classes], "{name} at {h}x{w}");
            assert!(values(logits).iter().all(|v| v.is_finite()), "{name}");
            let feats = model.forward_features(x);
            let sizes = model.stage_sizes(h, w);
            let last = *sizes.last().unwrap();
            assert_eq!(
                feats.dims(),
                [2, *config.dims.last().unwrap(), last[0], last[1]],
                "{name}"
            );
            assert!(last[0] <= h.div_ceil(model.min_input_size()) + 1);
        }
    }
}
}

per_backend! {
fn every_parameter_receives_a_gradient(d) {
    let d = &d.clone().autodiff();
    for (name, config) in micro_configs() {
        let model = config.init(d);
        // Non-square input at another size than img_size: the FVE resize is in the graph too.
        let x = Tensor::<4>::random([2, config.in_chans, 48, 64], Distribution::Default, d);
        let loss = model.forward(x).powf_scalar(2.0).mean();
        let grads = loss.backward();
        let mut mapper = GradMapper {
            grads: &grads,
            missing: 0,
        };
        let g = model.clone().map(&mut mapper);
        assert_eq!(mapper.missing, 0, "{name}: parameters without gradient");
        assert_eq!(g.num_params(), model.num_params());
    }
}
}

per_backend! {
fn num_classes_is_honoured_and_reset_classifier_works(d) {
    let config = micro_configs().remove(0).1;
    let x = Tensor::<4>::random([3, 3, 64, 64], Distribution::Default, d);
    for classes in [1, 5, 1000] {
        let model = config.clone().with_num_classes(classes).init(d);
        assert_eq!(model.forward(x.clone()).dims(), [3, classes]);
        assert_eq!(model.num_classes(), classes);
    }
    let mut model = config.init(d);
    model.reset_classifier(11);
    assert_eq!(model.forward(x.clone()).dims(), [3, 11]);
    model.reset_classifier(0);
    assert_eq!(
        model.forward(x.clone()).dims(),
        [3, 32],
        "headless: pooled features"
    );
    assert_eq!(model.num_classes(), 0);
    let headless = config.with_num_classes(0).init(d);
    assert_eq!(headless.forward(x).dims(), [3, 32]);
}
}

/// Parameter counts are a property of the configuration, not of the backend: checked on the CPU.
#[test]
fn published_parameter_counts() {
    let d = &cpu();
    let counts = fixture_json("param_counts.json");
    for (name, config) in [
        ("vheat_tiny", VHeatConfig::tiny()),
        ("vheat_small", VHeatConfig::small()),
        ("vheat_base", VHeatConfig::base()),
    ] {
        let model = config.init(d);
        assert_eq!(
            model.num_params() as u64,
            counts[name].as_u64().unwrap(),
            "{name}"
        );
        let fast = model.to_inference(224, 224).unwrap();
        let key = format!("{name}_infer_mode");
        assert_eq!(
            fast.num_params() as u64,
            counts[&key].as_u64().unwrap(),
            "{key}"
        );
        // And back to the trainable count.
        assert_eq!(
            fast.to_trainable().unwrap().num_params(),
            model.num_params()
        );
    }
    assert_eq!(VHeatConfig::tiny().init(d).num_params(), 30_853_480);
}

#[test]
fn published_configurations() {
    let t = VHeatConfig::tiny();
    assert_eq!(
        (t.depths.clone(), t.dims.clone()),
        (vec![2, 2, 6, 2], vec![96, 192, 384, 768])
    );
    assert!(!t.post_norm && t.layer_scale.is_none());
    let s = VHeatConfig::small();
    assert_eq!(
        (s.depths.clone(), s.dims.clone()),
        (vec![2, 2, 18, 2], vec![96, 192, 384, 768])
    );
    assert!(s.post_norm && s.layer_scale == Some(1e-5));
    let b = VHeatConfig::base();
    assert_eq!(b.dims, vec![128, 256, 512, 1024]);
    assert!(b.post_norm && b.layer_scale == Some(1e-5));
    for c in [&t, &s, &b] {
        assert_eq!((c.num_classes, c.img_size, c.in_chans), (1000, 224, 3));
    }
    assert_eq!(VHeatConfig::by_name("vheat-S").unwrap(), s);
    assert!(matches!(
        VHeatConfig::by_name("huge"),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn config_files_load_with_defaults_and_round_trip() {
    // The fixture's config omits in_chans and mlp_ratio: they take their defaults.
    let config =
        VHeatConfig::load(fixture("micro_base.json").with_file_name("cfg-does-not-exist.json"));
    assert!(matches!(config, Err(Error::ConfigFile { .. })));
    let dir = std::env::temp_dir().join(format!("vheat-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("micro.json");
    let v = fixture_json("micro_base.json");
    std::fs::write(&path, v["config"].to_string()).unwrap();
    let c = VHeatConfig::load(&path).unwrap();
    assert_eq!(c.depths, vec![1, 2, 1, 1]);
    assert_eq!(c.layer_scale, Some(1e-5));
    assert_eq!((c.in_chans, c.mlp_ratio), (3, 4.0));
    // Burn's Config trait reads it too, and saves what it reads.
    let c2 = <VHeatConfig as burn::config::Config>::load(&path).unwrap();
    assert_eq!(c, c2);
    burn::config::Config::save(&c, dir.join("saved.json")).unwrap();
    assert_eq!(VHeatConfig::load(dir.join("saved.json")).unwrap(), c);
    // `dims` as one number doubles per stage, as the reference constructor allows.
    std::fs::write(
        &path,
        r#"{"depths": [2, 2, 6, 2], "dims": 96, "post_norm": false}"#,
    )
    .unwrap();
    let c = VHeatConfig::load(&path).unwrap();
    assert_eq!(c.dims, vec![96, 192, 384, 768]);
    assert_eq!(c, VHeatConfig::tiny());
    // Minimal: only the required keys.
    std::fs::write(&path, r#"{"depths": [1, 1], "dims": [4, 8]}"#).unwrap();
    let c = VHeatConfig::load(&path).unwrap();
    assert_eq!(
        (c.num_classes, c.img_size, c.drop_path_rate),
        (1000, 224, 0.1)
    );
    // Invalid ones are errors that say what is wrong.
    for (json, needle) in [
        (r#"{"depths": [1, 1], "dims": [4]}"#, "dims"),
        (r#"{"depths": [], "dims": []}"#, "depths"),
        (r#"{"dims": [4, 8]}"#, "depths"),
        (r#"{"depths": [1], "dims": [4], "img_size": 2}"#, "img_size"),
        (
            r#"{"depths": [1], "dims": [4], "drop_path_rate": 1.5}"#,
            "drop_path_rate",
        ),
        ("{not json", "JSON"),
    ] {
        std::fs::write(&path, json).unwrap();
        let err = VHeatConfig::load(&path).unwrap_err();
        assert!(err.to_string().contains(needle), "{json}: {err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

per_backend! {
fn invalid_inputs_are_typed_errors(d) {
    let model = micro_configs().remove(0).1.init(d);
    let wrong_channels = Tensor::<4>::zeros([1, 1, 64, 64], d);
    assert!(matches!(
        model.try_forward(wrong_channels),
        Err(Error::InvalidInput { .. })
    ));
    let too_small = Tensor::<4>::zeros([1, 3, 16, 64], d);
    assert!(matches!(
        model.try_forward(too_small),
        Err(Error::InputTooSmall { stride: 32, .. })
    ));
    assert!(model.check_input(&[1, 3, 64]).is_err());
    // The inference form runs only at the size it was computed for.
    let fast = model.to_inference(64, 64).unwrap();
    let other = Tensor::<4>::zeros([1, 3, 96, 64], d);
    assert!(matches!(
        fast.try_forward(other),
        Err(Error::InferenceSizeMismatch { stage: 0, .. })
    ));
    assert!(matches!(fast.to_inference(64, 64), Err(Error::Form(_))));
    assert!(matches!(model.to_trainable(), Err(Error::Form(_))));
    assert!(matches!(
        VHeatConfig::new(vec![1], vec![4, 8]).try_init(d),
        Err(Error::InvalidConfig(_))
    ));
}
}

per_backend! {
fn inference_form_equals_trainable_form_at_any_size(d) {
    for (name, config) in micro_configs() {
        let model = config.init(d);
        let x = Tensor::<4>::random([2, config.in_chans, 72, 40], Distribution::Default, d);
        let fast = model.to_inference(72, 40).unwrap();
        let (a, b) = (values(model.forward(x.clone())), values(fast.forward(x)));
        let shape = [a.len()];
        // Same arithmetic except k is applied once instead of per call: float32 rounding only.
        assert_close_tol(name, &b, &shape, &a, &shape, 1e-5, 1e-5);
    }
}
}
