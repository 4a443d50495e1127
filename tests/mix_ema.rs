//! Mixup/CutMix ([`MixupConfig`], [`MixupBatcher`]), the soft-target loss and the weight
//! average ([`ModelEma`] in [`ImageClassifier`]): hand-computed cases, statistics of the draws,
//! timm/PyTorch fixtures (`scripts/mix_fixtures.py`) and checkpoint round trips.
#![cfg(feature = "train")]

mod common;

use burn::data::dataloader::batcher::Batcher;
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::train::TrainStep;
use serde::Deserialize;
use vheat::data::{
    cutmix_box, mixup_target, CutBox, ImageItem, MixDraw, MixupBatcher, MixupConfig, SplitMix64,
};
use vheat::train::{
    adamw_for, evaluate_accuracy, smoothed_cross_entropy, soft_cross_entropy, ImageClassifier,
    ModelEma,
};
use vheat::{VHeat, VHeatConfig};

fn tiny() -> VHeatConfig {
    VHeatConfig::new(vec![1, 1, 1, 1], vec![8, 16, 32, 64])
        .with_num_classes(3)
        .with_img_size(32)
        .with_drop_path_rate(0.0)
}

/// `n` items of shape `[c, h, w]` whose pixel `k` of item `i` is `i·1000 + k` (distinct values).
fn items(n: usize, c: usize, h: usize, w: usize) -> Vec<ImageItem> {
    (0..n)
        .map(|i| {
            ImageItem::new(
                (0..c * h * w).map(|k| (i * 1000 + k) as f32).collect(),
                [c, h, w],
                i % 3,
            )
        })
        .collect()
}

/// Every float parameter of a module, flattened, in visiting order, with its id.
struct Values(Vec<(ParamId, Vec<f32>)>);
impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let v = p
            .val()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        self.0.push((p.id, v));
    }
}
fn values<M: Module>(m: &M) -> Vec<(ParamId, Vec<f32>)> {
    let mut v = Values(Vec::new());
    m.visit(&mut v);
    v.0
}

// ---------------------------------------------------------------- config

#[test]
fn bad_mixup_configs_are_typed_errors() {
    let ok = MixupConfig::new(10);
    assert!(ok.validate().is_ok());
    for (bad, word) in [
        (ok.clone().with_mixup_alpha(-0.1), "mixup_alpha"),
        (ok.clone().with_cutmix_alpha(f64::NAN), "cutmix_alpha"),
        (ok.clone().with_prob(1.5), "prob"),
        (ok.clone().with_switch_prob(-0.5), "switch_prob"),
        (ok.clone().with_label_smoothing(1.0), "label_smoothing"),
        (MixupConfig::new(1), "num_classes"),
        (
            ok.clone().with_mixup_alpha(0.0).with_cutmix_alpha(0.0),
            "both",
        ),
    ] {
        let err = bad.validate().unwrap_err();
        assert!(
            matches!(err, vheat::Error::InvalidTrainingOption { .. }),
            "{err}"
        );
        assert!(err.to_string().contains(word), "{err} should name {word}");
        assert!(MixupBatcher::new(bad).is_err());
    }
    // Both alphas 0 is fine when mixing is off altogether.
    assert!(ok
        .with_mixup_alpha(0.0)
        .with_cutmix_alpha(0.0)
        .with_prob(0.0)
        .validate()
        .is_ok());
}

// ---------------------------------------------------------------- CutMix box

#[test]
fn cutmix_box_matches_hand_computed_cases() {
    // lam 0.75: ratio sqrt(0.25) = 0.5, cut 16x16 around (16, 16): rows/cols 8..24, lam 0.75.
    let (b, lam) = cutmix_box(32, 32, 0.75, 16, 16);
    assert_eq!(
        b,
        CutBox {
            y0: 8,
            y1: 24,
            x0: 8,
            x1: 24
        }
    );
    assert_eq!(lam, 0.75);
    // Same cut near a corner: rows 2-8..2+8 -> 0..10, cols 30-8..30+8 -> 22..32 (clipped),
    // area 100, lam = 1 - 100/1024.
    let (b, lam) = cutmix_box(32, 32, 0.75, 2, 30);
    assert_eq!(
        b,
        CutBox {
            y0: 0,
            y1: 10,
            x0: 22,
            x1: 32
        }
    );
    assert_eq!(lam, 1.0 - 100.0 / 1024.0);
    // lam 0: the whole side (cut 32) at (0, 0): rows/cols 0..16, a quarter of the image.
    let (b, lam) = cutmix_box(32, 32, 0.0, 0, 0);
    assert_eq!(
        b,
        CutBox {
            y0: 0,
            y1: 16,
            x0: 0,
            x1: 16
        }
    );
    assert_eq!(lam, 0.75);
    // Non-square 10x7, lam 0.5: ratio 0.7071, cut_h = int(7.07) = 7, cut_w = int(4.95) = 4;
    // centre (5, 3): rows 5-3..5+3 = 2..8, cols 3-2..3+2 = 1..5, area 24.
    let (b, lam) = cutmix_box(10, 7, 0.5, 5, 3);
    assert_eq!(
        b,
        CutBox {
            y0: 2,
            y1: 8,
            x0: 1,
            x1: 5
        }
    );
    assert_eq!(lam, 1.0 - 24.0 / 70.0);
}

