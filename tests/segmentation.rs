//! The segmentation example's pieces at CI size: the FPN head on a vHeat backbone, the
//! per-pixel loss, the mIoU metric, the synthetic shapes, and a few training steps.

#[macro_use]
mod common;

use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::Distribution;
use common::*;
use vheat::data::{IMAGENET_MEAN, IMAGENET_STD};
use vheat::dense::{
    pixel_cross_entropy, resize_bilinear, ConfusionMatrix, FpnHeadConfig, SegmentationModel,
    ShapeMasks, ShapeMasksConfig, MASK_CLASSES,
};
use vheat::{Error, Indices, VHeatConfig};

/// A backbone small enough for CI: four stages of one block, widths 8…64, with output norms.
fn tiny_model(d: &Device, seed: u64) -> SegmentationModel {
    let backbone = VHeatConfig::new(vec![1, 1, 1, 1], vec![8, 16, 32, 64])
        .with_num_classes(0)
        .with_img_size(32)
        .with_drop_path_rate(0.0)
        .init_seeded(d, seed)
        .unwrap()
        .with_output_norms(Indices::All)
        .unwrap();
    SegmentationModel::new(backbone, MASK_CLASSES.len(), 16).unwrap()
}

per_backend! {
/// A few AdamW steps on one non-square batch: shapes are right and the loss goes down.
fn segmentation_trains_at_ci_size(d) {
    let ad = d.clone().autodiff();
    let mut model = tiny_model(&ad, 3);
    let (images, masks) = ShapeMasks::new(ShapeMasksConfig::new(32, 48), 11).batch(4, &ad);
    assert_eq!(images.dims(), [4, 3, 32, 48]);
    assert_eq!(masks.dims(), [4, 32, 48]);
    let logits = model.forward(images.clone()).unwrap();
    assert_eq!(logits.dims(), [4, 4, 32, 48]);

    let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
    let mut losses = Vec::new();
    for _ in 0..8 {
        let loss = model.loss(images.clone(), masks.clone()).unwrap();
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(3e-3, model, grads);
    }
    println!("losses: {losses:?}");
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    // Eight steps on one batch must fit it noticeably; a broken gradient path would not.
    assert!(losses[7] < 0.8 * losses[0], "loss did not decrease: {losses:?}");

    let eval = model.valid();
    let (images, masks) = ShapeMasks::new(ShapeMasksConfig::new(32, 48), 11).batch(4, &d.clone());
    let pred = eval.predict(images).unwrap();
    assert_eq!(pred.dims(), [4, 32, 48]);
    let mut cm = ConfusionMatrix::new(4);
    cm.update_tensors(pred, masks).unwrap();
    let miou = cm.mean_iou();
    assert!((0.0..=1.0).contains(&miou), "{miou}");
}

/// The head's matrix-product bilinear resize gives Burn's `interpolate` values (up, down,
/// one axis only), and its gradient is the adjoint of the forward map.
fn bilinear_resize_matches_interpolate_and_differentiates(d) {
    for ([h, w], [oh, ow]) in [([5, 7], [9, 13]), ([9, 13], [4, 6]), ([8, 8], [16, 16]), ([3, 5], [3, 11])] {
        let x = Tensor::<4>::random([2, 3, h, w], Distribution::Default, d);
        let ours = resize_bilinear(x.clone(), oh, ow);
        let burn = interpolate(
            x,
            InterpolateOptions::new(InterpolateMode::Bilinear)
                .with_output_size([oh, ow])
                .with_align_corners(false),
        );
        // Each output is a sum of at most four products of values in [0, 1): float32 rounding
        // in a different order stays far below 1e-6.
        assert_close_tol(
            &format!("bilinear {h}x{w} -> {oh}x{ow}"),
            &values(ours.clone()),
            &ours.dims(),
            &values(burn.clone()),
            &burn.dims(),
            1e-6,
            0.0,
        );
    }
    // Backward on every backend (Burn's GPU kernels have none for bilinear). The map is linear,
    // so ∂Σ(g ⊙ resize(x))/∂x_j = Σ(g ⊙ resize(e_j)): the gradient checked against forwards.
    let ad = d.clone().autodiff();
    let (h, w, oh, ow) = (3, 4, 5, 7);
    let g = Tensor::<4>::random([1, 1, oh, ow], Distribution::Default, &ad);
    let x = Tensor::<4>::random([1, 1, h, w], Distribution::Default, &ad).require_grad();
    let grads = (resize_bilinear(x.clone(), oh, ow) * g.clone()).sum().backward();
    let grad = values(x.grad(&grads).expect("gradient"));
    for j in 0..h * w {
        let mut e = vec![0f32; h * w];
        e[j] = 1.0;
        let basis = Tensor::<4>::from_data(TensorData::new(e, [1, 1, h, w]), &ad);
        let expected: f32 = (resize_bilinear(basis, oh, ow) * g.clone()).sum().into_scalar();
        // Two float32 sums of the same ≤ 35 products in different orders.
        assert!((grad[j] - expected).abs() < 1e-5, "element {j}: {} vs {expected}", grad[j]);
    }
}
}

