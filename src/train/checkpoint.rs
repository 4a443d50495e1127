//! A trained model on disk: the weights in Burn's burnpack format (`NAME.bpk`) and, beside them,
//! what is needed to use them (`NAME.json`): the configuration, the class names and the
//! evaluation preprocessing.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::run::write_atomically;
use crate::error::{Error, Result};
use crate::vheat::{VHeat, VHeatConfig};

/// What a checkpoint's JSON file holds besides the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// The model's configuration (its `num_classes` matches `classes`).
    pub config: VHeatConfig,
    /// The class names, in output order.
    pub classes: Vec<String>,
    /// The input side the model was trained at.
    pub image_size: usize,
    /// The evaluation crop fraction: images are resized to `image_size / crop_pct` on the
    /// shorter side and centre-cropped (0.875 = timm's and the reference's 256/224; 1.0 for
    /// images that are already square crops, like the synthetic dataset's).
    pub crop_pct: f64,
}

impl CheckpointMeta {
    /// The record of a model of `config` with the output classes `classes`, trained at input
    /// side `image_size`, evaluated with the centre-crop fraction `crop_pct`.
    pub fn new(
        config: VHeatConfig,
        classes: Vec<String>,
        image_size: usize,
        crop_pct: f64,
    ) -> Self {
        Self {
            config,
            classes,
            image_size,
            crop_pct,
        }
    }
}

/// The JSON file that goes with the weights file `weights` (same name, `.json`).
pub fn meta_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

/// Saves `model` to `path` (burnpack; a `.bpk` extension is usual) and `meta` to the JSON
/// file beside it ([`meta_path`]). Parent folders are created.
///
/// # Errors
/// [`Error::CheckpointWrite`] naming the file that could not be written.
pub fn save_checkpoint(model: &VHeat, meta: &CheckpointMeta, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let fail = |p: &Path, reason: String| Error::CheckpointWrite {
        path: p.to_path_buf(),
        reason,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| fail(dir, e.to_string()))?;
    }
    // Both files under names of this process's own first, then renamed into place: a reader
    // (or a concurrent writer) never sees half a file.
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!("{stem}.{}.tmp.bpk", std::process::id()));
    model.save_burnpack(&tmp)?;
    let json = serde_json::to_string_pretty(meta).map_err(|e| fail(path, e.to_string()))?;
    let mp = meta_path(path);
    let done = std::fs::rename(&tmp, path)
        .map_err(|e| fail(path, e.to_string()))
        .and_then(|()| {
            write_atomically(&mp, json.as_bytes()).map_err(|e| fail(&mp, e.to_string()))
        });
    std::fs::remove_file(&tmp).ok();
    done
}

/// The same file, as far as can be told before it exists: both paths made absolute with their
/// folders resolved (links followed).
fn same_file(a: &Path, b: &Path) -> bool {
    let resolve = |p: &Path| -> PathBuf {
        if let Ok(c) = p.canonicalize() {
            return c;
        }
        let parent = p.parent().filter(|d| !d.as_os_str().is_empty());
        let dir = parent.map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let dir = dir.canonicalize().unwrap_or(dir);
        dir.join(p.file_name().unwrap_or_default())
    };
    resolve(a) == resolve(b)
}

