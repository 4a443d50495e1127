//! The same seed gives the same model. Burn's random generator is global to the backend, so
//! this lives in its own test binary: no other test draws random numbers concurrently.

#[macro_use]
mod common;

use burn::prelude::*;
use common::*;
use vheat::VHeatConfig;

per_backend! {
fn deterministic_under_a_seed(d) {
    let config = VHeatConfig::new(vec![1, 1, 2, 1], vec![8, 16, 32, 32])
        .with_layer_scale(Some(0.5))
        .with_num_classes(3)
        .with_img_size(48);
    let x = Tensor::<4>::ones([2, 3, 48, 48], d);
    let a = config.init_seeded(d, 7).unwrap();
    let b = config.init_seeded(d, 7).unwrap();
    let c = config.init_seeded(d, 8).unwrap();
    let (ya, yb, yc) = (
        values(a.forward(x.clone())),
        values(b.forward(x.clone())),
        values(c.forward(x.clone())),
    );
    assert_eq!(ya, yb, "same seed, same model");
    assert_ne!(ya, yc, "another seed, another model");
    assert_eq!(ya, values(a.forward(x)), "same input, same output");
}
}

per_backend! {
/// The same seed gives the same training step: identical loss, and identical weights after one
/// AdamW update (checked through the updated model's outputs). DropPath is off, so the step
/// itself draws no random numbers; another seed gives another loss, and the step does change
/// the model.
fn same_seed_gives_the_same_training_step(d) {
    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::optim::{AdamWConfig, GradientsParams};

    let ad = d.clone().autodiff();
    let config = VHeatConfig::new(vec![1, 1], vec![8, 16])
        .with_layer_scale(Some(0.5))
        .with_num_classes(3)
        .with_img_size(32)
        .with_drop_path_rate(0.0);
    let pixels: Vec<f32> = (0..2 * 3 * 32 * 32)
        .map(|i| ((i * 37 % 101) as f32) / 50.0 - 1.0)
        .collect();
    let step = |seed: u64| {
        let model = config.init_seeded(&ad, seed).unwrap();
        let x = Tensor::<4>::from_data(TensorData::new(pixels.clone(), [2, 3, 32, 32]), &ad);
        let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &ad);
        let before = values(model.forward(x.clone()));
        let loss = CrossEntropyLossConfig::new()
            .init(&ad)
            .forward(model.forward(x.clone()), targets);
        let loss_value = values(loss.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let mut optim = AdamWConfig::new().init();
        let model = optim.step(1e-2, model, grads);
        (loss_value, before, values(model.forward(x)))
    };
    let (loss_a, before_a, after_a) = step(5);
    let (loss_b, _, after_b) = step(5);
    let (loss_c, _, _) = step(6);
    assert_eq!(loss_a, loss_b, "same seed, same loss");
    assert_eq!(after_a, after_b, "same seed, same weights after the step");
    assert_ne!(loss_a, loss_c, "another seed, another loss");
    assert_ne!(before_a, after_a, "the step changed the model");
}
}

/// Gradients are reproducible bit for bit on maps large enough that the host kernels split
/// their reductions (LayerNorm's γ/β and the depthwise taps' gradients) over several parallel
/// blocks: the partial sums are added in a fixed order, whatever the thread scheduling.
#[test]
fn large_maps_give_bitwise_identical_gradients() {
    let ad = common::cpu().autodiff();
    let config = VHeatConfig::new(vec![1, 1], vec![8, 16])
        .with_num_classes(3)
        .with_img_size(96)
        .with_drop_path_rate(0.0);
    let model = config.init_seeded(&ad, 3).unwrap();
    let pixels: Vec<f32> = (0..4 * 3 * 96 * 96)
        .map(|i| ((i * 53 % 211) as f32) / 100.0 - 1.0)
        .collect();
    let grads_of = || {
        let x = Tensor::<4>::from_data(TensorData::new(pixels.clone(), [4, 3, 96, 96]), &ad);
        let grads = model.forward(x).powf_scalar(2.0).sum().backward();
        let block = &model.layers[0].blocks[0];
        let mut all = values(block.norm1.gamma.val().grad(&grads).expect("γ gradient"));
        all.extend(values(
            block
                .op
                .dwconv
                .weight
                .val()
                .grad(&grads)
                .expect("tap gradient"),
        ));
        all.extend(values(
            block
                .op
                .linear
                .weight
                .val()
                .grad(&grads)
                .expect("weight gradient"),
        ));
        all
    };
    let first = grads_of();
    for _ in 0..4 {
        assert_eq!(grads_of(), first, "the same step gave other gradients");
    }
}
