//! Faults during training lose nothing: checkpoints are written atomically, a torn newest
//! checkpoint makes `--resume` fall back to the one before, and a run killed with SIGKILL in
//! the middle of an epoch resumes from its last complete epoch and finishes.
//!
//! The kill test re-runs this test binary as a child process (`VHEAT_FAULTS_CHILD` set), which
//! trains until the parent kills it with `kill -9` once the first epoch's checkpoint exists.
#![cfg(feature = "train")]

mod common;

use common::{changed, temp_dir, tiny_config};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vheat::data::{ShapesConfig, SyntheticShapes};
use vheat::train::{
    complete_checkpoints, fit, latest_checkpoint, resumable_checkpoint, AtomicFileCheckpointer,
    FitOptions, TrainingConfig,
};

fn recipe(epochs: usize) -> TrainingConfig {
    changed(TrainingConfig::default(), |c| {
        c.epochs = epochs;
        c.batch_size = 16;
        c.lr = 2e-3;
        c.warmup_epochs = 0.5;
        c.num_workers = 0;
    })
}

fn run(dir: &Path, epochs: usize, train_images: usize, resume: bool) -> vheat::train::FitReport {
    let d = common::cpu();
    let train = SyntheticShapes::new(ShapesConfig::new(32, train_images, 1)).unwrap();
    let valid = SyntheticShapes::new(ShapesConfig::new(32, 16, 2)).unwrap();
    let model = tiny_config().init_seeded(&d, 3).unwrap();
    let options = FitOptions::new(dir, d).with_resume(resume);
    fit(model, train, valid, &recipe(epochs), &options).unwrap()
}

#[test]
fn checkpoints_are_renamed_into_place_and_leave_no_temporary_file() {
    let dir = temp_dir("atomic");
    run(&dir, 2, 32, false);
    assert_eq!(complete_checkpoints(&dir), vec![2, 1]);
    let leftovers: Vec<_> = std::fs::read_dir(dir.join("checkpoint"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The checkpointer's own naming is burn-train's: NAME-EPOCH.bpk.
    assert_eq!(
        AtomicFileCheckpointer::new(dir.join("checkpoint"), "model").path_for_epoch(2),
        dir.join("checkpoint").join("model-2.bpk")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_truncated_newest_checkpoint_resumes_from_the_one_before() {
    let dir = temp_dir("torn");
    run(&dir, 2, 32, false);
    // What a kill during burn-train's in-place write used to leave: the newest model file cut
    // in half under its final name.
    let newest = dir.join("checkpoint").join("model-2.bpk");
    let bytes = std::fs::read(&newest).unwrap();
    std::fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
    let (epoch, passed_over) = resumable_checkpoint(&dir);
    assert_eq!(epoch, Some(1));
    assert_eq!(passed_over.len(), 1);
    assert!(
        passed_over[0].contains("model-2.bpk"),
        "the message names the torn file: {}",
        passed_over[0]
    );
    // Resuming a 3-epoch run continues after epoch 1 and finishes.
    let report = run(&dir, 3, 32, true);
    assert_eq!(report.resumed_from, 1);
    assert_eq!(
        report.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(latest_checkpoint(&dir), Some(3));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The child half of the kill test: trains a long run into the folder it is given.
#[test]
fn child_trains_until_killed() {
    let Ok(dir) = std::env::var("VHEAT_FAULTS_CHILD") else {
        return; // only meaningful as the child process of the kill test
    };
    run(Path::new(&dir), 50, 256, false);
}

#[cfg(unix)]
#[test]
fn a_run_killed_mid_epoch_resumes_and_finishes() {
    let dir = temp_dir("kill");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_trains_until_killed", "--nocapture"])
        .env("VHEAT_FAULTS_CHILD", &dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the first complete epoch, then give it a moment to be inside the next one.
    let start = Instant::now();
    while complete_checkpoints(&dir).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the child wrote no checkpoint in 5 minutes"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child ended before writing a checkpoint"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    // SIGKILL: no destructor, no flush, no chance to finish a write.
    let status = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap();
    let done = latest_checkpoint(&dir).expect("a complete checkpoint survives the kill");
    assert!(done >= 1);
    // Resume with a run that ends one epoch later: it continues after `done` and finishes.
    let report = run(&dir, done + 1, 256, true);
    assert_eq!(report.resumed_from, done);
    assert_eq!(report.epochs.last().map(|e| e.epoch), Some(done + 1));
    assert_eq!(latest_checkpoint(&dir), Some(done + 1));
    std::fs::remove_dir_all(&dir).unwrap();
}