/// Refuses a checkpoint `output` (its weights or the JSON beside them, [`meta_path`]) that
/// would overwrite one of `inputs` (each a path and what it is, for the message): a writer
/// never destroys what the command was given.
///
/// # Errors
/// [`Error::OutputIsInput`] naming the file and the input it is.
pub fn refuse_overwriting_inputs(output: &Path, inputs: &[(&Path, &str)]) -> Result<()> {
    for written in [output.to_path_buf(), meta_path(output)] {
        for (input, what) in inputs {
            if same_file(&written, input) {
                return Err(Error::OutputIsInput {
                    path: written,
                    what: (*what).to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Reads the JSON file of a checkpoint (`path` may be the weights or the JSON file).
///
/// # Errors
/// [`Error::CheckpointRead`] when the file is missing or malformed.
pub fn load_checkpoint_meta(path: impl AsRef<Path>) -> Result<CheckpointMeta> {
    let mp = meta_path(path.as_ref());
    if let Some(reason) = crate::special_file::not_a_regular_file(&mp) {
        return Err(Error::CheckpointRead { path: mp, reason });
    }
    let text = std::fs::read_to_string(&mp).map_err(|e| Error::CheckpointRead {
        path: mp.clone(),
        reason: format!("{e} (a checkpoint is NAME.bpk with NAME.json beside it)"),
    })?;
    let meta: CheckpointMeta = serde_json::from_str(&text).map_err(|e| Error::CheckpointRead {
        path: mp.clone(),
        reason: e.to_string(),
    })?;
    meta.config.validate()?;
    // Values that change predictions are refused, not replaced: a reader must not quietly
    // preprocess differently from what the file says.
    if !(meta.crop_pct > 0.0 && meta.crop_pct <= 1.0) {
        return Err(Error::CheckpointRead {
            path: mp,
            reason: format!("`crop_pct` {} is outside (0, 1]", meta.crop_pct),
        });
    }
    if meta.image_size < meta.config.total_stride() {
        return Err(Error::CheckpointRead {
            path: mp,
            reason: format!(
                "`image_size` {} is smaller than the network's total stride {}",
                meta.image_size,
                meta.config.total_stride()
            ),
        });
    }
    if meta.config.num_classes != meta.classes.len() {
        return Err(Error::CheckpointRead {
            path: mp,
            reason: format!(
                "the configuration has {} classes but {} class names are listed",
                meta.config.num_classes,
                meta.classes.len()
            ),
        });
    }
    Ok(meta)
}

/// Loads a checkpoint written by [`save_checkpoint`]: the model on `device`, and its meta data.
///
/// # Errors
/// [`Error::CheckpointRead`] for a missing or malformed file; [`Error::CheckpointMismatch`] if
/// the weights do not fit the configuration.
pub fn load_checkpoint(path: impl AsRef<Path>, device: &Device) -> Result<(VHeat, CheckpointMeta)> {
    let path = path.as_ref();
    let weights = if path.extension().is_some_and(|e| e == "json") {
        path.with_extension("bpk")
    } else {
        path.to_path_buf()
    };
    let meta = load_checkpoint_meta(&weights)?;
    if let Some(reason) = crate::special_file::not_a_regular_file(&weights) {
        return Err(Error::CheckpointRead {
            path: weights,
            reason,
        });
    }
    if !weights.is_file() {
        return Err(Error::CheckpointRead {
            path: weights,
            reason: "no such file".into(),
        });
    }
    let model = VHeat::load_burnpack(&weights, &meta.config, device)?;
    Ok((model, meta))
}

/// Where a fine-tuning run starts from.
#[derive(Debug, Clone, PartialEq)]
pub enum Pretrained {
    /// A checkpoint written by [`save_checkpoint`] (`NAME.bpk` + `NAME.json`).
    Ours(PathBuf),
    /// A reference `.pth` (release format, `{"model": …}`, or a bare state dict), or a
    /// `.safetensors` file with the reference's key names, with the configuration it was
    /// trained with.
    Pytorch(PathBuf, VHeatConfig),
}

/// A pretrained model with a fresh `num_classes`-way classifier, ready to fine-tune, and its
/// configuration (with the new class count).
///
/// Everything but the classifier's final Linear is loaded strictly: a missing backbone tensor,
/// a tensor the model has no place for, or a shape mismatch is an error; the old classifier is
/// dropped whatever its size.
///
/// # Errors
/// [`Error::CheckpointRead`] or [`Error::CheckpointMismatch`] from the loaders;
/// [`Error::InvalidConfig`] for `num_classes == 0`.
pub fn pretrained_for_fine_tuning(
    from: &Pretrained,
    num_classes: usize,
    device: &Device,
) -> Result<(VHeat, VHeatConfig)> {
    if num_classes == 0 {
        return Err(Error::InvalidConfig(
            "fine-tuning needs at least one class".into(),
        ));
    }
    let (mut model, mut config) = match from {
        Pretrained::Ours(path) => {
            let (model, meta) = load_checkpoint(path, device)?;
            (model, meta.config)
        }
        Pretrained::Pytorch(path, config) => {
            let mut model = config.clone().with_num_classes(0).try_init(device)?;
            let options = crate::weights::LoadOptions::lenient();
            let safetensors = path.extension().is_some_and(|e| e == "safetensors");
            let report = if safetensors {
                crate::weights::load_safetensors_into(&mut model, path, &options)?
            } else {
                crate::weights::load_pytorch_into(&mut model, path, &options)?
            };
            let mut stray = report.clone();
            stray
                .unused
                .retain(|k| !(k.starts_with("classifier.3.") || k.starts_with("classifier.fc.")));
            if !stray.missing.is_empty() || !stray.unused.is_empty() {
                return Err(Error::CheckpointMismatch {
                    path: path.clone(),
                    report: Box::new(stray),
                });
            }
            (model, config.clone())
        }
    };
    model.reset_classifier(num_classes);
    config.num_classes = num_classes;
    Ok((model, config))
}
