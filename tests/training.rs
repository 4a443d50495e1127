//! Training support: optimisation lowers the loss, checkpoints round-trip, the recipe's pieces
//! (stochastic depth, label smoothing, schedule, decay groups, clipping) behave as the reference,
//! and burn-train runs, resumes and fine-tunes.
#![cfg(feature = "train")]
#[macro_use]
mod common;

use common::{changed, temp_dir, tiny_config};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::module::Module;
use burn::optim::lr_scheduler::LrScheduler;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Distribution;
use vheat::data::{EvalTransform, TrainTransform};
use vheat::data::{ImageBatch, ImageBatcher, ImageFolder, ShapesConfig, SyntheticShapes};
use vheat::train::{
    adamw_for, clip_grad_norm, fit, latest_checkpoint, load_checkpoint, pretrained_for_fine_tuning,
    save_checkpoint, smoothed_cross_entropy, CheckpointMeta, DecayGroups, FitOptions,
    ImageClassifier, Pretrained, TrainingConfig, WarmupCosineLr,
};
use vheat::{DropPath, VHeat, VHeatConfig};

fn synthetic_batch(n: usize, seed: u64, device: &Device) -> ImageBatch {
    let shapes = SyntheticShapes::new(ShapesConfig::new(32, n, seed)).unwrap();
    ImageBatcher.batch((0..n).map(|i| shapes.get(i).unwrap()).collect(), device)
}

fn loss_of(model: &VHeat, batch: &ImageBatch) -> f32 {
    let logits = model.forward(batch.images.clone());
    smoothed_cross_entropy(logits, batch.targets.clone(), 0.0).into_scalar::<f32>()
}

