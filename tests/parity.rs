//! Forward parity against the official PyTorch implementation: stem, every stage, features,
//! logits, the inference form and the resized FVEs, for every fixture model and input.

#[macro_use]
mod common;

use burn::prelude::*;
use common::*;
use vheat::hco::resize_bicubic;
use vheat::VHeat;

fn check_input_tag(model: &VHeat, fx: &Tensors, tag: &str, d: &Device) {
    let input = fx.get::<4>(&format!("{tag}.input"), d);
    let (stem, stages) = model.forward_stages(input.clone());
    assert_matches(&format!("{tag}.stem"), stem, fx, &format!("{tag}.stem"));
    for (i, s) in stages.into_iter().enumerate() {
        let key = format!("{tag}.stage{i}");
        assert_matches(&key, s, fx, &key);
    }
    let features = model.forward_features(input.clone());
    assert_matches(
        &format!("{tag}.features"),
        features,
        fx,
        &format!("{tag}.features"),
    );
    let logits = model.try_forward(input).expect("valid input");
    assert_matches(
        &format!("{tag}.logits"),
        logits,
        fx,
        &format!("{tag}.logits"),
    );
}

per_backend! {
fn micro_tiny_x64_matches_reference(d) {
    let config = fixture_config("micro_tiny.json");
    let model = VHeat::load_pytorch(fixture("micro_tiny.pth"), &config, d).unwrap();
    let fx = Tensors::open("micro_tiny.io.safetensors");
    check_input_tag(&model, &fx, "x64", d);
}
}

per_backend! {
fn micro_tiny_x96_matches_reference_with_resized_fve(d) {
    let config = fixture_config("micro_tiny.json");
    let model = VHeat::load_pytorch(fixture("micro_tiny.pth"), &config, d).unwrap();
    let fx = Tensors::open("micro_tiny.io.safetensors");
    // The FVE resize alone (bicubic, align_corners = False).
    for (i, stage) in model.layers.iter().enumerate() {
        let key = format!("x96.freq_embed_resized{i}");
        let [h, w, _] = fx.raw(&key).0[..] else {
            panic!("rank")
        };
        let fve = stage.freq_embed.as_ref().unwrap().weight.val();
        assert_matches(&key, resize_bicubic(fve, h, w), &fx, &key);
    }
    check_input_tag(&model, &fx, "x96", d);
}
}

per_backend! {
fn micro_base_x32_matches_reference(d) {
    let config = fixture_config("micro_base.json");
    let model = VHeat::load_pytorch(fixture("micro_base.pth"), &config, d).unwrap();
    let fx = Tensors::open("micro_base.io.safetensors");
    check_input_tag(&model, &fx, "x32", d);
}
}

fn check_inference_form(name: &str, tag: &str, size: usize, d: &Device) {
    let config = fixture_config(&format!("{name}.json"));
    let model = VHeat::load_pytorch(fixture(&format!("{name}.pth")), &config, d).unwrap();
    let fx = Tensors::open(&format!("{name}.io.safetensors"));
    let fast = model.to_inference(size, size).unwrap();
    assert!(fast.is_inference());
    let k_exp = fast.precomputed_decays()[0][0].val();
    assert_matches(
        &format!("{name} k_exp.stage0.block0"),
        k_exp,
        &fx,
        "k_exp.stage0.block0",
    );
    let input = fx.get::<4>(&format!("{tag}.input"), d);
    let logits = fast.try_forward(input.clone()).unwrap();
    let key = format!("{tag}.logits_infer_mode");
    assert_matches(&format!("{name} {key}"), logits, &fx, &key);
    // And back: the trainable form gives the ordinary logits again.
    let back = fast.to_trainable().unwrap();
    assert!(!back.is_inference());
    assert_eq!(back.num_params(), model.num_params());
    let key = format!("{tag}.logits");
    assert_matches(
        &format!("{name} back {key}"),
        back.forward(input),
        &fx,
        &key,
    );
}

per_backend! {
fn micro_tiny_inference_form_matches_reference(d) {
    check_inference_form("micro_tiny", "x64", 64, d);
}
}

per_backend! {
fn micro_base_inference_form_matches_reference(d) {
    check_inference_form("micro_base", "x32", 32, d);
}
}
