//! Real data in the test suite: scikit-learn's 8×8 handwritten digits (the UCI set, committed
//! as `tests/fixtures/digits/digits.u8`), upsampled to 32×32 and written as an image folder,
//! trained from scratch through `vheat train --data DIR`'s own code path with its automatic
//! from-scratch recipe, at CI size (2 epochs instead of the default 30).
#![cfg(feature = "cli")]

mod common;

use common::temp_dir;
use std::path::PathBuf;

use clap::Parser;
use vheat::cli::train::{train, TrainArgs};
use vheat::data::{Digits, ImageFolder, DIGITS_VAL_EVERY};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/digits/digits.u8")
}

#[test]
fn the_digits_fixture_is_scikit_learns() {
    let digits = Digits::load(fixture()).unwrap();
    // sklearn.datasets.load_digits(): 1,797 images; per-class counts as scikit-learn documents.
    assert_eq!(digits.len(), 1797);
    let mut counts = [0usize; 10];
    for &l in &digits.labels {
        counts[l as usize] += 1;
    }
    assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
    // The first image is a 0: sklearn's digits.images[0] row 0 is [0, 0, 5, 13, 9, 1, 0, 0].
    assert_eq!(digits.labels[0], 0);
    assert_eq!(&digits.pixels[0][..8], &[0, 0, 5, 13, 9, 1, 0, 0]);
}

#[test]
fn a_corrupt_digits_file_is_a_typed_error() {
    let dir = temp_dir("corrupt");
    let path = dir.join("digits.u8");
    std::fs::write(&path, [0u8; 64]).unwrap();
    let err = Digits::load(&path).unwrap_err();
    assert!(matches!(err, vheat::Error::ImageRead { .. }), "{err}");
    assert!(err.to_string().contains("digits.u8"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn training_from_scratch_on_real_digits_clearly_beats_chance() {
    let dir = temp_dir("train");
    let data = dir.join("data");
    let (n_train, n_val) = Digits::load(fixture())
        .unwrap()
        .write_folder(&data, 32)
        .unwrap();
    assert_eq!(n_train + n_val, 1797);
    assert!(n_val >= 1797 / DIGITS_VAL_EVERY - 10);
    let (train_folder, val_folder) = ImageFolder::open_split(&data, 0.2, 0).unwrap();
    assert_eq!((train_folder.len(), val_folder.len()), (n_train, n_val));

    let out = dir.join("run");
    let args = TrainArgs::parse_from([
        "train",
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "2",
        "--workers",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    let outcome = train(&args).unwrap().expect("a training run");
    let accuracy = outcome.report.final_accuracy().unwrap();
    // Chance is 10 %. Two epochs of the from-scratch recipe (lr 2e-3 with 2 warm-up epochs, so
    // these two are all warm-up) reached 60-80 % in our runs; 40 % is far above chance and
    // leaves room for float32 rounding differences between CPUs.
    assert!(accuracy > 40.0, "validation accuracy {accuracy:.1} %");
    std::fs::remove_dir_all(&dir).unwrap();
}
