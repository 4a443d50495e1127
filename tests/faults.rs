//! Faults during training lose nothing: checkpoints are written atomically, a torn newest
//! checkpoint makes `--resume` fall back to the one before, and a run killed with SIGKILL in
//! the middle of an epoch resumes from its last complete epoch and finishes. A run owns its
//! folder (a lock, its identity beside its checkpoints, another run's checkpoints refused on
//! resume and moved aside on a fresh start), a diverging loss stops the run before the epoch
//! is checkpointed, and every image is decoded before the first step.
//!
//! The kill test re-runs this test binary as a child process (`VHEAT_FAULTS_CHILD` set), which
//! trains until the parent kills it with `kill -9` once the first epoch's checkpoint exists.
#![cfg(feature = "train")]

mod common;

use common::{changed, temp_dir, tiny_config};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vheat::data::{save_png, ImageFolder};
use vheat::data::{ShapesConfig, SyntheticShapes};
use vheat::train::{
    complete_checkpoints, fit, latest_checkpoint, refuse_overwriting_inputs, resumable_checkpoint,
    temporary_path, AtomicFileCheckpointer, FitOptions, FitReport, RunLock, TrainingConfig,
};
use vheat::{Error, VHeatConfig};

fn recipe(epochs: usize) -> TrainingConfig {
    changed(TrainingConfig::default(), |c| {
        c.epochs = epochs;
        c.batch_size = 16;
        c.lr = 2e-3;
        c.warmup_epochs = 0.5;
        c.num_workers = 0;
    })
}

fn run(dir: &Path, epochs: usize, train_images: usize, resume: bool) -> FitReport {
    try_run(dir, tiny_config(), recipe(epochs), train_images, resume).unwrap()
}

fn try_run(
    dir: &Path,
    config: VHeatConfig,
    recipe: TrainingConfig,
    train_images: usize,
    resume: bool,
) -> vheat::Result<FitReport> {
    let d = common::cpu();
    let size = config.img_size;
    let train = SyntheticShapes::new(ShapesConfig::new(size, train_images, 1)).unwrap();
    let valid = SyntheticShapes::new(ShapesConfig::new(size, 16, 2)).unwrap();
    let model = config.init_seeded(&d, 3).unwrap();
    let options = FitOptions::new(dir, d).with_resume(resume);
    fit(model, train, valid, &recipe, &options)
}

/// Every file under `dir` with its bytes, sorted by path.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
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

// ---------------------------------------------------------------------------------------------
// A run owns its folder (issue 28, cases 1, 2, 6, 7).
// ---------------------------------------------------------------------------------------------

