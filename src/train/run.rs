//! A run owns its output folder: an exclusive lock for the run's life ([`RunLock`]), and the
//! run's identity recorded beside its checkpoints ([`RunIdentity`], `checkpoint/run.json`), so
//! that `--resume` continues only the run that wrote them and a fresh run never mixes its
//! checkpoints with an older run's ([`prepare_checkpoints`]).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::config::TrainingConfig;
use crate::error::{Error, Result};
use crate::vheat::VHeat;

/// The name of the lock file in a run's folder.
pub const LOCK_FILE: &str = "run.lock";
/// The name of the identity file in a run's checkpoint folder.
pub const IDENTITY_FILE: &str = "run.json";

/// An exclusive lock on a run's output folder, held until dropped (the operating system drops
/// it when the process ends, however it ends). A second run into the same folder gets
/// [`Error::RunFolder`] naming the process that holds it.
#[derive(Debug)]
pub struct RunLock {
    folder: PathBuf,
    _file: File,
}

impl RunLock {
    /// Creates `folder` if needed and locks it.
    ///
    /// # Errors
    /// [`Error::RunFolder`] when `folder` is a file (or another non-folder), cannot be created,
    /// or is locked by another run.
    pub fn acquire(folder: impl AsRef<Path>) -> Result<Self> {
        let folder = folder.as_ref().to_path_buf();
        let fail = |reason: String| Error::RunFolder {
            path: folder.clone(),
            reason,
        };
        if let Ok(meta) = std::fs::metadata(&folder) {
            if !meta.is_dir() {
                return Err(fail("it exists and is not a folder".into()));
            }
        }
        std::fs::create_dir_all(&folder).map_err(|e| fail(e.to_string()))?;
        let path = folder.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| fail(format!("{}: {e}", path.display())))?;
        match lock_soon(&file) {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                file.read_to_string(&mut holder).ok();
                let holder = holder.trim();
                return Err(fail(format!(
                    "another run is using it ({}); wait for it or choose another --out",
                    if holder.is_empty() {
                        "process unknown".to_string()
                    } else {
                        format!("process {holder}")
                    }
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(fail(format!("cannot lock {}: {e}", path.display())))
            }
        }
        // Who holds it, for the message a second run prints.
        file.set_len(0).ok();
        file.rewind().ok();
        write!(file, "{}", std::process::id()).ok();
        file.flush().ok();
        Ok(Self {
            folder,
            _file: file,
        })
    }

    /// The locked folder.
    pub fn folder(&self) -> &Path {
        &self.folder
    }
}

/// How long [`RunLock::acquire`] retries a lock that is taken before reporting another run.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Takes `file`'s exclusive lock, retrying for [`LOCK_PATIENCE`] while it is taken.
///
/// The lock belongs to the open file, and a child process forked by another thread of this
/// process (`std::process::Command`) shares the open file until it calls `exec`, which closes
/// it: a lock released just before such a fork stays taken for that moment. A run that really
/// holds the folder holds it for far longer than the patience.
fn lock_soon(file: &std::fs::File) -> std::result::Result<(), std::fs::TryLockError> {
    let start = std::time::Instant::now();
    loop {
        match file.try_lock() {
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_PATIENCE => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            outcome => return outcome,
        }
    }
}

/// What makes two runs the same run: the model's parameter shapes, the recipe (without the
/// number of epochs, which a resumed run may extend, and the loader threads) and a description
/// of the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunIdentity {
    /// Every parameter as `path [shape]`, in module order.
    pub model: Vec<String>,
    /// The recipe as JSON, `epochs` and `num_workers` removed.
    pub recipe: serde_json::Value,
    /// The data, as the caller describes it (or the dataset sizes).
    pub data: String,
}

struct Shapes {
    path: Vec<String>,
    out: Vec<String>,
}

impl ModuleVisitor for Shapes {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.out
            .push(format!("{} {:?}", self.path.join("."), param.val().dims()));
    }
}

impl RunIdentity {
    /// The identity of training `model` with `recipe` on `data`.
    pub fn new(model: &VHeat, recipe: &TrainingConfig, data: impl Into<String>) -> Self {
        let mut shapes = Shapes {
            path: Vec::new(),
            out: Vec::new(),
        };
        model.visit(&mut shapes);
        let mut recipe = serde_json::to_value(recipe).unwrap_or_default();
        if let Some(map) = recipe.as_object_mut() {
            map.remove("epochs");
            map.remove("num_workers");
        }
        Self {
            model: shapes.out,
            recipe,
            data: data.into(),
        }
    }

