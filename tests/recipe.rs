//! The recipes: the paper's reference recipe end to end on a small ImageNet-shaped folder
//! (every piece active: RandAugment, RandomErasing, Mixup/CutMix, EMA, accumulation), its
//! numbers, the automatic defaults, and contradictory options refused before training,
//! whatever the data source. The recipe decisions are library functions
//! ([`vheat::train::RecipeOverrides`], [`vheat::train::starting_model`],
//! [`vheat::train::FitReport::best_epoch`]), tested here without the command line.
#![cfg(feature = "cli")]

mod common;

use common::temp_dir;

use clap::Parser;
use vheat::cli::train::{train, TrainArgs};
use vheat::data::ImageFolder;
use vheat::data::{save_png, AugmentPolicy, ShapesConfig, SyntheticShapes};
use vheat::train::{
    load_checkpoint, save_checkpoint, small_config, starting_model, CheckpointMeta, EpochRecord,
    FitReport, RecipeChoice, RecipeKind, RecipeOverrides, TrainingConfig,
};
use vheat::VHeatConfig;

/// An ImageNet-shaped folder: `train/` and `val/`, one sub-folder per class, 48×40 RGB JPEG-free
/// PNGs (not square, so the crops and resizes have work to do).
fn write_folder(dir: &std::path::Path) {
    let shapes = SyntheticShapes::new(ShapesConfig::new(48, 48, 5)).unwrap();
    let mut seen = [0usize; 3];
    for i in 0..48 {
        let (rgb, label) = shapes.render_rgb(i);
        if label >= 3 {
            continue;
        }
        let bytes = rgb.iter().map(|v| (v * 255.0).round() as u8).collect();
        let img = image::RgbImage::from_raw(48, 48, bytes).unwrap();
        let img = image::imageops::crop_imm(&img, 0, 4, 48, 40).to_image();
        seen[label] += 1;
        let split = if seen[label] % 4 == 0 { "val" } else { "train" };
        save_png(
            &img,
            dir.join(split)
                .join(format!("c{label}"))
                .join(format!("{i}.png")),
        )
        .unwrap();
    }
}

fn args(line: &[&str]) -> TrainArgs {
    TrainArgs::parse_from(std::iter::once("train").chain(line.iter().copied()))
}