#[test]
fn cutmix_pastes_the_flipped_batch_inside_the_box_only() {
    let (n, c, h, w) = (3, 2, 4, 5);
    let mut px: Vec<f32> = items(n, c, h, w)
        .into_iter()
        .flat_map(|i| i.pixels)
        .collect();
    let orig = px.clone();
    let b = CutBox {
        y0: 1,
        y1: 3,
        x0: 2,
        x1: 5,
    };
    MixDraw {
        lam: 1.0 - 6.0 / 20.0,
        cutmix: Some(b),
    }
    .apply(&mut px, [n, c, h, w]);
    for i in 0..n {
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let k = ch * h * w + y * w + x;
                    let inside = (1..3).contains(&y) && (2..5).contains(&x);
                    let src = if inside { n - 1 - i } else { i };
                    assert_eq!(px[i * c * h * w + k], (src * 1000 + k) as f32);
                    assert_eq!(orig[i * c * h * w + k], (i * 1000 + k) as f32);
                }
            }
        }
    }
}

// ---------------------------------------------------------------- Mixup

#[test]
fn mixup_only_blends_pixels_and_targets_with_the_drawn_lambda() {
    let (n, c, h, w) = (4, 3, 2, 2);
    let config = MixupConfig::new(3)
        .with_cutmix_alpha(0.0)
        .with_label_smoothing(0.1)
        .with_seed(9);
    let batcher = MixupBatcher::new(config).unwrap();
    let its = items(n, c, h, w);
    let (px, labels, shape, draw) = batcher.mix_items(&its);
    assert_eq!(shape, [n, c, h, w]);
    assert!(draw.cutmix.is_none());
    let lam = draw.lam;
    assert!(lam > 0.0 && lam < 1.0, "lam {lam}");
    let per = c * h * w;
    for i in 0..n {
        for k in 0..per {
            let a = (i * 1000 + k) as f64;
            let b = ((n - 1 - i) * 1000 + k) as f64;
            let want = lam * a + (1.0 - lam) * b;
            // f32 arithmetic on values up to ~3000: a relative 1e-6 bound is ~10 ulp.
            assert!(
                (f64::from(px[i * per + k]) - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{} vs {want}",
                px[i * per + k]
            );
        }
    }
    // Soft targets by hand: labels 0,1,2,0; off = 0.1/3, on = 0.9 + 0.1/3; partner n-1-i.
    let off = 0.1 / 3.0;
    let on = 0.9 + off;
    let batch = batcher.batch(its, &common::cpu());
    let soft = batch.soft_targets.expect("mixed batch has soft targets");
    let soft = soft
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(labels, vec![0, 1, 2, 0]);
    for i in 0..n {
        for k in 0..3 {
            let y = |l: usize| if k == l { on } else { off };
            let want = lam * y(labels[i]) + (1.0 - lam) * y(labels[n - 1 - i]);
            // f32 rounding of values <= 1.
            assert!((f64::from(soft[i * 3 + k]) - want).abs() < 1e-6);
        }
    }
    let targets = batch
        .targets
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .unwrap();
    assert_eq!(
        targets,
        vec![0, 1, 2, 0],
        "hard targets stay the original labels"
    );
}

#[test]
fn the_draw_is_a_function_of_seed_and_batch_content() {
    let b = MixupBatcher::new(MixupConfig::new(3).with_seed(5)).unwrap();
    let its = items(4, 3, 8, 8);
    let d1 = b.mix_items(&its).3;
    let d2 = b.clone().mix_items(&its).3;
    assert_eq!(d1, d2);
    let draws: Vec<MixDraw> = (0..8)
        .map(|s| {
            MixupBatcher::new(MixupConfig::new(3).with_seed(s))
                .unwrap()
                .mix_items(&its)
                .3
        })
        .collect();
    assert!(
        draws.windows(2).any(|w| w[0] != w[1]),
        "seeds change the draw"
    );
}

#[test]
fn lambda_and_switch_statistics_match_the_recipe() {
    let n = 20_000;
    let mut rng = SplitMix64::new(1);
    // Mixup only: lam ~ Beta(0.8, 0.8): mean 0.5, variance ab/((a+b)^2 (a+b+1)) = 0.0961538.
    let mix = MixupConfig::new(3).with_cutmix_alpha(0.0);
    let lams: Vec<f64> = (0..n).map(|_| mix.draw(32, 32, &mut rng).lam).collect();
    let mean = lams.iter().sum::<f64>() / n as f64;
    let var = lams.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / n as f64;
    // Standard error of the mean sqrt(0.096/20000) = 0.0022: 0.01 is 4.5 SE.
    assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
    // The variance estimate's SE is about 0.0005 for this bounded law: 0.003 is 6 SE.
    assert!((var - 0.0961538).abs() < 0.003, "var {var}");
    // Raw Beta(1, 1) (CutMix's law) is uniform: mean 1/2, variance 1/12.
    let u: Vec<f64> = (0..n).map(|_| rng.beta(1.0, 1.0)).collect();
    let um = u.iter().sum::<f64>() / n as f64;
    let uv = u.iter().map(|l| (l - um).powi(2)).sum::<f64>() / n as f64;
    // SE 0.002 and 0.0005 (as above).
    assert!(
        (um - 0.5).abs() < 0.01 && (uv - 1.0 / 12.0).abs() < 0.003,
        "{um} {uv}"
    );
    // Default recipe: CutMix in half the batches (SE 0.0035: 0.02 is 5.7 SE).
    let full = MixupConfig::new(3);
    let cut = (0..n)
        .filter(|_| full.draw(32, 32, &mut rng).cutmix.is_some())
        .count() as f64
        / n as f64;
    assert!((cut - 0.5).abs() < 0.02, "switch rate {cut}");
    // prob 0.3: 70 % of batches untouched (lam exactly 1, no box); SE 0.0032.
    let some = MixupConfig::new(3).with_prob(0.3);
    let untouched = (0..n)
        .filter(|_| {
            some.draw(32, 32, &mut rng)
                == MixDraw {
                    lam: 1.0,
                    cutmix: None,
                }
        })
        .count() as f64
        / n as f64;
    assert!((untouched - 0.7).abs() < 0.02, "untouched {untouched}");
}

// ---------------------------------------------------------------- soft CE vs PyTorch

#[derive(Deserialize)]
struct Case {
    batch: usize,
    classes: usize,
    lam: f64,
    smoothing: f64,
    logits: Vec<f32>,
    labels: Vec<usize>,
    soft_targets: Vec<f32>,
    loss: f32,
}
#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

fn fixture() -> Fixture {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/mix/soft_ce.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn soft_targets_and_soft_cross_entropy_match_timm() {
    let d = common::cpu();
    for c in fixture().cases {
        let ours = mixup_target(&c.labels, c.classes, c.lam, c.smoothing);
        for (a, b) in ours.iter().zip(&c.soft_targets) {
            // Both are f32 roundings of the same expression.
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        let logits =
            Tensor::<2>::from_data(TensorData::new(c.logits.clone(), [c.batch, c.classes]), &d);
        let t = Tensor::<2>::from_data(TensorData::new(c.soft_targets, [c.batch, c.classes]), &d);
        let loss = soft_cross_entropy(logits, t).into_scalar::<f32>();
        // log_softmax of logits up to ~10 in f32: a few ulp of a loss of order 1-10.
        assert!(
            (loss - c.loss).abs() < 1e-5 * c.loss.abs().max(1.0),
            "{loss} vs {}",
            c.loss
        );
    }
}

#[test]
fn unmixed_soft_targets_give_the_label_smoothed_loss() {
    // lam = 1 soft targets are the smoothed one-hots, whose soft CE is timm's
    // LabelSmoothingCrossEntropy: the classifier must pick the soft branch and agree.
    let d = common::cpu();
    let model = tiny().init_seeded(&d, 3).unwrap();
    let clf = ImageClassifier::new(model, 0.1, None);
    let its = items(4, 3, 32, 32)
        .into_iter()
        .map(|mut i| {
            i.pixels.iter_mut().for_each(|p| *p = (*p % 7.0) / 7.0);
            i
        })
        .collect::<Vec<_>>();
    let mut batch = vheat::data::ImageBatcher.batch(its, &d);
    let labels: Vec<usize> = vec![0, 1, 2, 0];
    let smooth = smoothed_cross_entropy(
        clf.model.forward(batch.images.clone()),
        batch.targets.clone(),
        0.1,
    )
    .into_scalar::<f32>();
    batch.soft_targets = Some(Tensor::from_data(
        TensorData::new(mixup_target(&labels, 3, 1.0, 0.1), [4, 3]),
        &d,
    ));
    let soft = clf
        .forward_classification(batch, 0.0)
        .loss
        .into_scalar::<f32>();
    // Same value by two algebraically equal f32 paths.
    assert!((soft - smooth).abs() < 1e-5, "{soft} vs {smooth}");
}

// ---------------------------------------------------------------- EMA

#[test]
fn one_update_is_d_old_plus_one_minus_d_new() {
    let d = common::cpu();
    let a = tiny().init_seeded(&d, 1).unwrap();
    let b = tiny().init_seeded(&d, 2).unwrap();
    let decay = 0.9;
    let ema = ModelEma::new(&a, decay, false).unwrap();
    let (va, vb) = (values(&a), values(&b));
    // Fresh ids: never shared with the source model (the optimizer keys on ids).
    for ((ia, _), (ie, _)) in va.iter().zip(values(&ema.model).iter()) {
        assert_ne!(ia, ie);
    }
    let ema = ema.update(&b);
    assert_eq!(ema.num_updates(), 1);
    let ve = values(&ema.model);
    assert_eq!(ve.len(), va.len());
    for ((pa, pb), pe) in va.iter().zip(&vb).zip(&ve) {
        for ((x, y), e) in pa.1.iter().zip(&pb.1).zip(&pe.1) {
            let want = decay * f64::from(*x) + (1.0 - decay) * f64::from(*y);
            // f32 multiply-add of weights of order 1: 1e-6 absolute.
            assert!((f64::from(*e) - want).abs() < 1e-6, "{e} vs {want}");
        }
    }
    assert!(ModelEma::new(&a, 1.5, false).is_err());
    assert!(ModelEma::new(&a, -0.1, true).is_err());
}

#[test]
fn warmup_decay_follows_min_d_one_plus_t_over_ten_plus_t() {
    let d = common::cpu();
    let start = tiny().init_seeded(&d, 1).unwrap();
    let targets: Vec<VHeat> = (2..5).map(|s| tiny().init_seeded(&d, s).unwrap()).collect();
    let mut ema = ModelEma::new(&start, 0.9999, true).unwrap();
    // (1 + t)/(10 + t) for t = 0, 1, 2, all below 0.9999.
    let decays = [1.0 / 10.0, 2.0 / 11.0, 3.0 / 12.0];
    for (t, want) in decays.iter().enumerate() {
        assert!((ema.decay_at(t as u64) - want).abs() < 1e-15);
    }
    assert_eq!(ema.decay_at(1_000_000), 0.9999);
    let mut expect: Vec<Vec<f64>> = values(&start)
        .into_iter()
        .map(|(_, v)| v.into_iter().map(f64::from).collect())
        .collect();
    for (m, dt) in targets.iter().zip(decays) {
        ema = ema.update(m);
        for (e, (_, v)) in expect.iter_mut().zip(values(m)) {
            for (x, y) in e.iter_mut().zip(v) {
                *x = dt * *x + (1.0 - dt) * f64::from(y);
            }
        }
    }
    assert_eq!(ema.num_updates(), 3);
    for (e, (_, got)) in expect.iter().zip(values(&ema.model)) {
        for (x, y) in e.iter().zip(got) {
            // Three f32 blends: 3e-6 absolute on weights of order 1.
            assert!((x - f64::from(y)).abs() < 3e-6, "{x} vs {y}");
        }
    }
}

#[test]
fn the_optimizer_never_touches_the_ema_and_optimize_updates_it() {
    let ad = common::cpu().autodiff();
    let model = tiny().init_seeded(&ad, 1).unwrap();
    let clf = ImageClassifier::new(model, 0.1, Some(5.0))
        .with_ema(0.5, false)
        .unwrap();
    let its = items(4, 3, 32, 32)
        .into_iter()
        .map(|mut i| {
            i.pixels.iter_mut().for_each(|p| *p = (*p % 11.0) / 11.0);
            i
        })
        .collect::<Vec<_>>();
    let batch = vheat::data::ImageBatcher.batch(its, &ad);
    let (grads, _) = clf.gradients(batch.clone());
    let ema_before = values(clf.ema_model().unwrap());
    for (id, _) in &ema_before {
        assert!(grads_has(&grads, *id, clf.ema_model().unwrap()).is_none());
    }
    let model_before = values(&clf.model);
    let mut optim = adamw_for(&clf, 0.05, false);
    // A plain optimizer step (with weight decay 0.05): the EMA is unchanged, the model is not.
    let stepped = optim.step(1e-2, clf.clone(), grads);
    assert_eq!(values(stepped.ema_model().unwrap()), ema_before);
    assert_ne!(values(&stepped.model), model_before);
    // TrainStep::optimize: step, then ema = 0.5·old + 0.5·new model.
    let (grads, _) = clf.gradients(batch);
    let mut optim = adamw_for(&clf, 0.05, false);
    let next = TrainStep::optimize(clf, &mut optim, 1e-2.into(), grads);
    let new_model = values(&next.model);
    let ema_after = values(next.ema_model().unwrap());
    assert_eq!(next.ema.as_ref().unwrap().num_updates(), 1);
    for ((old, new), got) in ema_before.iter().zip(&new_model).zip(&ema_after) {
        for ((o, n), g) in old.1.iter().zip(&new.1).zip(&got.1) {
            let want = 0.5 * f64::from(*o) + 0.5 * f64::from(*n);
            // One f32 blend.
            assert!((f64::from(*g) - want).abs() < 1e-6);
        }
    }
}

/// The gradient of the EMA parameter `id` of `m`, if any (looked up at its rank).
fn grads_has(grads: &GradientsParams, id: ParamId, m: &VHeat) -> Option<()> {
    struct Find<'a> {
        grads: &'a GradientsParams,
        id: ParamId,
        found: bool,
    }
    impl ModuleVisitor for Find<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if p.id == self.id && self.grads.get::<D>(p.id).is_some() {
                self.found = true;
            }
        }
    }
    let mut f = Find {
        grads,
        id,
        found: false,
    };
    m.visit(&mut f);
    f.found.then_some(())
}