/// Logits for inputs whose sides are not multiples of the stride come back at the image size.
#[test]
fn segmentation_handles_odd_sizes() {
    let d = cpu();
    let model = tiny_model(&d, 1);
    let x = Tensor::<4>::zeros([1, 3, 36, 52], &d);
    assert_eq!(model.forward(x.clone()).unwrap().dims(), [1, 4, 36, 52]);
    assert_eq!(model.predict(x).unwrap().dims(), [1, 36, 52]);
    let err = model
        .forward(Tensor::<4>::zeros([1, 3, 16, 52], &d))
        .unwrap_err();
    assert!(matches!(err, Error::InputTooSmall { .. }), "{err}");
}

/// The loss against values worked out by hand.
#[test]
fn pixel_cross_entropy_by_hand() {
    let d = cpu();
    // One image, two classes, 1×2 pixels: logits (0, ln 3) with target 1 → −ln(3/4);
    // logits (2, 2) with target 0 → ln 2. Mean: (ln(4/3) + ln 2) / 2.
    let logits = Tensor::<4>::from_data(
        TensorData::new(vec![0.0f32, 2.0, 3f32.ln(), 2.0], [1, 2, 1, 2]),
        &d,
    );
    let masks = Tensor::<3, Int>::from_data(TensorData::new(vec![1i64, 0], [1, 1, 2]), &d);
    let loss: f32 = pixel_cross_entropy(logits.clone(), masks)
        .unwrap()
        .into_scalar();
    let expected = ((4.0f32 / 3.0).ln() + 2f32.ln()) / 2.0;
    // float32 log-softmax of O(1) values: a few ulps.
    assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");

    let bad_id = Tensor::<3, Int>::from_data(TensorData::new(vec![2i64, 0], [1, 1, 2]), &d);
    let err = pixel_cross_entropy(logits.clone(), bad_id).unwrap_err();
    assert!(err.to_string().contains("0..2"), "{err}");
    let bad_shape = Tensor::<3, Int>::zeros([1, 2, 1], &d);
    assert!(matches!(
        pixel_cross_entropy(logits, bad_shape),
        Err(Error::InvalidInput { .. })
    ));
}

