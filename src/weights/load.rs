//! Loading reference checkpoints (`.pth`, safetensors) into a [`VHeat`] through burn-store.

use std::path::Path;

use burn::prelude::*;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{ApplyError, ApplyResult, KeyRemapper, SafetensorsStore};

use super::guard::{apply_store, apply_tensors, non_finite_keys, Layout};
use super::keys::key_rules;
use super::pth::read_state_dict;
use crate::error::{Error, Result};
use crate::load_report::{LoadReport, ShapeMismatch};
use crate::vheat::{VHeat, VHeatConfig};

/// Where the state dict sits inside a `.pth` file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StateDictKey {
    /// `"model"` if present, else `"state_dict"`, else the file is a bare state dict.
    #[default]
    Auto,
    /// Under this top-level key (e.g. `"model_ema"` for the EMA weights of a release).
    Key(String),
    /// The file is a bare state dict.
    Bare,
}

/// How to load a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Where the state dict sits in a `.pth` (ignored for safetensors).
    pub key: StateDictKey,
    /// Strict (default): any missing key, unused key or shape mismatch is an error and the model
    /// is left unchanged. Lenient: matching tensors are loaded and the report is returned.
    pub strict: bool,
    /// Strip a `backbone.` prefix (dense-prediction checkpoints) before mapping keys.
    pub backbone_prefix: bool,
    /// Judge only the backbone (stem, stages, output norms): the classifier and keys that are
    /// not the backbone's (detector or segmentor heads) are reported, never an error. See
    /// [`LoadOptions::backbone`].
    pub backbone_only: bool,
    /// Strip this prefix from every checkpoint key that has it before mapping keys (e.g.
    /// `"model."` for a state dict saved from a wrapper module). DDP's `module.` is stripped
    /// without asking when every key has it.
    pub strip_prefix: Option<String>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            key: StateDictKey::Auto,
            strict: true,
            backbone_prefix: false,
            backbone_only: false,
            strip_prefix: None,
        }
    }
}

impl LoadOptions {
    /// Strict loading from the default location (`"model"`, `"state_dict"` or bare).
    pub fn strict() -> Self {
        Self::default()
    }

    /// Lenient loading: load what matches and report the rest.
    pub fn lenient() -> Self {
        Self {
            strict: false,
            ..Self::default()
        }
    }

    /// Reads the state dict from this top-level key (e.g. `"model_ema"`).
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = StateDictKey::Key(key.into());
        self
    }

    /// Reads a bare state dict.
    pub fn bare(mut self) -> Self {
        self.key = StateDictKey::Bare;
        self
    }

    /// Strips a `backbone.` prefix from every key first.
    pub fn with_backbone_prefix(mut self, yes: bool) -> Self {
        self.backbone_prefix = yes;
        self
    }

    /// Loading the backbone of a dense-prediction checkpoint (mmdet/mmseg layout, weights under
    /// `backbone.`): strict on the stem, the stages and the output norms the checkpoint has —
    /// a missing, unused or mis-shaped backbone tensor is an error — while the classifier
    /// (absent from such checkpoints) and the detector/segmentor keys (`neck.…`, `decode_head.…`)
    /// are only listed in the returned report. A model without output norms rejects a checkpoint
    /// that has them; build it with [`VHeat::with_output_norms`] or use
    /// [`VHeat::load_backbone`], which adds them.
    pub fn backbone() -> Self {
        Self {
            backbone_prefix: true,
            backbone_only: true,
            ..Self::default()
        }
    }

    /// Strips `prefix` (e.g. `"model."`) from every checkpoint key that starts with it.
    pub fn with_strip_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.strip_prefix = Some(prefix.into());
        self
    }

    /// Judges only the backbone (see [`LoadOptions::backbone`]).
    pub fn with_backbone_only(mut self, yes: bool) -> Self {
        self.backbone_only = yes;
        self
    }
}

fn remapper(model: &VHeat, options: &LoadOptions) -> Result<KeyRemapper> {
    KeyRemapper::from_patterns(key_rules(&model.depths(), options.backbone_prefix))
        .map_err(|e| Error::InvalidConfig(format!("internal key rule failed to compile: {e}")))
}

/// Burn's apply result in this crate's report form.
pub(crate) fn to_report(result: ApplyResult) -> LoadReport {
    let mut report = LoadReport {
        applied: result.applied,
        missing: result.missing.into_iter().map(|(path, _)| path).collect(),
        unused: result.unused,
        ..LoadReport::default()
    };
    for e in result.errors {
        match e {
            ApplyError::ShapeMismatch {
                path,
                expected,
                found,
            } => report.shape_mismatches.push(ShapeMismatch {
                key: path,
                expected: expected.to_vec(),
                found: found.to_vec(),
            }),
            other => report.other_errors.push(other.to_string()),
        }
    }
    report.missing.sort();
    report.unused.sort();
    report
}

