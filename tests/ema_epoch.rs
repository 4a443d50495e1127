//! The model EMA is validated beside the raw model after every epoch: burn-train's per-epoch
//! figures (`EpochRecord::ema_valid_*`), their agreement with an independent evaluation of the
//! EMA, the decay-0 identity (EMA = model), no EMA column without an EMA, the routing of the
//! validation output's two halves to the two metrics, and the choice of the better model.
#![cfg(feature = "train")]
#[macro_use]
mod common;

use common::{changed, temp_dir, tiny_config};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::Progress;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use burn::train::metric::{
    AccuracyInput, AccuracyMetric, Adaptor, LossInput, LossMetric, Metric, MetricMetadata, Numeric,
};
use burn::train::ClassificationOutput;
use vheat::data::{ImageBatcher, ShapesConfig, SyntheticShapes};
use vheat::train::{
    evaluate_accuracy, fit, smoothed_cross_entropy, EmaAccuracyMetric, EmaInput, EmaLossMetric,
    EpochRecord, FitOptions, FitReport, ModelChoice, TrainingConfig, ValidationOutput,
    EMA_ACCURACY, EMA_LOSS,
};
use vheat::VHeat;

fn recipe(epochs: usize, ema_decay: Option<f64>) -> TrainingConfig {
    changed(TrainingConfig::default(), |c| {
        c.epochs = epochs;
        c.batch_size = 16;
        c.lr = 2e-3;
        c.warmup_epochs = 0.5;
        c.num_workers = 0;
        c.ema_decay = ema_decay;
    })
}

/// A 2-epoch fit on 64 training and 40 validation images (40: the last validation batch is a
/// short one of 8, so how the per-batch figures are averaged shows).
fn run(name: &str, ema_decay: Option<f64>) -> (FitReport, SyntheticShapes) {
    let d = common::cpu();
    let dir = temp_dir(name);
    let train = SyntheticShapes::new(ShapesConfig::new(32, 64, 1)).unwrap();
    let valid = SyntheticShapes::new(ShapesConfig::new(32, 40, 2)).unwrap();
    let model = tiny_config().init_seeded(&d, 3).unwrap();
    let report = fit(
        model,
        train,
        valid.clone(),
        &recipe(2, ema_decay),
        &FitOptions::new(&dir, d),
    )
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    (report, valid)
}

/// Plain cross-entropy of `model` on `valid`, the mean over images, computed here batch by batch
/// (batches of 16) as the sum of each batch's mean times its size, over the number of images.
/// The validation metrics report the same: each batch's mean is weighed by its images, so a
/// short last batch does not count as much as a full one.
fn mean_image_loss(model: &VHeat, valid: &SyntheticShapes) -> f64 {
    let d = common::cpu();
    let n = valid.len();
    let total: f64 = (0..n)
        .step_by(16)
        .map(|start| {
            let items: Vec<_> = (start..(start + 16).min(n))
                .map(|i| valid.get(i).unwrap())
                .collect();
            let images = items.len() as f64;
            let batch = ImageBatcher.batch(items, &d);
            let logits = model.forward(batch.images);
            images
                * f64::from(smoothed_cross_entropy(logits, batch.targets, 0.0).into_scalar::<f32>())
        })
        .sum();
    total / n as f64
}