    /// What differs between `self` (this run) and `recorded` (the checkpoints'), one phrase
    /// each; empty when they are the same run.
    pub fn differences(&self, recorded: &RunIdentity) -> Vec<String> {
        let mut out = Vec::new();
        if self.model != recorded.model {
            let first = self
                .model
                .iter()
                .zip(&recorded.model)
                .find(|(a, b)| a != b)
                .map(|(a, b)| format!("`{a}` here, `{b}` in the checkpoints"))
                .unwrap_or_else(|| {
                    format!(
                        "{} parameters here, {} in the checkpoints",
                        self.model.len(),
                        recorded.model.len()
                    )
                });
            out.push(format!("another model: {first}"));
        }
        if self.data != recorded.data {
            out.push(format!(
                "other data: {} here, {} in the checkpoints",
                self.data, recorded.data
            ));
        }
        let empty = serde_json::Map::new();
        let ours = self.recipe.as_object().unwrap_or(&empty);
        let theirs = recorded.recipe.as_object().unwrap_or(&empty);
        let mut keys: Vec<&String> = ours.keys().chain(theirs.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let (a, b) = (ours.get(key), theirs.get(key));
            if a != b {
                let show = |v: Option<&serde_json::Value>| {
                    v.map_or_else(|| "unset".to_string(), |v| v.to_string())
                };
                out.push(format!(
                    "recipe `{key}` {} here, {} in the checkpoints",
                    show(a),
                    show(b)
                ));
            }
        }
        out
    }
}

/// True when the checkpoint folder holds any per-epoch file.
fn has_checkpoints(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(|e| e.ok()).any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.ends_with(".bpk")
        })
    })
}

/// Makes `checkpoint_dir` ready for a run of `identity`, and says what it did (a line to
/// print, if any).
///
/// - Resuming: checkpoints recorded by the same run are kept; checkpoints of another run (or
///   with no identity recorded) are refused with [`Error::ForeignCheckpoints`] saying what
///   differs, and nothing is changed.
/// - A fresh run into a folder that holds checkpoints moves them aside, to
///   `checkpoint.previous-N` beside it (nothing is deleted), so they can never be mixed with
///   the new run's or resumed by mistake.
///
/// Then `run.json` records `identity`.
///
/// # Errors
/// [`Error::ForeignCheckpoints`]; [`Error::RunFolder`] when the folder cannot be moved or
/// written.
pub fn prepare_checkpoints(
    checkpoint_dir: &Path,
    identity: &RunIdentity,
    resume: bool,
) -> Result<Option<String>> {
    let id_path = checkpoint_dir.join(IDENTITY_FILE);
    let fail = |path: &Path, reason: String| Error::RunFolder {
        path: path.to_path_buf(),
        reason,
    };
    let mut said = None;
    if has_checkpoints(checkpoint_dir) {
        if resume {
            let recorded: Option<RunIdentity> = std::fs::read_to_string(&id_path)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
            let differences = match &recorded {
                Some(r) => identity.differences(r),
                None => vec![format!(
                    "no readable {IDENTITY_FILE}: they were written by a run that did not \
                     record what it trained"
                )],
            };
            if !differences.is_empty() {
                return Err(Error::ForeignCheckpoints {
                    path: checkpoint_dir.to_path_buf(),
                    differences: differences.join("; "),
                });
            }
            return Ok(None);
        }
        let parent = checkpoint_dir.parent().unwrap_or(Path::new("."));
        let name = checkpoint_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "checkpoint".into());
        let aside = (1..)
            .map(|n| parent.join(format!("{name}.previous-{n}")))
            .find(|p| !p.exists())
            .unwrap_or_else(|| parent.join(format!("{name}.previous")));
        std::fs::rename(checkpoint_dir, &aside)
            .map_err(|e| fail(checkpoint_dir, format!("cannot move it aside: {e}")))?;
        said = Some(format!(
            "moved the checkpoints of an earlier run in {} to {} (a fresh run does not mix \
             with them; --resume continues a run)",
            checkpoint_dir.display(),
            aside.display()
        ));
    }
    std::fs::create_dir_all(checkpoint_dir).map_err(|e| fail(checkpoint_dir, e.to_string()))?;
    let json = serde_json::to_string_pretty(identity).map_err(|e| fail(&id_path, e.to_string()))?;
    write_atomically(&id_path, json.as_bytes()).map_err(|e| fail(&id_path, e.to_string()))?;
    Ok(said)
}

/// A temporary name beside `path` that no other process uses: `NAME.PID.tmp`.
pub fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Writes `bytes` to a [`temporary_path`], flushes it to disk and renames it over `path`: a
/// reader sees the old file or the whole new one.
///
/// # Errors
/// The I/O error; the temporary file is removed.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temporary_path(path);
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        std::fs::remove_file(&tmp).ok();
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lock released while a copy of its open file lives on for a moment (as in a child
    /// process forked between the release and its `exec`) is taken once the copy is gone, not
    /// reported as another run's.
    #[test]
    fn a_lock_kept_for_a_moment_by_a_copy_of_its_file_is_waited_for() {
        let folder = std::env::temp_dir().join(format!("vheat-lock-copy-{}", std::process::id()));
        let first = RunLock::acquire(&folder).expect("first lock");
        let copy = first
            ._file
            .try_clone()
            .expect("a second handle on the open file");
        drop(first);
        let holder = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(copy);
        });
        let second = RunLock::acquire(&folder);
        holder.join().expect("holder thread");
        assert!(second.is_ok(), "{:?}", second.err());
        drop(second);
        std::fs::remove_dir_all(&folder).ok();
    }
}
