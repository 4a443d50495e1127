//! Loading the backbone of a dense-prediction checkpoint (the reference's `detection/` and
//! `segmentation/` models, trained with mmdet/mmseg): weights under `backbone.`, per-level
//! output norms `backbone.outnorm{i}`, no classifier, and the detector's or segmentor's own
//! keys next to them.

use std::path::Path;

use burn::prelude::*;

use super::load::{load_pytorch_into, load_safetensors_into, LoadOptions};
use crate::error::Result;
use crate::load_report::LoadReport;
use crate::vheat::{Indices, VHeat, VHeatConfig};

impl VHeat {
    /// Builds the model for `config` on `device` and loads the backbone of a checkpoint into it:
    /// a dense-prediction checkpoint (`{"state_dict": …}` with `backbone.` keys, as the
    /// reference's mmdet/mmseg models save them) or a classification one (`{"model": …}`), in
    /// `.pth` or — by the file's `.safetensors` extension — safetensors format.
    ///
    /// The model gets an output norm on exactly the stages whose `outnorm{i}` the checkpoint
    /// holds, so that [`forward_intermediates`](Self::forward_intermediates) returns what the
    /// reference's backbone returns. Loading follows [`LoadOptions::backbone`]: a missing,
    /// unused or mis-shaped stem or stage tensor is an [`Error::CheckpointMismatch`] and
    /// nothing is loaded; the classifier (absent from dense checkpoints: use `num_classes = 0`
    /// for a headless model, or its head keeps its initial weights) and the keys that are not
    /// the backbone's (`neck.…`, `rpn_head.…`, `decode_head.…`) are listed in the returned
    /// report — `missing` and `unused` — and are not errors.
    ///
    /// [`Error::CheckpointMismatch`]: crate::Error::CheckpointMismatch
    pub fn load_backbone(
        path: impl AsRef<Path>,
        config: &VHeatConfig,
        device: &Device,
    ) -> Result<(VHeat, LoadReport)> {
        let path = path.as_ref();
        // Offer an output norm on every stage; those the checkpoint does not fill are removed.
        let mut model = config.try_init(device)?.with_output_norms(Indices::All)?;
        let options = LoadOptions::backbone();
        let is_safetensors = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
        let mut report = if is_safetensors {
            load_safetensors_into(&mut model, path, &options)?
        } else {
            load_pytorch_into(&mut model, path, &options)?
        };
        keep_loaded_output_norms(&mut model, &mut report);
        Ok((model, report))
    }
}

/// Removes from `model` the output norms that `report` says the checkpoint did not fill, and
/// their keys from `report.missing`: a model built with an output norm on every stage then has
/// exactly the checkpoint's.
pub(crate) fn keep_loaded_output_norms(model: &mut VHeat, report: &mut LoadReport) {
    let prefix = |i: usize| format!("out_norms.{i}.");
    for (i, norm) in model.out_norms.iter_mut().enumerate() {
        if report.missing.iter().any(|k| k.starts_with(&prefix(i))) {
            *norm = None;
            report.missing.retain(|k| !k.starts_with(&prefix(i)));
        }
    }
    if model.out_norms.iter().all(Option::is_none) {
        model.out_norms.clear();
    }
}