#[test]
fn the_ema_is_validated_every_epoch_and_agrees_with_an_independent_evaluation() {
    let (report, valid) = run("on", Some(0.9));
    assert_eq!(report.epochs.len(), 2);
    for e in &report.epochs {
        let acc = e.ema_valid_accuracy.expect("an EMA accuracy every epoch");
        assert!((0.0..=100.0).contains(&acc), "epoch {}: {acc}", e.epoch);
        assert!(e.ema_valid_loss.is_some_and(f64::is_finite));
        // Decay 0.9 over 4 optimizer steps per epoch: the average is not the model, so its loss
        // is another number (equal only if the EMA column showed the raw model).
        assert_ne!(e.ema_valid_loss, e.valid_loss, "epoch {}", e.epoch);
    }
    let per_epoch = report.ema_accuracy_per_epoch();
    assert_eq!(per_epoch.len(), 2);
    // After training, `ema_accuracy` is the last epoch's figure.
    assert_eq!(report.ema_accuracy, Some(per_epoch[1]));

    // The same model, evaluated outside burn-train: the EMA is not updated after the last
    // validation, so the counts are the same; 1e-9 allows only the rounding of burn-train's
    // batch-size-weighted mean of per-batch percentages (40 images: a disagreement on one
    // image would be 2.5 points).
    let ema = report.ema.as_ref().unwrap();
    let independent = evaluate_accuracy(ema, &valid, 16, &common::cpu()).unwrap();
    assert!(
        (independent - per_epoch[1]).abs() < 1e-9,
        "burn-train {} vs evaluate_accuracy {independent}",
        per_epoch[1]
    );
    // The raw model's figure, likewise.
    let raw = evaluate_accuracy(&report.model, &valid, 16, &common::cpu()).unwrap();
    assert!((raw - report.final_accuracy().unwrap()).abs() < 1e-9);

    // The EMA loss of the last epoch is the mean cross-entropy over the 40 images (batches of
    // 16, 16, 8; the mean of the three batch means differed from it by 4e-4 relative). 1e-6
    // relative: the same float32 batch losses, weighed and summed in f64 in another order.
    let last = report.epochs.last().unwrap();
    let want = mean_image_loss(ema, &valid);
    let got = last.ema_valid_loss.unwrap();
    assert!(
        (got - want).abs() <= 1e-6 * want.abs(),
        "EMA loss {got} vs {want}"
    );
    let want_raw = mean_image_loss(&report.model, &valid);
    assert!((last.valid_loss.unwrap() - want_raw).abs() <= 1e-6 * want_raw.abs());

    // The better of the two is the one with the higher last-epoch accuracy.
    let (choice, acc) = report.best_of_raw_and_ema().unwrap();
    let raw_acc = report.final_accuracy().unwrap();
    let ema_acc = per_epoch[1];
    assert_eq!(acc, raw_acc.max(ema_acc));
    if ema_acc > raw_acc {
        assert_eq!(choice, ModelChoice::Ema);
    }
    if raw_acc > ema_acc {
        assert_eq!(choice, ModelChoice::Raw);
    }
}

#[test]
fn with_decay_0_the_ema_is_the_model_and_validates_the_same_every_epoch() {
    // ema = 0·ema + 1·model after every step: the same weights, bit for bit.
    let (report, _) = run("zero", Some(0.0));
    assert_eq!(report.epochs.len(), 2);
    for e in &report.epochs {
        assert_eq!(
            e.ema_valid_accuracy, e.valid_accuracy,
            "epoch {}: the EMA's accuracy is the model's",
            e.epoch
        );
        let (el, rl) = (e.ema_valid_loss.unwrap(), e.valid_loss.unwrap());
        // The same weights on the same images through the same kernels: equal up to the last
        // bit; 1e-12 is there only so that the message shows both numbers.
        assert!((el - rl).abs() < 1e-12, "epoch {}: {el} vs {rl}", e.epoch);
    }
    // Equal accuracy and loss: the raw model is kept (ties go to it).
    assert_eq!(
        report.best_of_raw_and_ema().map(|(c, _)| c),
        Some(ModelChoice::Raw)
    );
}

#[test]
fn without_an_ema_there_is_no_ema_column() {
    let (report, _) = run("off", None);
    assert_eq!(report.epochs.len(), 2);
    for e in &report.epochs {
        assert!(e.valid_accuracy.is_some());
        assert_eq!(e.ema_valid_accuracy, None);
        assert_eq!(e.ema_valid_loss, None);
    }
    assert!(report.ema.is_none());
    assert_eq!(report.ema_accuracy, None);
    assert!(report.ema_accuracy_per_epoch().is_empty());
    assert_eq!(
        report.best_of_raw_and_ema(),
        Some((ModelChoice::Raw, report.final_accuracy().unwrap()))
    );
}

fn metadata() -> MetricMetadata {
    MetricMetadata {
        progress: Progress {
            items_processed: 1,
            items_total: 1,
            unit: None,
        },
        iteration: Some(1),
        lr: None,
    }
}

fn output(logits: [[f32; 2]; 4], loss: f32, d: &Device) -> ClassificationOutput {
    ClassificationOutput::new(
        Tensor::from_data([loss], d),
        Tensor::from_data(logits, d),
        Tensor::from_data([0, 1, 0, 1], d),
    )
}

