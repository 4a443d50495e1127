//! Exporting a [`VHeat`] back to the reference's PyTorch format, as safetensors.
//!
//! The file holds one bare state dict with the reference's key names and layouts, so that in
//! PyTorch
//!
//! ```python
//! model.load_state_dict(safetensors.torch.load_file(path), strict=True)
//! ```
//!
//! works on the reference's `vHeat` built with the same configuration. Each rule of
//! [`key_rules`](super::key_rules) is undone here by one rule of [`export_key_rules`]; Burn's
//! `BurnToPyTorchAdapter` transposes Linear weights back to `[out, in]` and renames LayerNorm
//! `gamma`/`beta` to `weight`/`bias`.
//!
//! An EMA model is not nested into the same file (safetensors has no nesting, and a prefixed
//! key set would not load with `strict=True`): save it to a second file with the same method.
//! The reference's own `load_checkpoint` reads `torch.load` pickles with `"model"` /
//! `"model_ema"` entries; two exported files make one in PyTorch with
//! `torch.save({"model": load_file(a), "model_ema": load_file(b)}, "ckpt.pth")`. Writing `.pth`
//! directly is not supported.

use std::path::{Path, PathBuf};

use burn::store::{BurnToPyTorchAdapter, KeyRemapper, ModuleSnapshot, SafetensorsStore};

use crate::error::{Error, Result};
use crate::vheat::VHeat;

/// The rules that turn this crate's parameter paths (after Burn's LayerNorm `gamma`/`beta` →
/// `weight`/`bias` renaming) into the reference's state-dict keys, in application order, for a
/// model whose stages have `depths` blocks.
///
/// Each rule inverts one rule of [`key_rules`](super::key_rules).
pub fn export_key_rules(depths: &[usize]) -> Vec<(String, String)> {
    let mut rules: Vec<(String, String)> = Vec::new();
    // The stem's norms go back to index 1 of the reference's (permute, LayerNorm, permute)
    // sequence: `patch_embed.norm1.weight` → `patch_embed.norm1.1.weight`.
    rules.push((
        r"^patch_embed\.norm(\d+)\.".into(),
        "patch_embed.norm$1.1.".into(),
    ));
    // Each stage's FVE goes back to the top-level ParameterList:
    // `layers.2.freq_embed.weight` → `freq_embed.2`.
    rules.push((
        r"^layers\.(\d+)\.freq_embed\.weight$".into(),
        "freq_embed.$1".into(),
    ));
    for (i, &depth) in depths.iter().enumerate() {
        // The downsample is the entry after the stage's `depth` blocks:
        // `layers.{i}.downsample.conv.weight` → `layers.{i}.{depth}.0.weight` …
        rules.push((
            format!(r"^layers\.{i}\.downsample\.conv\."),
            format!("layers.{i}.{depth}.0."),
        ));
        // … and `layers.{i}.downsample.norm.weight` → `layers.{i}.{depth}.1.weight`.
        rules.push((
            format!(r"^layers\.{i}\.downsample\.norm\."),
            format!("layers.{i}.{depth}.1."),
        ));
    }
    // Blocks are the stage sequence's numbered entries:
    // `layers.1.blocks.0.op.dwconv.weight` → `layers.1.0.op.dwconv.weight`.
    rules.push((
        r"^layers\.(\d+)\.blocks\.(\d+)\.".into(),
        "layers.$1.$2.".into(),
    ));
    // `to_k` is `Sequential(Linear, ReLU)` in the reference:
    // `….op.to_k.weight` → `….op.to_k.0.weight`.
    rules.push((r"\.op\.to_k\.".into(), ".op.to_k.0.".into()));
    // The head's LayerNorm is entry 0 of its sequence: `classifier.norm.weight` →
    // `classifier.0.weight` …
    rules.push((r"^classifier\.norm\.".into(), "classifier.0.".into()));
    // … and its Linear entry 3: `classifier.fc.weight` → `classifier.3.weight`.
    rules.push((r"^classifier\.fc\.".into(), "classifier.3.".into()));
    // Output norms go back to attributes: `out_norms.2.weight` → `outnorm2.weight`.
    rules.push((r"^out_norms\.(\d+)\.".into(), "outnorm$1.".into()));
    rules
}

/// A sibling of `path` to write into before renaming onto `path`, unique per process and call
/// (so that concurrent saves never share one).
fn temp_path(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}-{n}.partial", std::process::id()))
}

impl VHeat {
    /// Saves the model as a safetensors file in the reference's PyTorch layout: a bare state
    /// dict that `model.load_state_dict(safetensors.torch.load_file(path), strict=True)` accepts
    /// on the reference's `vHeat` of the same configuration. An existing file is replaced.
    ///
    /// Keys and layouts are the reference's (see [`export_key_rules`]): Linear weights
    /// `[out, in]`, LayerNorm `weight`/`bias`, `patch_embed.norm1.1.*`, `freq_embed.{i}`,
    /// `layers.{i}.{depth}.{0,1}.*` for downsamples, `classifier.0`/`classifier.3`, and
    /// `outnorm{i}` for the output norms of a dense-prediction backbone.
    ///
    /// For an EMA model, call this on it with a second path (see the module docs).
    ///
    /// The file is written beside `path` under a temporary name and renamed onto `path` once
    /// complete, so a failed save never leaves a partial file under `path`.
    ///
    /// # Errors
    /// [`Error::CheckpointWrite`] naming `path`: the model is in the inference form (its
    /// precomputed decay replaces `to_k` and the FVEs, which cannot be recovered; export the
    /// trainable model instead), or the file cannot be written.
    pub fn save_pytorch_safetensors(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let write_error = |reason: String| Error::CheckpointWrite {
            path: path.to_path_buf(),
            reason,
        };
        if self.is_inference() {
            return Err(write_error(
                "the model is in the inference form (precomputed decay): the reference's \
                 trainable `to_k` and `freq_embed` weights cannot be recovered from it; export \
                 the trainable model"
                    .into(),
            ));
        }
        let remap = KeyRemapper::from_patterns(export_key_rules(&self.depths()))
            .map_err(|e| write_error(format!("internal key rule failed to compile: {e}")))?;
        let mut store = SafetensorsStore::from_bytes(None)
            .with_to_adapter(BurnToPyTorchAdapter)
            .remap(remap)
            // PyTorch keys never name enum variants.
            .skip_enum_variants(true)
            .clear_metadata()
            // What `safetensors.torch.save_file` writes.
            .metadata("format", "pt");
        self.save_into(&mut store)
            .map_err(|e| write_error(e.to_string()))?;
        let bytes = store.get_bytes().map_err(|e| write_error(e.to_string()))?;
        write_atomically(path, &bytes)
    }
}

/// Writes `bytes` to a temporary sibling of `path` and renames it onto `path`, so that a failed
/// write never leaves a partial file under `path` (the temporary file is removed).
///
/// # Errors
/// [`Error::CheckpointWrite`] naming `path` with the operating system's message.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let temp = temp_path(path);
    let written = std::fs::write(&temp, bytes).and_then(|()| std::fs::rename(&temp, path));
    if let Err(e) = written {
        // Best effort: the temporary file may not exist if the directory is unwritable.
        let _ = std::fs::remove_file(&temp);
        return Err(Error::CheckpointWrite {
            path: path.to_path_buf(),
            reason: e.to_string(),
        });
    }
    Ok(())
}
