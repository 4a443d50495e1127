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
}

impl LoadReport {
    /// True when every model parameter was loaded and every checkpoint tensor was used.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.unused.is_empty()
            && self.shape_mismatches.is_empty()
            && self.other_errors.is_empty()
    }

    /// True when nothing is missing and nothing failed; unused checkpoint keys are tolerated.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.shape_mismatches.is_empty() && self.other_errors.is_empty()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  applied: {} tensors", self.applied.len())?;
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