/// Applies `apply` to a clone of `model`, and commits it only if the result is acceptable:
/// nothing mismatched (strictly: nothing missing or unused either) and every loaded tensor
/// finite.
pub(crate) fn apply_checked(
    model: &mut VHeat,
    path: &Path,
    options: &LoadOptions,
    apply: impl FnOnce(&mut VHeat) -> std::result::Result<ApplyResult, String>,
) -> Result<LoadReport> {
    let mut candidate = model.clone();
    let result = apply(&mut candidate).map_err(|reason| Error::CheckpointRead {
        path: path.to_path_buf(),
        reason,
    })?;
    let report = to_report(result);
    if options.backbone_only {
        // Only the backbone's part is judged; the rest stays in the returned report.
        let problems = super::backbone_scope::backbone_problems(&report);
        if options.strict && !problems.is_clean() {
            return Err(Error::CheckpointMismatch {
                path: path.to_path_buf(),
                report: Box::new(problems),
            });
        }
    } else if options.strict && !report.is_clean() {
        return Err(Error::CheckpointMismatch {
            path: path.to_path_buf(),
            report: Box::new(report),
        });
    }
    if !report.shape_mismatches.is_empty() || !report.other_errors.is_empty() {
        // Even leniently, a tensor that could not be applied is reported, and nothing is
        // committed half-way.
        return Err(Error::CheckpointMismatch {
            path: path.to_path_buf(),
            report: Box::new(report),
        });
    }
    let non_finite =
        non_finite_keys(&candidate, &report.applied).map_err(|reason| Error::CheckpointRead {
            path: path.to_path_buf(),
            reason,
        })?;
    if !non_finite.is_empty() {
        return Err(Error::NonFiniteWeights {
            path: path.to_path_buf(),
            keys: non_finite,
        });
    }
    *model = candidate;
    Ok(report)
}

/// A readable regular file, or [`Error::CheckpointRead`] naming it: a FIFO, a device or a folder
/// is refused by its type, before an open that could block or never end.
pub(crate) fn check_file(path: &Path) -> Result<()> {
    let reason = match std::fs::metadata(path) {
        Ok(_) => match crate::special_file::not_a_regular_file(path) {
            None => return Ok(()),
            Some(reason) => reason,
        },
        Err(e) => e.to_string(),
    };
    Err(Error::CheckpointRead {
        path: path.to_path_buf(),
        reason,
    })
}

/// Loads a reference `.pth` checkpoint into `model` (in place).
///
/// Reads whatever `torch.save` wrote, in the zip or the legacy format: only the state dict
/// that `options.key` names is loaded; everything else in the file (optimizer and scheduler
/// state, a yacs `CfgNode`, numpy values, any other object) is read as data and ignored,
/// never executed. Tensors may be views into shared storages. Keys that all start with
/// `module.` (a `DistributedDataParallel` model) are stripped, and
/// [`LoadReport::stripped_prefix`] says so.
///
/// Strict mode returns [`Error::CheckpointMismatch`] listing every missing key, unused key and
/// shape mismatch, and leaves `model` unchanged; lenient mode loads what fits and returns the
/// report (a shape mismatch is still an error). A model in the inference form loads the
/// reference's inference checkpoints (`op.k_exp`).
///
/// In both modes: f64, f16 and bf16 tensors are converted to the model's float dtype; a tensor
/// of another kind (integers, quantized) is an error naming the key and its dtype; a loaded
/// tensor holding NaN or infinity is [`Error::NonFiniteWeights`]; a file that cannot be read
/// (missing, truncated, corrupt) is [`Error::CheckpointRead`]. On any error `model` is left
/// unchanged.
pub fn load_pytorch_into(
    model: &mut VHeat,
    path: impl AsRef<Path>,
    options: &LoadOptions,
) -> Result<LoadReport> {
    let path = path.as_ref();
    check_file(path)?;
    let remap = remapper(model, options)?;
    let keys: Vec<Option<String>> = match &options.key {
        StateDictKey::Auto => vec![Some("model".into()), Some("state_dict".into()), None],
        StateDictKey::Key(k) => vec![Some(k.clone())],
        StateDictKey::Bare => vec![None],
    };
    let read_error = |reason: String| Error::CheckpointRead {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| read_error(e.to_string()))?;
    let mut tensors = read_state_dict(bytes, keys).map_err(read_error)?;
    let stripped = strip_prefix(&mut tensors, options);
    let (tensors, _) = remap.remap(tensors);
    let checkpoint_keys: Vec<String> = tensors.iter().map(|t| t.name.clone()).collect();
    // Tensors the model cannot take are refused by their declared size, before their bytes are
    // read (a `.pth` tensor is inflated only when its data is drawn).
    let (tensors, misfits) = super::misfits::take_misfits(model, tensors);
    let result = apply_checked(model, path, options, |m| {
        let mut result = apply_tensors(m, tensors, Layout::PyTorch);
        super::misfits::report_misfits(&mut result, misfits);
        Ok(result)
    });
    annotate(result, stripped, &checkpoint_keys)
}