#[test]
fn the_ema_survives_a_save_and_load_of_the_classifier() {
    let d = common::cpu();
    let a = tiny().init_seeded(&d, 1).unwrap();
    let b = tiny().init_seeded(&d, 2).unwrap();
    let clf = ImageClassifier::new(a, 0.1, None)
        .with_ema(0.9, true)
        .unwrap();
    let mut clf = clf;
    clf.model = b;
    let clf = clf.update_ema().update_ema();
    let dir = std::env::temp_dir().join(format!("vheat-mix-ema-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("clf.bpk");
    clf.clone().save_file(&path).unwrap();
    let fresh = ImageClassifier::new(tiny().init_seeded(&d, 7).unwrap(), 0.1, None)
        .with_ema(0.9, true)
        .unwrap();
    // The loaded tensors are read lazily from the file: remove it only after the checks.
    let loaded = fresh.load_file(&path);
    assert_eq!(loaded.ema.as_ref().unwrap().num_updates(), 2);
    let strip = |v: Vec<(ParamId, Vec<f32>)>| v.into_iter().map(|x| x.1).collect::<Vec<_>>();
    assert_eq!(
        strip(values(loaded.ema_model().unwrap())),
        strip(values(clf.ema_model().unwrap()))
    );
    assert_eq!(strip(values(&loaded.model)), strip(values(&clf.model)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn evaluate_accuracy_is_batching_invariant_and_checks_its_input() {
    let d = common::cpu();
    let model = tiny().init_seeded(&d, 1).unwrap();
    let its = items(5, 3, 32, 32)
        .into_iter()
        .map(|mut i| {
            i.pixels.iter_mut().for_each(|p| *p = (*p % 13.0) / 13.0);
            i
        })
        .collect::<Vec<_>>();
    let ds = burn::data::dataset::InMemDataset::new(its.clone());
    // The predictions, image by image, counted here.
    let correct = its
        .iter()
        .filter(|i| {
            let p = model
                .forward(i.to_tensor(&d))
                .argmax(1)
                .into_scalar::<i64>();
            p as usize == i.label
        })
        .count();
    let want = 100.0 * correct as f64 / 5.0;
    for bs in [1, 2, 5, 8] {
        assert_eq!(evaluate_accuracy(&model, &ds, bs, &d).unwrap(), want);
    }
    assert!(evaluate_accuracy(&model, &ds, 0, &d).is_err());
    let empty = burn::data::dataset::InMemDataset::<ImageItem>::new(vec![]);
    assert!(evaluate_accuracy(&model, &empty, 4, &d).is_err());
}