per_backend! {
    fn a_few_optimisation_steps_lower_the_loss(d) {
        let ad = d.clone().autodiff();
        let model = tiny_config().init_seeded(&ad, 7).unwrap();
        let mut classifier = ImageClassifier::new(model, 0.1, Some(5.0));
        let batch = synthetic_batch(16, 3, &ad);
        let before = loss_of(&classifier.model.valid(), &synthetic_batch(16, 3, d));
        let mut optim = adamw_for(&classifier, 0.05, false);
        for _ in 0..6 {
            let (grads, _) = classifier.gradients(batch.clone());
            classifier = optim.step(2e-3, classifier, grads);
        }
        let after = loss_of(&classifier.model.valid(), &synthetic_batch(16, 3, d));
        println!("loss {before:.4} -> {after:.4}");
        assert!(before.is_finite() && after.is_finite());
        assert!(after < 0.8 * before, "loss {before} -> {after}");
    }

    fn a_saved_checkpoint_reloads_to_identical_logits(d) {
        let ad = d.clone().autodiff();
        let config = tiny_config();
        let mut classifier = ImageClassifier::new(config.init_seeded(&ad, 1).unwrap(), 0.1, None);
        let mut optim = adamw_for(&classifier, 0.05, false);
        // Move the weights away from the initialisation first.
        for _ in 0..2 {
            let (grads, _) = classifier.gradients(synthetic_batch(8, 1, &ad));
            classifier = optim.step(1e-3, classifier, grads);
        }
        let model = classifier.model.valid();
        let dir = temp_dir(&format!("ckpt-{}", format!("{d:?}").len()));
        let path = dir.join("model.bpk");
        let meta = CheckpointMeta::new(config.clone(), SyntheticShapes::class_names(), 32, 1.0);
        save_checkpoint(&model, &meta, &path).unwrap();
        let (loaded, loaded_meta) = load_checkpoint(&path, d).unwrap();
        assert_eq!(loaded_meta, meta);
        let x = synthetic_batch(4, 9, d).images;
        let a = common::values(model.forward(x.clone()));
        let b = common::values(loaded.forward(x));
        assert_eq!(a, b, "logits after reload differ");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn global_norm_clipping_bounds_the_gradient(d) {
        let ad = d.clone().autodiff();
        let classifier = ImageClassifier::new(tiny_config().init_seeded(&ad, 2).unwrap(), 0.0, None);
        let out = classifier.forward_classification(synthetic_batch(8, 4, &ad), 0.0);
        let mut grads = GradientsParams::from_grads(out.loss.backward(), &classifier);
        let norm = clip_grad_norm(&classifier, &mut grads, 1e-3).unwrap().into_scalar::<f32>();
        assert!(norm > 1e-3, "the test needs a gradient larger than the bound ({norm})");
        // The norm after clipping is the bound.
        let after = clip_grad_norm(&classifier, &mut grads, 1e9).unwrap().into_scalar::<f32>();
        assert!((after - 1e-3).abs() < 1e-5, "norm after clipping {after}");
    }
}

#[test]
fn drop_path_acts_only_in_training() {
    let plain = common::cpu();
    let ad = plain.clone().autodiff();
    let x = || Tensor::<3>::ones([400, 2, 3], &ad);
    let dp = DropPath::new(0.5);
    let dropped = |t: Tensor<3>| {
        let v = common::values(t);
        v.chunks(6).filter(|c| c.iter().all(|&e| e == 0.0)).count()
    };
    // Training mode on an autodiff device: about half the samples dropped, the rest scaled 2×.
    ad.seed(5);
    let y = dp.forward(x());
    let n = dropped(y.clone());
    assert!((120..=280).contains(&n), "{n} of 400 dropped");
    assert!(common::values(y)
        .iter()
        .all(|&v| v == 0.0 || (v - 2.0).abs() < 1e-6));
    // Evaluation mode: identity.
    let dp_eval = dp.valid();
    assert_eq!(dropped(dp_eval.forward(x())), 0);
    assert_eq!(common::values(dp_eval.forward(x())), common::values(x()));
    // Without autodiff (inference): identity even in training mode.
    let y = DropPath::new(0.5).forward(Tensor::<3>::ones([400, 2, 3], &plain));
    assert_eq!(dropped(y), 0);

    // The per-sample factors the blocks fold into their residual sums: 0 or 1/keep, about
    // half of each, drawn only where `forward` would act.
    ad.seed(6);
    let factors = common::values(dp.sample_scale(400, &ad).expect("training on autodiff"));
    assert_eq!(factors.len(), 400);
    assert!(factors.iter().all(|&v| v == 0.0 || v == 2.0), "{factors:?}");
    let zeros = factors.iter().filter(|&&v| v == 0.0).count();
    assert!((120..=280).contains(&zeros), "{zeros} of 400 dropped");
    assert!(dp_eval.sample_scale(400, &ad).is_none(), "evaluation");
    assert!(
        DropPath::new(0.5).sample_scale(400, &plain).is_none(),
        "no autodiff"
    );
    assert!(
        DropPath::new(0.0).sample_scale(400, &ad).is_none(),
        "probability 0"
    );
}

#[test]
fn label_smoothing_is_timms_formula() {
    let d = common::cpu();
    let logits = Tensor::<2>::from_floats([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]], &d);
    let targets = Tensor::<1, Int>::from_ints([0, 1], &d);
    let logp = |row: [f64; 3]| {
        let m = row.iter().cloned().fold(f64::MIN, f64::max);
        let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        row.map(|v| v - lse)
    };
    let rows = [logp([2.0, 0.5, -1.0]), logp([0.0, 0.0, 3.0])];
    for s in [0.0, 0.1, 0.3] {
        let expected = rows
            .iter()
            .zip([0usize, 1])
            .map(|(r, y)| (1.0 - s) * -r[y] + s * -(r.iter().sum::<f64>() / 3.0))
            .sum::<f64>()
            / 2.0;
        let got = smoothed_cross_entropy(logits.clone(), targets.clone(), s).into_scalar::<f32>();
        assert!(
            (got as f64 - expected).abs() < 1e-5,
            "s={s}: {got} vs {expected}"
        );
    }
}

#[test]
fn warmup_cosine_schedule_follows_timm() {
    let mut s = WarmupCosineLr::new(1e-3, 1e-5, 1e-6, 10, 110);
    let lrs: Vec<f64> = (0..120).map(|_| s.step()).collect();
    assert!((lrs[0] - 1e-6).abs() < 1e-12);
    assert!((lrs[5] - (1e-6 + 5.0 * (1e-3 - 1e-6) / 10.0)).abs() < 1e-12);
    assert!((lrs[10] - 1e-3).abs() < 1e-12);
    // Half way through the cosine: the midpoint of base and min.
    assert!((lrs[60] - (1e-3 + 1e-5) / 2.0).abs() < 1e-9);
    assert!(lrs[10..110].windows(2).all(|w| w[1] <= w[0]));
    assert!(lrs[110..].iter().all(|&v| (v - 1e-5).abs() < 1e-15));
    // Its position survives a checkpoint.
    let mut a = WarmupCosineLr::new(1e-3, 1e-5, 1e-6, 10, 110);
    for _ in 0..37 {
        a.step();
    }
    let mut b = WarmupCosineLr::new(1e-3, 1e-5, 1e-6, 10, 110);
    b.load_record(a.to_record());
    assert_eq!(b.steps_taken(), 37);
    assert_eq!(a.step(), b.step());
}