#[test]
fn a_second_run_into_a_locked_folder_is_refused_naming_the_holder() {
    let dir = temp_dir("lock");
    let held = RunLock::acquire(&dir).unwrap();
    let err = RunLock::acquire(&dir).unwrap_err();
    assert!(matches!(err, Error::RunFolder { .. }), "{err}");
    let pid = std::process::id().to_string();
    assert!(err.to_string().contains(&pid), "names the holder: {err}");
    // fit takes the same lock: a run into a held folder trains nothing.
    let err = try_run(&dir, tiny_config(), recipe(1), 32, false).unwrap_err();
    assert!(matches!(err, Error::RunFolder { .. }), "{err}");
    assert!(complete_checkpoints(&dir).is_empty());
    drop(held);
    RunLock::acquire(&dir).expect("free again once the holder is dropped");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_output_folder_that_is_a_file_is_a_typed_error() {
    let dir = temp_dir("outfile");
    let file = dir.join("not-a-folder");
    std::fs::write(&file, b"keep me").unwrap();
    let err = RunLock::acquire(&file).unwrap_err();
    assert!(matches!(err, Error::RunFolder { .. }), "{err}");
    assert!(err.to_string().contains("not a folder"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn temporary_names_are_unique_per_process() {
    let tmp = temporary_path(Path::new("/x/model-3.bpk"));
    assert_eq!(
        tmp,
        PathBuf::from(format!("/x/model-3.bpk.{}.tmp", std::process::id()))
    );
}

#[test]
fn resume_refuses_another_runs_checkpoints_and_changes_nothing() {
    let dir = temp_dir("foreign");
    run(&dir, 1, 32, false);
    let before = snapshot(&dir.join("checkpoint"));
    // Another seed (case 1), another image size and another class count (case 6).
    let other_seed = TrainingConfig {
        seed: 7,
        ..recipe(2)
    };
    let err = try_run(&dir, tiny_config(), other_seed, 32, true).unwrap_err();
    assert!(matches!(err, Error::ForeignCheckpoints { .. }), "{err}");
    assert!(err.to_string().contains("`seed` 7 here, 0"), "{err}");
    let bigger = tiny_config().with_img_size(64);
    let err = try_run(&dir, bigger, recipe(2), 32, true).unwrap_err();
    assert!(err.to_string().contains("another model"), "{err}");
    let fewer = tiny_config().with_num_classes(2);
    let err = try_run(&dir, fewer, recipe(2), 32, true).unwrap_err();
    assert!(err.to_string().contains("another model"), "{err}");
    let err = try_run(&dir, tiny_config(), recipe(2), 64, true).unwrap_err();
    assert!(err.to_string().contains("other data"), "{err}");
    assert_eq!(snapshot(&dir.join("checkpoint")), before, "nothing changed");
    // The same run with more epochs resumes.
    let report = run(&dir, 2, 32, true);
    assert_eq!(report.resumed_from, 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_fresh_run_moves_an_older_runs_checkpoints_aside() {
    let dir = temp_dir("aside");
    run(&dir, 2, 32, false);
    let first = std::fs::read(dir.join("checkpoint").join("model-2.bpk")).unwrap();
    let other_seed = TrainingConfig {
        seed: 7,
        ..recipe(1)
    };
    try_run(&dir, tiny_config(), other_seed, 32, false).unwrap();
    // The new run's checkpoints alone in checkpoint/, the old ones kept beside them.
    assert_eq!(complete_checkpoints(&dir), vec![1]);
    let aside = dir.join("checkpoint.previous-1");
    assert_eq!(std::fs::read(aside.join("model-2.bpk")).unwrap(), first);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Divergence (case 5).
// ---------------------------------------------------------------------------------------------

#[test]
fn a_non_finite_loss_stops_the_run_with_a_typed_error_before_checkpointing() {
    let dir = temp_dir("diverge");
    let wild = TrainingConfig {
        lr: 1e30,
        ..recipe(2)
    };
    let err = try_run(&dir, tiny_config(), wild, 64, false).unwrap_err();
    let Error::Diverged {
        epoch, iteration, ..
    } = err
    else {
        panic!("expected a divergence, got {err}");
    };
    assert_eq!(epoch, 1);
    assert!(iteration >= 2, "the first step starts from finite weights");
    assert!(err.to_string().contains("learning rate"), "{err}");
    // The diverged epoch was not checkpointed.
    assert!(complete_checkpoints(&dir).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Bad data found before training, writers that never overwrite inputs (cases 3, 4, 8).
// ---------------------------------------------------------------------------------------------

/// A class folder with two good 40×40 PNGs and, with `truncated`, one cut in half (its header
/// reads, its pixels do not).
fn image_class(dir: &Path, truncated: bool) {
    let img = image::RgbImage::from_fn(40, 40, |x, y| image::Rgb([x as u8 * 6, y as u8 * 6, 99]));
    save_png(&img, dir.join("a.png")).unwrap();
    save_png(&img, dir.join("b.png")).unwrap();
    if truncated {
        let bytes = std::fs::read(dir.join("a.png")).unwrap();
        std::fs::write(dir.join("cut.png"), &bytes[..bytes.len() / 2]).unwrap();
    }
}

#[test]
fn images_that_do_not_decode_are_found_before_training_in_train_and_val() {
    let dir = temp_dir("decode");
    for split in ["train", "val"] {
        image_class(&dir.join(split).join("x"), split == "val");
        image_class(&dir.join(split).join("y"), false);
    }
    // The header check alone passes the truncated validation image.
    let (_, val) = ImageFolder::open_split(&dir, 0.2, 0).unwrap();
    assert_eq!(val.len(), 5);
    let (train, val) = ImageFolder::list_split(&dir, 0.2, 0).unwrap();
    let (train, skipped) = train.decoded(false).unwrap();
    assert!(skipped.is_empty());
    assert_eq!(train.len(), 4);
    let err = val.clone().decoded(false).unwrap_err();
    assert!(matches!(err, Error::ImageRead { .. }), "{err}");
    assert!(err.to_string().contains("cut.png"), "{err}");
    let (val, skipped) = val.decoded(true).unwrap();
    assert_eq!(val.len(), 4);
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].to_string().contains("cut.png"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_writer_refuses_to_overwrite_its_inputs() {
    let dir = temp_dir("inputs");
    let model = dir.join("model.bpk");
    let json = dir.join("model.json");
    std::fs::write(&model, b"weights").unwrap();
    std::fs::write(&json, b"{}").unwrap();
    // The same file through another spelling of its path.
    let other_spelling = dir.join(".").join("model.bpk");
    let err = refuse_overwriting_inputs(&other_spelling, &[(&model, "the --from checkpoint")])
        .unwrap_err();
    assert!(matches!(err, Error::OutputIsInput { .. }), "{err}");
    // A JSON configuration given as input is the output's meta file.
    let err = refuse_overwriting_inputs(&model, &[(&json, "the --config file")]).unwrap_err();
    assert!(err.to_string().contains("--config"), "{err}");
    refuse_overwriting_inputs(&dir.join("new.bpk"), &[(&model, "x"), (&json, "y")]).unwrap();
    assert_eq!(std::fs::read(&model).unwrap(), b"weights");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn absurd_synthetic_sizes_are_typed_errors_not_overflows() {
    for n in [usize::MAX, vheat::data::MAX_SYNTHETIC_IMAGES + 1] {
        let err = SyntheticShapes::new(ShapesConfig::new(32, n, 0)).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput { what, found, .. }
                if what.contains("number of images") && *found == n.to_string()),
            "{err}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Bounded by design: memory estimated before allocating (case 10).
// ---------------------------------------------------------------------------------------------

#[test]
fn absurd_models_sizes_and_batches_are_refused_before_allocating() {
    let limit = 4u64 << 30; // the target: the suite stays under 4 GiB
    let tiny = tiny_config();
    // The test models fit, for inference and for training.
    tiny.check_memory_within(16, 32, true, limit).unwrap();
    VHeatConfig::tiny()
        .check_memory_within(1, 224, false, limit)
        .unwrap();
    let absurd = [
        (
            "depths [1000000]",
            VHeatConfig::new(vec![1_000_000], vec![96]),
            1,
            224,
        ),
        (
            "dims [30000]",
            VHeatConfig::new(vec![1], vec![30_000]),
            1,
            224,
        ),
        (
            "1e9 classes",
            tiny.clone().with_num_classes(1_000_000_000),
            1,
            32,
        ),
        ("side 20000", tiny.clone(), 1, 20_000),
        ("batch 1e9", tiny.clone(), 1_000_000_000, 32),
    ];
    for (what, config, batch, side) in absurd {
        let err = config
            .check_memory_within(batch, side, true, limit)
            .unwrap_err();
        let Error::MemoryLimit { limit: named, .. } = &err else {
            panic!("{what}: expected MemoryLimit, got {err}");
        };
        assert_eq!(named, "4.0 GiB", "{what}");
        assert!(err.to_string().contains("VHEAT_MEMORY_LIMIT"), "{err}");
    }
    // Building a model checks its parameters against the limit before allocating them.
    let err = VHeatConfig::new(vec![1_000_000], vec![96])
        .try_init(&common::cpu())
        .unwrap_err();
    assert!(matches!(err, Error::MemoryLimit { .. }), "{err}");
    // The limit is settable (parsed the way VHEAT_MEMORY_LIMIT is read).
    assert_eq!(vheat::vheat::parse_bytes("8G").unwrap(), 8 << 30);
    assert_eq!(vheat::vheat::parse_bytes("512MiB").unwrap(), 512 << 20);
    assert_eq!(vheat::vheat::parse_bytes("1073741824").unwrap(), 1 << 30);
    for bad in ["", "G", "8X", "-1", "99999999999999999999T"] {
        assert!(vheat::vheat::parse_bytes(bad).is_err(), "{bad:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Metadata that would change predictions, special files, cut JPEGs (case 13).
// ---------------------------------------------------------------------------------------------

#[test]
fn checkpoint_metadata_that_changes_predictions_is_refused() {
    let dir = temp_dir("meta");
    let d = common::cpu();
    let config = tiny_config();
    let good = vheat::train::CheckpointMeta {
        config: config.clone(),
        classes: SyntheticShapes::class_names(),
        image_size: 32,
        crop_pct: 1.0,
    };
    let path = dir.join("m.bpk");
    vheat::train::save_checkpoint(&config.init(&d), &good, &path).unwrap();
    vheat::train::load_checkpoint_meta(&path).unwrap();
    for (crop_pct, image_size) in [(0.0, 32), (-1.0, 32), (2.0, 32), (f64::NAN, 32), (1.0, 7)] {
        let meta = vheat::train::CheckpointMeta {
            crop_pct,
            image_size,
            ..good.clone()
        };
        let text = serde_json::to_string(&meta).unwrap();
        std::fs::write(dir.join("m.json"), text).unwrap();
        let err = vheat::train::load_checkpoint_meta(&path).unwrap_err();
        assert!(
            matches!(err, Error::CheckpointRead { .. }),
            "{crop_pct} {image_size}: {err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn a_fifo_given_as_an_image_or_a_config_is_refused_without_blocking() {
    let dir = temp_dir("fifo");
    let fifo = dir.join("pipe.png");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let err = vheat::data::load_rgb(&fifo).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let json = dir.join("pipe.json");
    assert!(Command::new("mkfifo")
        .arg(&json)
        .status()
        .unwrap()
        .success());
    let err = VHeatConfig::load(&json).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 28, case 13: weight files (`.pth`, `.safetensors`, `.bpk`, and the `.json` beside a
/// `.bpk`) that are FIFOs, devices or folders are refused by their type, naming the path,
/// before an open that would block (a FIFO) or never end (`/dev/zero`). The loads run on a
/// thread with a deadline, so a regression fails here instead of hanging the suite.
#[cfg(unix)]
#[test]
fn weight_files_that_are_fifos_devices_or_folders_are_refused_without_blocking() {
    let dir = temp_dir("special-weights");
    let mkfifo = |p: &Path| {
        let made = Command::new("mkfifo").arg(p).status().unwrap();
        assert!(made.success(), "mkfifo {}", p.display());
    };
    let config = tiny_config();
    let d = common::cpu();
    // A real checkpoint whose metadata is a FIFO, and one whose weights are.
    let meta = vheat::train::CheckpointMeta {
        config: config.clone(),
        classes: SyntheticShapes::class_names(),
        image_size: 32,
        crop_pct: 1.0,
    };
    let model = config.init(&d);
    let fifo_meta = dir.join("fifo-meta.bpk");
    vheat::train::save_checkpoint(&model, &meta, &fifo_meta).unwrap();
    std::fs::remove_file(dir.join("fifo-meta.json")).unwrap();
    mkfifo(&dir.join("fifo-meta.json"));
    let fifo_weights = dir.join("fifo-weights.bpk");
    vheat::train::save_checkpoint(&model, &meta, &fifo_weights).unwrap();
    std::fs::remove_file(&fifo_weights).unwrap();
    mkfifo(&fifo_weights);
    // Reference checkpoints that are FIFOs, a device and a folder.
    let mut reference = Vec::new();
    for name in ["w.pth", "w.safetensors", "w.bpk"] {
        mkfifo(&dir.join(name));
        reference.push((dir.join(name), "FIFO"));
    }
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.pth")).unwrap();
    reference.push((dir.join("zero.pth"), "character device"));
    std::fs::create_dir(dir.join("folder.safetensors")).unwrap();
    reference.push((dir.join("folder.safetensors"), "folder"));

    let (tx, rx) = std::sync::mpsc::channel();
    let (meta_path, weights_path) = (fifo_meta.clone(), fifo_weights.clone());
    let cases = reference.clone();
    std::thread::spawn(move || {
        let d = common::cpu();
        let mut errors: Vec<(PathBuf, Error)> = cases
            .iter()
            .map(|(p, _)| {
                let err = vheat::weights::load_any(p, &config, &d).unwrap_err();
                (p.clone(), err)
            })
            .collect();
        let err = vheat::train::load_checkpoint(&meta_path, &d).unwrap_err();
        errors.push((meta_path.with_extension("json"), err));
        let err = vheat::train::load_checkpoint(&weights_path, &d).unwrap_err();
        errors.push((weights_path, err));
        tx.send(errors).ok();
    });
    let errors = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("a load blocked on a special file");
    let kinds = reference
        .iter()
        .map(|(_, kind)| *kind)
        .chain(["FIFO", "FIFO"]);
    for ((path, err), kind) in errors.iter().zip(kinds) {
        assert!(matches!(err, Error::CheckpointRead { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("not a regular file"), "{text}");
        assert!(text.contains(kind), "{kind}: {text}");
    }
    assert_eq!(errors.len(), reference.len() + 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_cut_jpeg_is_an_error_not_a_grey_image() {
    let dir = temp_dir("jpeg");
    let img = image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8 * 4, y as u8 * 4, 7]));
    let whole = dir.join("whole.jpg");
    img.save(&whole).unwrap();
    vheat::data::load_rgb(&whole).unwrap();
    let bytes = std::fs::read(&whole).unwrap();
    let cut = dir.join("cut.jpg");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let err = vheat::data::load_rgb(&cut).unwrap_err();
    assert!(matches!(err, Error::ImageRead { .. }), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