/// DDP's `module.` when every key has it, and the prefix `options` names on the keys that
/// have it: stripped from `tensors`; returns what was stripped, for the report.
fn strip_prefix(tensors: &mut [PackTensor], options: &LoadOptions) -> Option<String> {
    const DDP: &str = "module.";
    let mut stripped = None;
    if !tensors.is_empty() && tensors.iter().all(|t| t.name.starts_with(DDP)) {
        for t in tensors.iter_mut() {
            t.name = t.name[DDP.len()..].to_string();
        }
        stripped = Some(DDP.to_string());
    }
    if let Some(prefix) = options.strip_prefix.as_deref().filter(|p| !p.is_empty()) {
        let mut any = false;
        for t in tensors.iter_mut() {
            if let Some(rest) = t.name.strip_prefix(prefix) {
                t.name = rest.to_string();
                any = true;
            }
        }
        if any {
            stripped = Some(match stripped {
                Some(ddp) => format!("{ddp}{prefix}"),
                None => prefix.to_string(),
            });
        }
    }
    stripped
}

/// The prefixes a checkpoint's keys carry when they come from a wrapper or a larger model.
const FOREIGN_PREFIXES: [&str; 3] = ["backbone.", "module.", "model."];

/// The prefix that explains why nothing matched: nothing was applied and at least half of the
/// checkpoint's keys start with it.
fn foreign_prefix(report: &LoadReport, checkpoint_keys: &[String]) -> Option<String> {
    if !report.applied.is_empty() || checkpoint_keys.is_empty() {
        return None;
    }
    FOREIGN_PREFIXES
        .iter()
        .find(|p| {
            2 * checkpoint_keys
                .iter()
                .filter(|k| k.starts_with(**p))
                .count()
                >= checkpoint_keys.len()
        })
        .map(|p| p.to_string())
}

/// Adds to the report (returned or inside a mismatch error) the prefix that was stripped and
/// the prefix that explains a total mismatch.
fn annotate(
    result: Result<LoadReport>,
    stripped: Option<String>,
    checkpoint_keys: &[String],
) -> Result<LoadReport> {
    match result {
        Ok(mut report) => {
            report.stripped_prefix = stripped;
            Ok(report)
        }
        Err(Error::CheckpointMismatch { path, mut report }) => {
            report.stripped_prefix = stripped;
            report.foreign_prefix = foreign_prefix(&report, checkpoint_keys);
            Err(Error::CheckpointMismatch { path, report })
        }
        Err(e) => Err(e),
    }
}

/// Loads a safetensors file with the reference's key names into `model` (in place).
///
/// Same strictness rules as [`load_pytorch_into`].
pub fn load_safetensors_into(
    model: &mut VHeat,
    path: impl AsRef<Path>,
    options: &LoadOptions,
) -> Result<LoadReport> {
    let path = path.as_ref();
    check_file(path)?;
    let remap = remapper(model, options)?;
    // The PyTorch layout adapter is applied by `apply_store`.
    let mut store = SafetensorsStore::from_file(path)
        .remap(remap)
        .map_indices_contiguous(false)
        .allow_partial(true)
        .validate(false);
    apply_checked(model, path, options, |m| {
        apply_store(m, &mut store, Layout::PyTorch)
    })
}

impl VHeat {
    /// Builds the model for `config` on `device` and loads a reference `.pth` checkpoint into it,
    /// strictly: the state dict under `"model"` (or `"state_dict"`), or a bare state dict.
    pub fn load_pytorch(
        path: impl AsRef<Path>,
        config: &VHeatConfig,
        device: &Device,
    ) -> Result<VHeat> {
        let mut model = config.try_init(device)?;
        load_pytorch_into(&mut model, path, &LoadOptions::strict())?;
        Ok(model)
    }

    /// Builds the model for `config` on `device` and loads a safetensors file with the
    /// reference's key names into it, strictly.
    pub fn load_safetensors(
        path: impl AsRef<Path>,
        config: &VHeatConfig,
        device: &Device,
    ) -> Result<VHeat> {
        let mut model = config.try_init(device)?;
        load_safetensors_into(&mut model, path, &LoadOptions::strict())?;
        Ok(model)
    }
}
