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

/// Module paths that make up the backbone: the stem, the stages and the output norms.
const BACKBONE_ROOTS: [&str; 3] = ["patch_embed.", "layers.", "out_norms."];

fn is_backbone(key: &str) -> bool {
    BACKBONE_ROOTS.iter().any(|root| key.starts_with(root))
}

/// The part of `report` that a backbone-only load is judged on
/// ([`LoadOptions::backbone`]): missing stem and stage tensors, any backbone tensor of the
/// checkpoint that the model does not take (e.g. a deeper stage, or output norms the model
/// lacks), and every shape mismatch or other failure on the backbone. Missing output norms are
/// not problems (a classification checkpoint has none; they keep their initial values), nor is
/// anything about the classifier or keys outside the backbone.
pub(crate) fn backbone_problems(report: &LoadReport) -> LoadReport {
    LoadReport {
        applied: report.applied.clone(),
        missing: report
            .missing
            .iter()
            .filter(|k| is_backbone(k) && !k.starts_with("out_norms."))
            .cloned()
            .collect(),
        unused: report
            .unused
            .iter()
            .filter(|k| is_backbone(k))
            .cloned()
            .collect(),
        shape_mismatches: report
            .shape_mismatches
            .iter()
            .filter(|m| is_backbone(&m.key))
            .cloned()
            .collect(),
        other_errors: report.other_errors.clone(),
        stripped_prefix: report.stripped_prefix.clone(),
        foreign_prefix: report.foreign_prefix.clone(),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load_report::ShapeMismatch;

    #[test]
    fn only_backbone_keys_are_problems() {
        let report = LoadReport {
            applied: vec!["layers.0.blocks.0.op.linear.weight".into()],
            missing: vec![
                "classifier.norm.gamma".into(),
                "layers.1.freq_embed.weight".into(),
                "out_norms.0.gamma".into(),
            ],
            unused: vec![
                "neck.fpn.0.weight".into(),
                "out_norms.3.weight".into(),
                "layers.3.blocks.5.norm1.weight".into(),
            ],
            shape_mismatches: vec![
                ShapeMismatch {
                    key: "classifier.fc.weight".into(),
                    expected: vec![8, 10],
                    found: vec![8, 1000],
                },
                ShapeMismatch {
                    key: "patch_embed.conv1.weight".into(),
                    expected: vec![8, 3, 3, 3],
                    found: vec![8, 4, 3, 3],
                },
            ],
            other_errors: vec![],
            ..LoadReport::default()
        };
        let p = backbone_problems(&report);
        assert_eq!(p.missing, vec!["layers.1.freq_embed.weight"]);
        assert_eq!(
            p.unused,
            vec!["out_norms.3.weight", "layers.3.blocks.5.norm1.weight"]
        );
        assert_eq!(p.shape_mismatches.len(), 1);
        assert_eq!(p.shape_mismatches[0].key, "patch_embed.conv1.weight");
        assert!(!p.is_clean());
    }
}
