//! Which checkpoint keys belong to the backbone (stem, stages, output norms), and the part of a
//! load report that a backbone-only load is judged on. Used by the loader
//! ([`LoadOptions::backbone`](super::LoadOptions::backbone)) and by
//! [`VHeat::load_backbone`](crate::VHeat::load_backbone), which sits on top of the loader.

use crate::load_report::LoadReport;

/// Module paths that make up the backbone: the stem, the stages and the output norms.
const BACKBONE_ROOTS: [&str; 3] = ["patch_embed.", "layers.", "out_norms."];

fn is_backbone(key: &str) -> bool {
    BACKBONE_ROOTS.iter().any(|root| key.starts_with(root))
}

/// The part of `report` that a backbone-only load is judged on
/// ([`LoadOptions::backbone`](super::LoadOptions::backbone)): missing stem and stage tensors, any backbone tensor of the
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
            stripped_prefix: None,
            foreign_prefix: None,
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