#[test]
fn weight_decay_skips_norms_biases_and_fves_like_the_reference() {
    let d = common::cpu();
    let model = VHeatConfig::new(vec![1, 1], vec![8, 16])
        .with_img_size(32)
        .with_num_classes(3)
        .with_layer_scale(Some(1e-5))
        .init(&d);
    let classifier = ImageClassifier::new(model, 0.0, None);
    let groups = DecayGroups::of(&classifier, false);
    let has = |v: &[String], p: &str| v.iter().any(|k| k == p);
    for p in [
        "model.layers.0.blocks.0.op.linear.weight",
        "model.layers.0.blocks.0.op.dwconv.weight",
        "model.layers.0.blocks.0.mlp.fc1.weight",
        "model.patch_embed.conv1.weight",
        "model.classifier.fc.weight",
    ] {
        assert!(
            has(&groups.decay, p),
            "{p} should be decayed: {:?}",
            groups.decay
        );
    }
    for p in [
        "model.layers.0.blocks.0.op.linear.bias",
        "model.layers.0.blocks.0.norm1.gamma",
        "model.layers.0.blocks.0.norm1.beta",
        "model.layers.0.blocks.0.gamma1",
        "model.layers.0.freq_embed.weight",
        "model.classifier.fc.bias",
    ] {
        assert!(
            has(&groups.no_decay, p),
            "{p} should not be decayed: {:?}",
            groups.no_decay
        );
    }
    // Every parameter is in exactly one group.
    let total = groups.decay.len() + groups.no_decay.len();
    let mut count = 0;
    struct Count<'a>(&'a mut usize);
    impl burn::module::ModuleVisitor for Count<'_> {
        fn visit_float<const D: usize>(&mut self, _: &burn::module::Param<Tensor<D>>) {
            *self.0 += 1;
        }
    }
    classifier.visit(&mut Count(&mut count));
    assert_eq!(total, count);
    // The reference's exact rule decays the FVEs.
    let strict = DecayGroups::of(&classifier, true);
    assert!(has(&strict.decay, "model.layers.0.freq_embed.weight"));
}

#[test]
fn training_recipe_rejects_bad_numbers() {
    let ok = TrainingConfig::default();
    assert!(ok.validate().is_ok());
    for bad in [
        changed(ok.clone(), |c| c.epochs = 0),
        changed(ok.clone(), |c| c.batch_size = 0),
        changed(ok.clone(), |c| c.lr = f64::NAN),
        changed(ok.clone(), |c| c.label_smoothing = 1.0),
        changed(ok.clone(), |c| c.clip_grad = Some(0.0)),
    ] {
        assert!(
            matches!(
                bad.validate(),
                Err(vheat::Error::InvalidTrainingOption { .. })
            ),
            "{bad:?}"
        );
    }
}

fn quick_recipe(epochs: usize) -> TrainingConfig {
    changed(TrainingConfig::default(), |c| {
        c.epochs = epochs;
        c.batch_size = 16;
        c.lr = 2e-3;
        c.warmup_epochs = 0.5;
        c.num_workers = 0;
    })
}

