//! Crash-safe training checkpoints: burn-train's per-epoch files written atomically, and the
//! newest *readable* epoch found on resume.
//!
//! burn-train's own `FileCheckpointer` writes `model-EPOCH.bpk` in place, so a kill during the
//! write leaves a torn file under the final name, and `--resume` then fails inside burn-train.
//! [`AtomicFileCheckpointer`] writes `NAME-EPOCH.bpk.PID.tmp` (a name of its process's own), flushes it to disk and renames it over
//! `NAME-EPOCH.bpk`: a file under the final name is always complete. [`resumable_checkpoint`]
//! additionally reads every candidate epoch back before training resumes from it, so a file
//! damaged after it was written (a full disk, a copy cut short) makes the run fall back to the
//! previous complete epoch instead of failing.

use std::path::{Path, PathBuf};

use burn::optim::lr_scheduler::LrSchedulerRecord;
use burn::optim::OptimizerRecord;
use burn::store::ModuleRecord;
use burn::train::checkpoint::{Checkpoint, Checkpointer, CheckpointerError};

use super::run::write_atomically;

/// The three kinds of record burn-train keeps per epoch, by file-name prefix.
pub const CHECKPOINT_KINDS: [&str; 3] = ["model", "optim", "scheduler"];

/// A burn-train [`Checkpointer`] that writes each record to a temporary file in the same folder
/// and renames it into place, so that no reader ever sees a partial `NAME-EPOCH.bpk`.
#[derive(Debug, Clone)]
pub struct AtomicFileCheckpointer {
    directory: PathBuf,
    name: String,
    read_only: bool,
}

impl AtomicFileCheckpointer {
    /// Checkpoints named `NAME-EPOCH.bpk` in `directory` (created if missing).
    pub fn new(directory: impl AsRef<Path>, name: &str) -> Self {
        let directory = directory.as_ref().to_path_buf();
        // An unwritable folder is reported by the first `save`, with the path.
        std::fs::create_dir_all(&directory).ok();
        Self {
            directory,
            name: name.to_string(),
            read_only: false,
        }
    }

    /// A checkpointer that restores but never writes or deletes: the ranks other than 0 of a
    /// data-parallel job, which resume from rank 0's files and leave writing them to rank 0.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// The final path of `epoch`'s file.
    pub fn path_for_epoch(&self, epoch: usize) -> PathBuf {
        checkpoint_path(&self.directory, &self.name, epoch)
    }
}

/// `DIR/NAME-EPOCH.bpk`, the name burn-train's checkpointers use.
pub fn checkpoint_path(directory: &Path, name: &str, epoch: usize) -> PathBuf {
    directory.join(format!("{name}-{epoch}.bpk"))
}

fn io_error(path: &Path, e: std::io::Error) -> CheckpointerError {
    CheckpointerError::IOError(std::io::Error::new(
        e.kind(),
        format!("{}: {e}", path.display()),
    ))
}

impl<R: Checkpoint> Checkpointer<R> for AtomicFileCheckpointer {
    fn save(&self, epoch: usize, record: R) -> Result<(), CheckpointerError> {
        if self.read_only {
            return Ok(());
        }
        let path = self.path_for_epoch(epoch);
        let bytes = record
            .checkpoint_into_bytes()
            .map_err(CheckpointerError::Record)?;
        // On disk under a name of this process's own before the rename makes it visible: a
        // power cut cannot leave the final name pointing at unwritten blocks, and two
        // processes never write the same temporary file.
        write_atomically(&path, &bytes).map_err(|e| io_error(&path, e))
    }

    fn delete(&self, epoch: usize) -> Result<(), CheckpointerError> {
        if self.read_only {
            return Ok(());
        }
        let path = self.path_for_epoch(epoch);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(&path, e)),
        }
    }

    fn restore(&self, epoch: usize) -> Result<R, CheckpointerError> {
        let path = self.path_for_epoch(epoch);
        let bytes = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
        R::checkpoint_from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
            .map_err(CheckpointerError::Record)
    }
}

/// Every epoch that has all three files (`model`, `optim`, `scheduler`) in
/// `artifact_dir/checkpoint`, newest first. Temporary `.tmp` files never count.
pub fn complete_checkpoints(artifact_dir: &Path) -> Vec<usize> {
    let dir = artifact_dir.join("checkpoint");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut epochs: Vec<usize> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("model-")?
                .strip_suffix(".bpk")?
                .parse::<usize>()
                .ok()
        })
        .filter(|&epoch| {
            CHECKPOINT_KINDS
                .iter()
                .all(|k| checkpoint_path(&dir, k, epoch).is_file())
        })
        .collect();
    epochs.sort_unstable_by(|a, b| b.cmp(a));
    epochs
}

/// Why one epoch's checkpoint cannot be resumed from: the file and burn's reason.
fn unreadable(dir: &Path, epoch: usize) -> Option<String> {
    let check = |kind: &str, r: Result<(), CheckpointerError>| {
        r.err()
            .map(|e| format!("{}: {e}", checkpoint_path(dir, kind, epoch).display()))
    };
    let ck = AtomicFileCheckpointer::new(dir, "model");
    check(
        "model",
        Checkpointer::<ModuleRecord>::restore(&ck, epoch).map(|_| ()),
    )
    .or_else(|| {
        let ck = AtomicFileCheckpointer::new(dir, "optim");
        check(
            "optim",
            Checkpointer::<OptimizerRecord>::restore(&ck, epoch).map(|_| ()),
        )
    })
    .or_else(|| {
        let ck = AtomicFileCheckpointer::new(dir, "scheduler");
        check(
            "scheduler",
            Checkpointer::<LrSchedulerRecord>::restore(&ck, epoch).map(|_| ()),
        )
    })
}

/// The epoch a resumed run should continue after: the newest complete checkpoint whose three
/// files all read back, together with a message for every newer one that was passed over
/// (the file and why), so the caller can say so. `None` when no epoch is usable.
pub fn resumable_checkpoint(artifact_dir: &Path) -> (Option<usize>, Vec<String>) {
    let dir = artifact_dir.join("checkpoint");
    let mut skipped = Vec::new();
    for epoch in complete_checkpoints(artifact_dir) {
        match unreadable(&dir, epoch) {
            None => return (Some(epoch), skipped),
            Some(why) => skipped.push(format!("checkpoint of epoch {epoch} is unreadable ({why})")),
        }
    }
    (None, skipped)
}