#[test]
fn the_raw_half_feeds_burns_metrics_and_the_ema_half_the_ema_metrics() {
    let d = common::cpu();
    // Targets 0 1 0 1. Raw predictions 0 0 0 0: 2 of 4 right. EMA predictions 0 1 0 1: all right.
    let out = ValidationOutput {
        raw: output([[1.0, 0.0]; 4], 0.7, &d),
        ema: Some(output(
            [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]],
            0.2,
            &d,
        )),
    };
    let m = metadata();
    let mut acc = AccuracyMetric::new();
    let mut ema_acc = EmaAccuracyMetric::accuracy();
    let mut loss = LossMetric::new();
    let mut ema_loss = EmaLossMetric::loss();
    acc.update(&Adaptor::<AccuracyInput>::adapt(&out), &m)
        .unwrap();
    ema_acc
        .update(&Adaptor::<EmaInput<AccuracyInput>>::adapt(&out), &m)
        .unwrap();
    loss.update(&Adaptor::<LossInput>::adapt(&out), &m).unwrap();
    ema_loss
        .update(&Adaptor::<EmaInput<LossInput>>::adapt(&out), &m)
        .unwrap();
    assert_eq!(acc.value().unwrap().current(), 50.0);
    assert_eq!(ema_acc.value().unwrap().current(), 100.0);
    // f32 0.7 and 0.2 read back as f64: 1e-6 covers the f32 rounding of the literals.
    assert!((loss.value().unwrap().current() - 0.7).abs() < 1e-6);
    assert!((ema_loss.value().unwrap().current() - 0.2).abs() < 1e-6);
    assert_eq!(ema_acc.name().as_str(), EMA_ACCURACY);
    assert_eq!(ema_loss.name().as_str(), EMA_LOSS);
    assert_ne!(ema_acc.name(), acc.name());
    assert_ne!(ema_loss.name(), loss.name());

    // Without an EMA half nothing is counted and there is no value.
    let raw_only = ValidationOutput {
        raw: output([[1.0, 0.0]; 4], 0.7, &d),
        ema: None,
    };
    let mut ema_acc = EmaAccuracyMetric::accuracy();
    ema_acc
        .update(&Adaptor::<EmaInput<AccuracyInput>>::adapt(&raw_only), &m)
        .unwrap();
    assert!(ema_acc.value().is_none());
}

fn report_with(raw: (f64, f64), ema: Option<(f64, f64)>) -> FitReport {
    let d = common::cpu();
    let model = tiny_config().init_seeded(&d, 1).unwrap();
    FitReport {
        model: model.clone(),
        epochs: vec![EpochRecord {
            epoch: 1,
            valid_accuracy: Some(raw.0),
            valid_loss: Some(raw.1),
            ema_valid_accuracy: ema.map(|e| e.0),
            ema_valid_loss: ema.map(|e| e.1),
            ..EpochRecord::default()
        }],
        resumed_from: 0,
        elapsed: std::time::Duration::ZERO,
        ema: ema.map(|_| model),
        ema_accuracy: ema.map(|e| e.0),
    }
}

#[test]
fn the_better_model_is_the_more_accurate_then_the_lower_loss_then_the_raw_one() {
    let pick = |r, e| report_with(r, Some(e)).best_of_raw_and_ema();
    assert_eq!(
        pick((80.0, 0.5), (82.5, 0.6)),
        Some((ModelChoice::Ema, 82.5))
    );
    assert_eq!(
        pick((85.0, 0.5), (82.5, 0.4)),
        Some((ModelChoice::Raw, 85.0))
    );
    assert_eq!(
        pick((80.0, 0.5), (80.0, 0.4)),
        Some((ModelChoice::Ema, 80.0))
    );
    assert_eq!(
        pick((80.0, 0.4), (80.0, 0.5)),
        Some((ModelChoice::Raw, 80.0))
    );
    assert_eq!(
        pick((80.0, 0.5), (80.0, 0.5)),
        Some((ModelChoice::Raw, 80.0))
    );
    assert_eq!(
        report_with((70.0, 1.0), None).best_of_raw_and_ema(),
        Some((ModelChoice::Raw, 70.0))
    );
    // `best_model` hands out the chosen one.
    let r = report_with((80.0, 0.5), Some((82.5, 0.6)));
    assert!(std::ptr::eq(r.best_model(), r.ema.as_ref().unwrap()));
    let r = report_with((85.0, 0.5), Some((82.5, 0.6)));
    assert!(std::ptr::eq(r.best_model(), &r.model));
}

#[test]
fn data_parallel_training_validates_the_ema_too() {
    let d = common::cpu();
    let dir = temp_dir("multi");
    let train = SyntheticShapes::new(ShapesConfig::new(32, 64, 1)).unwrap();
    let valid = SyntheticShapes::new(ShapesConfig::new(32, 16, 2)).unwrap();
    let model = tiny_config().init_seeded(&d, 3).unwrap();
    let options = FitOptions::new(&dir, d.clone()).with_devices(vec![d.clone(), d.clone()]);
    let report = fit(model, train, valid.clone(), &recipe(1, Some(0.9)), &options).unwrap();
    let acc = report.epochs[0]
        .ema_valid_accuracy
        .expect("the EMA is validated under the multi-device strategy");
    // As in the single-device test: the same counts, only the weighted mean's rounding.
    let independent = evaluate_accuracy(report.ema.as_ref().unwrap(), &valid, 16, &d).unwrap();
    assert!((independent - acc).abs() < 1e-9, "{acc} vs {independent}");
    std::fs::remove_dir_all(&dir).unwrap();
}
