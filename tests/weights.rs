//! Checkpoint import: both reference formats, top-level keys, strictness, and Burn's own format.

#[macro_use]
mod common;

use burn::module::Module;
use common::*;
use vheat::weights::{load_pytorch_into, load_safetensors_into, map_key, LoadOptions};
use vheat::{Error, VHeat, VHeatConfig};

fn logits(model: &VHeat, fx: &Tensors, tag: &str) -> Vec<f32> {
    let device = model.devices()[0].clone();
    values(model.forward(fx.get::<4>(&format!("{tag}.input"), &device)))
}

per_backend! {
fn pth_and_safetensors_load_the_same_model(d) {
    for (name, tag) in [("micro_tiny", "x64"), ("micro_base", "x32")] {
        let config = fixture_config(&format!("{name}.json"));
        let a = VHeat::load_pytorch(fixture(&format!("{name}.pth")), &config, d).unwrap();
        let b =
            VHeat::load_safetensors(fixture(&format!("{name}.weights.safetensors")), &config, d)
                .unwrap();
        let fx = Tensors::open(&format!("{name}.io.safetensors"));
        // Same tensors, same computation: bit-identical logits.
        assert_eq!(logits(&a, &fx, tag), logits(&b, &fx, tag), "{name}");
        let expected = fixture_json(&format!("{name}.json"))["num_params"]
            .as_u64()
            .unwrap();
        assert_eq!(a.num_params() as u64, expected, "{name} parameter count");
    }
}
}

#[test]
fn key_rules_map_every_reference_key_onto_a_parameter() {
    let config = fixture_config("micro_tiny.json");
    let keys = fixture_json("micro_tiny.json")["state_dict_keys"].clone();
    let depths = config.depths.clone();
    assert_eq!(
        map_key("freq_embed.2", &depths, false),
        "layers.2.freq_embed.weight"
    );
    assert_eq!(
        map_key("layers.2.2.0.weight", &depths, false),
        "layers.2.downsample.conv.weight"
    );
    assert_eq!(
        map_key("layers.2.1.op.to_k.0.bias", &depths, false),
        "layers.2.blocks.1.op.to_k.bias"
    );
    assert_eq!(
        map_key("patch_embed.norm2.1.weight", &depths, false),
        "patch_embed.norm2.weight"
    );
    assert_eq!(
        map_key("classifier.3.weight", &depths, false),
        "classifier.fc.weight"
    );
    assert_eq!(
        map_key("backbone.classifier.0.bias", &depths, true),
        "classifier.norm.bias"
    );
    // Every reference key maps to a distinct name (strict loading then proves each is ours).
    let mapped: std::collections::BTreeSet<String> = keys
        .as_object()
        .unwrap()
        .keys()
        .map(|k| map_key(k, &depths, false))
        .collect();
    assert_eq!(mapped.len(), keys.as_object().unwrap().len());
}

per_backend! {
fn wrong_config_is_an_error_naming_the_key(d) {
    // Another width in stage 3: every tensor of that stage mismatches.
    let mut config = fixture_config("micro_tiny.json");
    config.dims[3] = 96;
    let err = VHeat::load_pytorch(fixture("micro_tiny.pth"), &config, d).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::CheckpointMismatch { .. }), "{msg}");
    assert!(msg.contains("layers.3.blocks.0.op.linear.weight"), "{msg}");
    assert!(msg.contains("shape mismatches"), "{msg}");

    // Another class count: the classifier mismatches.
    let config = fixture_config("micro_tiny.json").with_num_classes(7);
    let err = VHeat::load_pytorch(fixture("micro_tiny.pth"), &config, d).unwrap_err();
    assert!(err.to_string().contains("classifier.fc"), "{err}");

    // A deeper stage 2: its third block is missing from the checkpoint, and the checkpoint's
    // downsample of stage 2 (at index 2) lands on an unknown block slot.
    let mut config = fixture_config("micro_tiny.json");
    config.depths[2] = 3;
    let err = VHeat::load_pytorch(fixture("micro_tiny.pth"), &config, d).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("missing in checkpoint"), "{msg}");
    assert!(msg.contains("layers.2.blocks.2.op.linear.weight"), "{msg}");

    // Another model's checkpoint altogether.
    let config = fixture_config("micro_base.json");
    assert!(VHeat::load_pytorch(fixture("micro_tiny.pth"), &config, d).is_err());
}
}