/// IoU, mIoU and pixel accuracy against counts worked out by hand.
#[test]
fn confusion_matrix_by_hand() {
    let mut cm = ConfusionMatrix::new(4);
    // truth 0 0 1 1 1 0, predicted 0 1 1 1 2 0:
    // class 0: TP 2, FN 1 (→1), FP 0 → 2/3; class 1: TP 2, FN 1 (→2), FP 1 → 2/4;
    // class 2: TP 0, FP 1 → 0; class 3 never occurs → excluded.
    cm.update(&[0, 1, 1, 1, 2, 0], &[0, 0, 1, 1, 1, 0]).unwrap();
    let iou = cm.iou();
    assert_eq!(iou[3], None);
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert!(close(iou[0].unwrap(), 2.0 / 3.0));
    assert!(close(iou[1].unwrap(), 0.5));
    assert!(close(iou[2].unwrap(), 0.0));
    assert!(close(cm.mean_iou(), (2.0 / 3.0 + 0.5) / 3.0));
    assert!(close(cm.pixel_accuracy(), 4.0 / 6.0));
    assert_eq!(cm.count(1, 2), 1);

    assert!(matches!(
        cm.update(&[0, 4], &[0, 0]),
        Err(Error::InvalidInput { .. })
    ));
    assert!(matches!(
        cm.update(&[0], &[0, 0]),
        Err(Error::InvalidInput { .. })
    ));
    assert_eq!(ConfusionMatrix::new(3).mean_iou(), 0.0);
}

/// The generator: seeded, class ids in range, every shape kind drawn, values normalised.
#[test]
fn shapes_are_seeded_and_well_formed() {
    let config = ShapeMasksConfig::new(40, 56);
    let (img_a, mask_a) = ShapeMasks::new(config.clone(), 5).sample();
    let (img_b, mask_b) = ShapeMasks::new(config.clone(), 5).sample();
    assert_eq!(img_a, img_b);
    assert_eq!(mask_a, mask_b);
    let (img_c, _) = ShapeMasks::new(config.clone(), 6).sample();
    assert_ne!(img_a, img_c);
    assert_eq!(img_a.len(), 3 * 40 * 56);
    assert_eq!(mask_a.len(), 40 * 56);

    let mut gen = ShapeMasks::new(config, 9);
    let mut pixels = [0usize; 4];
    for _ in 0..50 {
        let (img, mask) = gen.sample();
        // Colours in [0, 1], normalised with the ImageNet statistics.
        for (c, plane) in img.chunks(40 * 56).enumerate() {
            let (m, sd) = (IMAGENET_MEAN[c], IMAGENET_STD[c]);
            let range = (0.0 - m) / sd..=(1.0 - m) / sd;
            assert!(plane.iter().all(|v| range.contains(v)), "channel {c}");
        }
        assert!(mask.iter().any(|&c| c != 0), "every image holds a shape");
        for c in mask {
            pixels[c as usize] += 1;
        }
    }
    // Every class is drawn, and the three shapes, equal in expected area, in similar amounts.
    let fg = &pixels[1..];
    let (lo, hi) = (*fg.iter().min().unwrap(), *fg.iter().max().unwrap());
    assert!(lo > 0 && hi < 3 * lo, "pixels per class: {pixels:?}");
}

/// The head's configuration and inputs are checked.
#[test]
fn fpn_head_rejects_what_does_not_fit() {
    let d = cpu();
    let err = FpnHeadConfig::new(vec![], 3).try_init(&d).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
    let err = FpnHeadConfig::new(vec![8, 16], 0).try_init(&d).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
    let head = FpnHeadConfig::new(vec![8, 16], 3)
        .with_dim(4)
        .try_init(&d)
        .unwrap();
    let ok = head
        .forward(vec![
            Tensor::<4>::zeros([2, 8, 9, 13], &d),
            Tensor::<4>::zeros([2, 16, 5, 7], &d),
        ])
        .unwrap();
    assert_eq!(ok.dims(), [2, 3, 9, 13]);
    let err = head
        .forward(vec![Tensor::<4>::zeros([2, 8, 9, 13], &d)])
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    let err = head
        .forward(vec![
            Tensor::<4>::zeros([2, 8, 9, 13], &d),
            Tensor::<4>::zeros([2, 12, 5, 7], &d),
        ])
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
}