#[test]
fn learner_trains_checkpoints_and_resumes() {
    let d = common::cpu();
    let dir = temp_dir("fit");
    let train = SyntheticShapes::new(ShapesConfig::new(32, 64, 1)).unwrap();
    let valid = SyntheticShapes::new(ShapesConfig::new(32, 32, 2)).unwrap();
    let model = tiny_config().init_seeded(&d, 3).unwrap();
    let options = FitOptions::new(&dir, d.clone());
    let report = fit(
        model,
        train.clone(),
        valid.clone(),
        &quick_recipe(1),
        &options,
    )
    .unwrap();
    assert_eq!(report.epochs.len(), 1);
    let e = &report.epochs[0];
    assert_eq!(e.epoch, 1);
    assert!(e.valid_accuracy.is_some_and(|a| (0.0..=100.0).contains(&a)));
    assert!(e.train_loss.is_some_and(f64::is_finite));
    assert_eq!(latest_checkpoint(&dir), Some(1));
    // The returned model is out of training mode: no autodiff, deterministic.
    let x = synthetic_batch(2, 5, &d).images;
    assert_eq!(
        common::values(report.model.forward(x.clone())),
        common::values(report.model.forward(x))
    );

    // Resume: a 2-epoch run continues after epoch 1 and runs only epoch 2.
    let model = tiny_config().init_seeded(&d, 99).unwrap();
    let report = fit(
        model,
        train,
        valid,
        &quick_recipe(2),
        &options.clone().with_resume(true),
    )
    .unwrap();
    assert_eq!(report.resumed_from, 1);
    assert_eq!(report.epochs.len(), 1);
    assert_eq!(report.epochs[0].epoch, 2);
    assert_eq!(latest_checkpoint(&dir), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn learner_trains_data_parallel_on_two_cpu_devices() {
    let d = common::cpu();
    let dir = temp_dir("multi");
    let train = SyntheticShapes::new(ShapesConfig::new(32, 64, 1)).unwrap();
    let valid = SyntheticShapes::new(ShapesConfig::new(32, 16, 2)).unwrap();
    let model = tiny_config().init_seeded(&d, 3).unwrap();
    let options = FitOptions::new(&dir, d.clone()).with_devices(vec![d.clone(), d.clone()]);
    let report = fit(model, train, valid, &quick_recipe(1), &options).unwrap();
    assert_eq!(report.epochs.len(), 1);
    assert!(report.epochs[0].valid_accuracy.is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fine_tuning_starts_from_a_reference_pth_with_a_new_head() {
    let d = common::cpu();
    let config = common::fixture_config("micro_tiny.json");
    let (model, new_config) = pretrained_for_fine_tuning(
        &Pretrained::Pytorch(common::fixture("micro_tiny.pth"), config.clone()),
        3,
        &d,
    )
    .unwrap();
    assert_eq!(model.num_classes(), 3);
    assert_eq!(new_config.num_classes, 3);
    // The backbone is the checkpoint's: its features match a strict load of the same file.
    let reference = VHeat::load_pytorch(common::fixture("micro_tiny.pth"), &config, &d).unwrap();
    let x = Tensor::<4>::random([1, 3, 64, 64], Distribution::Default, &d);
    assert_eq!(
        common::values(model.forward_head(model.forward_features(x.clone()), true)),
        common::values(reference.forward_head(reference.forward_features(x), true))
    );

    // A configuration that does not fit is an error, not a silent partial load.
    let wrong = VHeatConfig::new(vec![1, 1, 2, 1], vec![8, 16, 32, 64]).with_img_size(64);
    assert!(pretrained_for_fine_tuning(
        &Pretrained::Pytorch(common::fixture("micro_tiny.pth"), wrong),
        3,
        &d
    )
    .is_err());

    // One short epoch on a tiny image folder.
    let root = temp_dir("finetune-data");
    for (c, class) in ["circles", "squares", "stripes"].iter().enumerate() {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        let shapes = SyntheticShapes::new(ShapesConfig::new(48, 24, 7)).unwrap();
        for i in 0..3 {
            let (rgb, _) = shapes.render_rgb([0, 2, 7][c] + 8 * i);
            let bytes = rgb.iter().map(|v| (v * 255.0) as u8).collect();
            image::RgbImage::from_raw(48, 48, bytes)
                .unwrap()
                .save(dir.join(format!("{i}.png")))
                .unwrap();
        }
    }
    let (train, val) = ImageFolder::open_split(&root, 0.34, 0).unwrap();
    assert_eq!(train.classes, ["circles", "squares", "stripes"]);
    let out = temp_dir("finetune-out");
    let report = fit(
        model,
        train.train_dataset(TrainTransform::new(64), 0),
        val.eval_dataset(EvalTransform::new(64)),
        &changed(quick_recipe(1), |c| c.batch_size = 3),
        &FitOptions::new(&out, d.clone()),
    )
    .unwrap();
    assert_eq!(report.epochs.len(), 1);
    assert_eq!(report.model.num_classes(), 3);
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn empty_datasets_and_missing_devices_are_errors() {
    let d = common::cpu();
    let valid = SyntheticShapes::new(ShapesConfig::new(32, 8, 2)).unwrap();
    let dir = temp_dir("errors");
    let empty: Vec<vheat::data::ImageItem> = Vec::new();
    let empty = burn::data::dataset::InMemDataset::new(empty);
    let err = fit(
        tiny_config().init(&d),
        empty,
        valid.clone(),
        &quick_recipe(1),
        &FitOptions::new(&dir, d.clone()),
    )
    .unwrap_err();
    // Issue 28, case 14: named as an empty set, not as an invalid model configuration.
    assert!(
        matches!(&err, vheat::Error::EmptyDataset { split, .. } if split == "training"),
        "{err}"
    );
    assert!(err.to_string().contains("training set is empty"), "{err}");
    let err = fit(
        tiny_config().init(&d),
        valid.clone(),
        valid,
        &quick_recipe(1),
        &FitOptions::new(&dir, d.clone()).with_devices(vec![]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no training device"), "{err}");
    assert_eq!(
        Dataset::len(&SyntheticShapes::new(ShapesConfig::new(32, 3, 0)).unwrap()),
        3
    );
    let _ = std::fs::remove_dir_all(&dir);
}
