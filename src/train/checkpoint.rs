//! A trained model on disk: the weights in Burn's burnpack format (`NAME.bpk`) and, beside them,
//! what is needed to use them (`NAME.json`): the configuration, the class names and the
//! evaluation preprocessing.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde::{Deserialize, Serialize};

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
    model.save_burnpack(path)?;
    let json = serde_json::to_string_pretty(meta).map_err(|e| fail(path, e.to_string()))?;
    let mp = meta_path(path);
    std::fs::write(&mp, json).map_err(|e| fail(&mp, e.to_string()))
}

/// Reads the JSON file of a checkpoint (`path` may be the weights or the JSON file).
///
/// # Errors
/// [`Error::CheckpointRead`] when the file is missing or malformed.
pub fn load_checkpoint_meta(path: impl AsRef<Path>) -> Result<CheckpointMeta> {
    let mp = meta_path(path.as_ref());
    let text = std::fs::read_to_string(&mp).map_err(|e| Error::CheckpointRead {
        path: mp.clone(),
        reason: format!("{e} (a checkpoint is NAME.bpk with NAME.json beside it)"),
    })?;
    let meta: CheckpointMeta = serde_json::from_str(&text).map_err(|e| Error::CheckpointRead {
        path: mp.clone(),
        reason: e.to_string(),
    })?;
    meta.config.validate()?;
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
    /// A reference `.pth` (release format, `{"model": …}`, or a bare state dict) with the
    /// configuration it was trained with.
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
            let report = crate::weights::load_pytorch_into(&mut model, path, &options)?;
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
