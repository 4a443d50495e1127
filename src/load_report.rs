//! What happened when a checkpoint was applied to a model: the structured form of a mismatch.

use std::fmt;

/// One tensor whose shape in the checkpoint differs from the model's.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShapeMismatch {
    /// The key, as the model names it.
    pub key: String,
    /// The model's shape.
    pub expected: Vec<usize>,
    /// The checkpoint's shape.
    pub found: Vec<usize>,
}

/// The outcome of applying a checkpoint to a model.
///
/// Strict loading turns a report that is not [`LoadReport::is_clean`] into
/// [`crate::Error::CheckpointMismatch`]; lenient loading hands it back to the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadReport {
    /// Model keys that received a tensor.
    pub applied: Vec<String>,
    /// Model keys that the checkpoint does not provide (model naming).
    pub missing: Vec<String>,
    /// Checkpoint keys that no model parameter takes (checkpoint naming, after key mapping).
    pub unused: Vec<String>,
    /// Keys present on both sides with different shapes.
    pub shape_mismatches: Vec<ShapeMismatch>,
    /// Any other per-tensor failure (dtype conversion, decoding), as `key: message`.
    pub other_errors: Vec<String>,
    /// A prefix removed from every checkpoint key before matching: `module.`, which
    /// `DistributedDataParallel` puts on every key of the model it wraps, is stripped
    /// automatically, and a prefix the caller asked to strip is named here too.
    pub stripped_prefix: Option<String>,
    /// Set when no tensor matched because the checkpoint's keys carry a prefix the model's
    /// keys lack (`backbone.`, `module.`, `model.`): that prefix. The error message is then one
    /// line naming the function or option that loads such a file (see
    /// [`LoadReport::prefix_remedy`]); `missing` and `unused` still list every key.
    pub foreign_prefix: Option<String>,
}

impl LoadReport {
    /// True when every model parameter was loaded and every checkpoint tensor was used.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.unused.is_empty()
            && self.shape_mismatches.is_empty()
            && self.other_errors.is_empty()
    }

    /// How to load a checkpoint whose keys all carry `prefix`, in words naming the function or
    /// option that does it.
    pub fn prefix_remedy(prefix: &str) -> String {
        match prefix {
            "backbone." => "a dense-prediction (mmdet/mmseg) checkpoint: load it with \
                            `VHeat::load_backbone`, or `LoadOptions::backbone()` with \
                            `load_pytorch_into`"
                .into(),
            p => format!(
                "strip it with `LoadOptions::with_strip_prefix({p:?})` (`load_pytorch_into`, \
                 `load_safetensors_into`)"
            ),
        }
    }

    /// True when nothing is missing and nothing failed; unused checkpoint keys are tolerated.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.shape_mismatches.is_empty() && self.other_errors.is_empty()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  applied: {} tensors", self.applied.len())?;
        if let Some(p) = &self.stripped_prefix {
            writeln!(
                f,
                "  stripped the key prefix {p:?} from every checkpoint key"
            )?;
        }
        if !self.missing.is_empty() {
            writeln!(f, "  missing in checkpoint ({}):", self.missing.len())?;
            for k in &self.missing {
                writeln!(f, "    - {k}")?;
            }
        }
        if !self.unused.is_empty() {
            writeln!(f, "  unused checkpoint keys ({}):", self.unused.len())?;
            for k in &self.unused {
                writeln!(f, "    - {k}")?;
            }
        }
        if !self.shape_mismatches.is_empty() {
            writeln!(f, "  shape mismatches ({}):", self.shape_mismatches.len())?;
            for m in &self.shape_mismatches {
                writeln!(
                    f,
                    "    - {}: model expects {:?}, checkpoint has {:?}",
                    m.key, m.expected, m.found
                )?;
            }
        }
        if !self.other_errors.is_empty() {
            writeln!(f, "  other errors ({}):", self.other_errors.len())?;
            for e in &self.other_errors {
                writeln!(f, "    - {e}")?;
            }
        }
        Ok(())
    }
}
