//! Where a training run starts: the small model of the main job, and the model a fine-tuning
//! run on an image folder begins from (our checkpoint, a reference `.pth`, or fresh weights),
//! with the side it trains at.

use std::path::Path;

use burn::prelude::*;

use super::checkpoint::{pretrained_for_fine_tuning, Pretrained};
use crate::data::ImageFolder;
use crate::error::Result;
use crate::vheat::{VHeat, VHeatConfig};

/// The small vHeat of the main job: 4 stages, depths 1-1-2-1, widths 16…128.
pub fn small_config(size: usize, classes: usize) -> VHeatConfig {
    VHeatConfig::new(vec![1, 1, 2, 1], vec![16, 32, 64, 128])
        .with_num_classes(classes)
        .with_img_size(size)
        .with_post_norm(false)
        .with_drop_path_rate(0.05)
}

/// The model an image-folder run starts from, its configuration (with the folder's class
/// count) and the side it trains at.
#[derive(Debug)]
pub struct StartingModel {
    /// The model, with a classifier for the folder's classes.
    pub model: VHeat,
    /// Its configuration.
    pub config: VHeatConfig,
    /// The input side to train at.
    pub size: usize,
}

/// The model to train on `train`'s classes: with `from`, that checkpoint's backbone (ours,
/// `NAME.bpk` + `NAME.json`, or a reference `.pth`/`.pt`/`.bin`/`.safetensors` of configuration
/// `pth_config`) under a new classifier, at `size` or the checkpoint's side; without, a fresh
/// [`small_config`] model seeded with `seed`, at `size` or [`native_side`].
///
/// # Errors
/// The loaders' errors, naming the file; [`crate::Error::InvalidConfig`] for a side the model
/// cannot take (checked alike from scratch and fine-tuning); [`crate::Error::ImageRead`] when
/// the native side is needed and the first image's header cannot be read.
pub fn starting_model(
    from: Option<&Path>,
    pth_config: impl FnOnce() -> Result<VHeatConfig>,
    size: Option<usize>,
    seed: u64,
    train: &ImageFolder,
    device: &Device,
) -> Result<StartingModel> {
    let classes = train.classes.len();
    let Some(from) = from else {
        let size = match size {
            Some(s) => s,
            None => native_side(train)?,
        };
        let config = small_config(size, classes);
        let model = config.init_seeded(device, seed)?;
        return Ok(StartingModel {
            model,
            config,
            size,
        });
    };
    let is_pth = from
        .extension()
        .is_some_and(|e| e == "pth" || e == "pt" || e == "bin" || e == "safetensors");
    let pretrained = if is_pth {
        Pretrained::Pytorch(from.to_path_buf(), pth_config()?)
    } else {
        Pretrained::Ours(from.to_path_buf())
    };
    let (model, config) = pretrained_for_fine_tuning(&pretrained, classes, device)?;
    let size = size.unwrap_or(config.img_size);
    // The side is checked as for a model built at it: a size the network cannot take would
    // train, then be refused by every reader of the checkpoint.
    config.clone().with_img_size(size).validate()?;
    Ok(StartingModel {
        model,
        config,
        size,
    })
}

/// The side a from-scratch run trains at when no size is given: the shorter side of the
/// folder's first image, clamped to 32 (the network's total stride) … 224; 64 for an empty
/// folder.
///
/// # Errors
/// [`crate::Error::ImageRead`] if that image's header cannot be read.
pub fn native_side(train: &ImageFolder) -> Result<usize> {
    let Some(first) = train.samples.first() else {
        return Ok(64);
    };
    let (w, h) = crate::data::image_dimensions(&first.path)?;
    Ok((w.min(h) as usize).clamp(32, 224))
}