#[test]
fn the_reference_recipe_runs_one_epoch_end_to_end_and_keeps_the_ema() {
    let dir = temp_dir("reference");
    let data = dir.join("data");
    write_folder(&data);
    let out = dir.join("run");
    let outcome = train(&args(&[
        "--data",
        data.to_str().unwrap(),
        "--recipe",
        "reference",
        "--epochs",
        "1",
        "--batch",
        "4",
        "--accum",
        "2",
        "--size",
        "32",
        "--workers",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(outcome.report.epochs.len(), 1);
    let ema_acc = outcome.report.ema_accuracy.expect("the EMA was validated");
    assert!((0.0..=100.0).contains(&ema_acc));
    // The EMA checkpoint is written and loads back as a model.
    let (ema, meta) =
        load_checkpoint(out.join("model_ema.bpk"), &burn::prelude::Device::default()).unwrap();
    assert_eq!(meta.classes.len(), 3);
    assert_eq!(ema.num_classes(), 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_reference_numbers_are_the_papers() {
    let r = TrainingConfig::reference(&VHeatConfig::tiny(), 1024);
    assert_eq!(r.epochs, 300);
    assert_eq!(r.warmup_epochs, 20.0);
    // 5e-4 per 512 images, warm-up 5e-7 and minimum 5e-6 scaled alike (exact in binary:
    // products of small powers of two and the decimal constants).
    assert!((r.lr - 1e-3).abs() < 1e-15);
    assert!((r.warmup_lr - 1e-6).abs() < 1e-18);
    assert!((r.min_lr - 1e-5).abs() < 1e-17);
    assert_eq!(r.weight_decay, 0.08);
    assert_eq!(r.label_smoothing, 0.1);
    assert_eq!(r.clip_grad, Some(5.0));
    assert_eq!(r.ema_decay, Some(0.9999));
    let m = r.mixup.clone().unwrap();
    assert_eq!(
        (m.mixup_alpha, m.cutmix_alpha, m.switch_prob),
        (0.8, 1.0, 0.5)
    );
    assert_eq!(r.augment.policy, AugmentPolicy::Reference);
    assert_eq!(
        r.augment.rand_augment.as_deref(),
        Some("rand-m9-mstd0.5-inc1")
    );
    assert_eq!(r.augment.reprob, 0.25);
    assert!(r.validate().is_ok());
}

#[test]
fn automatic_defaults_fit_the_job() {
    let small = TrainingConfig::from_scratch(32, 1000);
    assert_eq!(small.config.augment.policy, AugmentPolicy::Light);
    assert_eq!(small.config.augment.hflip, 0.0);
    assert_eq!(small.config.eval_crop_pct, 1.0);
    assert!(
        small.config.lr > 1e-3,
        "from scratch needs more than fine-tuning's 2e-4"
    );
    assert!(!small.reasons.is_empty());
    let large = TrainingConfig::from_scratch(224, 1000);
    assert_eq!(large.config.augment.policy, AugmentPolicy::Reference);
    assert_eq!(large.config.augment.rand_augment, None);
    let tune = TrainingConfig::fine_tune(224, 1000);
    assert_eq!(tune.config.lr, 2e-4);
}

#[test]
fn contradictory_options_are_typed_errors_before_training() {
    let dir = temp_dir("bad");
    let data = dir.join("data");
    write_folder(&data);
    let d = data.to_str().unwrap();
    let out = dir.join("run");
    let o = out.to_str().unwrap();
    for bad in [
        vec!["--data", d, "--reprob", "1.5", "--out", o],
        vec!["--data", d, "--scale", "0.5,1.5", "--out", o],
        vec!["--data", d, "--scale", "0.9,0.2", "--out", o],
        vec!["--data", d, "--hflip=-0.1", "--out", o],
        vec!["--data", d, "--rand-augment", "rand-m99", "--out", o],
        vec!["--data", d, "--aug", "heavy", "--out", o],
        vec!["--data", d, "--mixup=-1", "--out", o],
        vec!["--data", d, "--ema", "1.5", "--out", o],
        vec!["--data", d, "--accum", "0", "--out", o],
    ] {
        let Err(err) = train(&args(&bad)) else {
            panic!("{bad:?} was accepted");
        };
        assert_names_the_flag(&bad, &err);
        assert!(!out.join("checkpoint").exists(), "{bad:?} started training");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 28, case 14: `err` is a training-option error named by the flag the user typed (the
/// first flag of `bad` other than `--data`).
fn assert_names_the_flag(bad: &[&str], err: &vheat::Error) {
    assert!(
        matches!(err, vheat::Error::InvalidTrainingOption { .. }),
        "{bad:?}: {err}"
    );
    let flag = bad
        .iter()
        .find(|a| a.starts_with("--") && **a != "--data")
        .unwrap();
    let flag = flag.split('=').next().unwrap();
    assert!(
        err.to_string()
            .starts_with(&format!("invalid training option {flag}: ")),
        "{bad:?}: {err}"
    );
}

#[test]
fn bad_recipe_flags_are_typed_errors_on_the_synthetic_data_too() {
    let dir = temp_dir("bad-synthetic");
    let out = dir.join("run");
    let o = out.to_str().unwrap();
    for bad in [
        vec!["--reprob", "2", "--out", o],
        vec!["--hflip", "5", "--out", o],
        vec!["--scale", "2,1", "--out", o],
        vec!["--aug", "weird", "--out", o],
        vec!["--rand-augment", "garbage", "--out", o],
        vec!["--mixup=-1", "--out", o],
        vec!["--cutmix", "nan", "--out", o],
    ] {
        let Err(err) = train(&args(&bad)) else {
            panic!("{bad:?} was accepted");
        };
        assert_names_the_flag(&bad, &err);
        assert!(!out.exists(), "{bad:?} touched the output folder");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn overrides_go_on_top_of_the_chosen_recipe() {
    let model = VHeatConfig::tiny().with_num_classes(3);
    let none = RecipeOverrides::default();
    let auto = none
        .folder_recipe(RecipeChoice::Auto, false, &model, 32, 100)
        .unwrap();
    assert_eq!(auto.kind, RecipeKind::FromScratch);
    assert_eq!(auto.config, TrainingConfig::from_scratch(32, 100).config);
    let tune = none
        .folder_recipe(RecipeChoice::Auto, true, &model, 32, 100)
        .unwrap();
    assert_eq!(tune.kind, RecipeKind::FineTune);
    // The reference recipe at 4 x 2 images per step, with flags on top.
    let flags = RecipeOverrides {
        batch: Some(4),
        accum: Some(2),
        lr: Some(0.5e-3),
        epochs: Some(3),
        hflip: Some(0.25),
        cutmix: Some(0.0),
        ema: Some(0.0),
        ..RecipeOverrides::default()
    };
    let r = flags
        .folder_recipe(RecipeChoice::Reference, false, &model, 32, 100)
        .unwrap();
    assert_eq!(r.kind, RecipeKind::Reference);
    let c = r.config;
    assert_eq!((c.batch_size, c.grad_accumulation, c.epochs), (4, 2, 3));
    assert_eq!(c.lr, 0.5e-3);
    assert_eq!(c.augment.hflip, 0.25);
    let m = c.mixup.expect("Mixup stays on with CutMix off");
    assert_eq!((m.mixup_alpha, m.cutmix_alpha), (0.8, 0.0));
    assert_eq!(c.ema_decay, None);
    // Both alphas 0: no batch mixing at all.
    let off = RecipeOverrides {
        mixup: Some(0.0),
        cutmix: Some(0.0),
        ..RecipeOverrides::default()
    };
    let r = off
        .folder_recipe(RecipeChoice::Reference, false, &model, 32, 100)
        .unwrap();
    assert_eq!(r.config.mixup, None);
    // The synthetic recipe takes the same overrides.
    let s = flags.synthetic_recipe(6, 2e-3, 8).unwrap();
    assert_eq!((s.epochs, s.batch_size, s.lr), (3, 4, 0.5e-3));
    assert!(flags.sets_augmentation());
}

#[test]
fn the_best_epoch_is_the_highest_accuracy_and_the_earliest_on_a_tie() {
    let record = |epoch, acc, ema| EpochRecord {
        epoch,
        valid_accuracy: Some(acc),
        ema_valid_accuracy: ema,
        ..EpochRecord::default()
    };
    let report = FitReport {
        model: small_config(32, 2).init(&burn::prelude::Device::default()),
        epochs: vec![
            record(1, 50.0, Some(40.0)),
            record(2, 75.0, Some(60.0)),
            record(3, 75.0, Some(70.0)),
            record(4, 60.0, None),
        ],
        resumed_from: 0,
        elapsed: std::time::Duration::ZERO,
        ema: None,
        ema_accuracy: None,
    };
    assert_eq!(report.best_epoch(), Some((75.0, 2)));
    assert_eq!(report.best_ema_epoch(), Some((70.0, 3)));
}

#[test]
fn fine_tuning_sizes_are_checked_as_from_scratch() {
    let dir = temp_dir("tune-size");
    let data = dir.join("data");
    write_folder(&data);
    let d = burn::prelude::Device::default();
    let config = small_config(32, 3);
    let from = dir.join("base.bpk");
    let meta = CheckpointMeta {
        config: config.clone(),
        classes: vec!["a".into(), "b".into(), "c".into()],
        image_size: 32,
        crop_pct: 1.0,
    };
    save_checkpoint(&config.init(&d), &meta, &from).unwrap();
    let folder = ImageFolder::open(data.join("train")).unwrap();
    let no_pth = || unreachable!("not a .pth");
    for size in [1, 7, 16, 31] {
        let err = starting_model(Some(&from), no_pth, Some(size), 0, &folder, &d).unwrap_err();
        assert!(
            matches!(err, vheat::Error::InvalidConfig(_)),
            "{size}: {err}"
        );
        let err = starting_model(None, no_pth, Some(size), 0, &folder, &d).unwrap_err();
        assert!(
            matches!(err, vheat::Error::InvalidConfig(_)),
            "{size}: {err}"
        );
    }
    let start = starting_model(Some(&from), no_pth, Some(64), 0, &folder, &d).unwrap();
    assert_eq!((start.size, start.config.num_classes), (64, 3));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 28, case 14: a training option's error names the flag the user typed (`--batch`,
/// `--accum`), not the library's field (`batch_size`, `grad_accumulation`), and is not labelled
/// as an invalid model configuration.
#[test]
fn training_option_errors_name_the_flag_not_the_field() {
    let dir = temp_dir("option-names");
    let out = dir.join("run");
    let o = out.to_str().unwrap();
    for (bad, flag, field) in [
        (vec!["--batch", "0", "--out", o], "--batch", "batch_size"),
        (
            vec!["--accum", "0", "--out", o],
            "--accum",
            "grad_accumulation",
        ),
        (vec!["--epochs", "0", "--out", o], "--epochs", "epochs`"),
    ] {
        let Err(err) = train(&args(&bad)) else {
            panic!("{bad:?} was accepted");
        };
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("invalid training option {flag}: ")),
            "{text}"
        );
        assert!(!text.contains(field), "{text}");
        assert!(!text.contains("vHeat configuration"), "{text}");
        assert!(!out.exists(), "{bad:?} touched the output folder");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