per_backend! {
fn lenient_loading_returns_the_report_and_strict_loading_changes_nothing(d) {
    let fx = Tensors::open("micro_tiny.io.safetensors");
    // A model with a head for 7 classes: strict loading fails and leaves the model untouched.
    let config = fixture_config("micro_tiny.json").with_num_classes(7);
    let mut model = config.init(d);
    let before = logits(&model, &fx, "x64");
    let err = load_pytorch_into(
        &mut model,
        fixture("micro_tiny.pth"),
        &LoadOptions::strict(),
    );
    assert!(err.is_err());
    assert_eq!(
        logits(&model, &fx, "x64"),
        before,
        "a failed load changed the model"
    );

    // Lenient loading without the classifier Linear: everything else loads, the classifier's
    // tensors are reported as unused.
    let config = fixture_config("micro_tiny.json").with_num_classes(0);
    let mut model = config.init(d);
    let report = load_pytorch_into(
        &mut model,
        fixture("micro_tiny.pth"),
        &LoadOptions::lenient(),
    )
    .unwrap();
    assert!(report.missing.is_empty(), "{report}");
    assert_eq!(
        report.unused,
        vec!["classifier.fc.bias", "classifier.fc.weight"],
        "{report}"
    );
    // Strict loading of the same pair is an error that lists those keys.
    let mut model = config.init(d);
    let err = load_pytorch_into(
        &mut model,
        fixture("micro_tiny.pth"),
        &LoadOptions::strict(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("classifier.fc.weight"), "{err}");
    // The headless model gives the reference's pooled features: logits = fc(pooled).
    let features = fx.get::<4>("x64.features", d);
    assert_eq!(model.forward_head(features, true).dims(), [2, 128]);
}
}

per_backend! {
fn state_dict_location_is_selectable(d) {
    let config = fixture_config("micro_tiny.json");
    let mut model = config.init(d);
    // The fixtures hold only "model"; asking for the EMA weights is a clear error.
    let err = load_pytorch_into(
        &mut model,
        fixture("micro_tiny.pth"),
        &LoadOptions::strict().with_key("model_ema"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("model_ema"), "{err}");
    // Explicitly under "model" works.
    load_pytorch_into(
        &mut model,
        fixture("micro_tiny.pth"),
        &LoadOptions::strict().with_key("model"),
    )
    .unwrap();
    // Reading it as a bare state dict finds one entry, "model", holding no tensors of ours.
    let err = load_pytorch_into(
        &mut model,
        fixture("micro_tiny.pth"),
        &LoadOptions::strict().bare(),
    );
    assert!(err.is_err());
}
}

per_backend! {
fn missing_and_corrupt_files_are_errors(d) {
    let config = fixture_config("micro_tiny.json");
    let err = VHeat::load_pytorch("/nonexistent/vheat.pth", &config, d).unwrap_err();
    assert!(matches!(err, Error::CheckpointRead { .. }), "{err}");
    let dir = unique_temp_dir("corrupt");
    let bad = dir.join("truncated.pth");
    let bytes = std::fs::read(fixture("micro_tiny.pth")).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 3]).unwrap();
    let err = VHeat::load_pytorch(&bad, &config, d).unwrap_err();
    assert!(matches!(err, Error::CheckpointRead { .. }), "{err}");
    let bad = dir.join("garbage.safetensors");
    std::fs::write(&bad, b"not a safetensors file").unwrap();
    let mut model = config.init(d);
    assert!(load_safetensors_into(&mut model, &bad, &LoadOptions::strict()).is_err());
    std::fs::remove_dir_all(&dir).ok();
}
}

per_backend! {
fn burnpack_round_trip_gives_identical_logits(d) {
    let config = fixture_config("micro_base.json");
    let model = VHeat::load_pytorch(fixture("micro_base.pth"), &config, d).unwrap();
    let dir = unique_temp_dir("bpk");
    let path = dir.join("micro_base.bpk");
    model.save_burnpack(&path).unwrap();
    let back = VHeat::load_burnpack(&path, &config, d).unwrap();
    let fx = Tensors::open("micro_base.io.safetensors");
    assert_eq!(logits(&model, &fx, "x32"), logits(&back, &fx, "x32"));
    // Loading it for another configuration is a clear error.
    let other = VHeatConfig::new(vec![1, 1, 1, 1], vec![8, 16, 32, 48]).with_img_size(32);
    let err = VHeat::load_burnpack(&path, &other, d).unwrap_err();
    assert!(err.to_string().contains("layers.3"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
}
