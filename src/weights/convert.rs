//! Converting a checkpoint between the formats this crate reads and writes, chosen by the
//! files' extensions: `.pth` (read only), `.safetensors` (the reference's key names and
//! layouts) and `.bpk` (Burn's burnpack).

use std::path::Path;

use burn::prelude::*;

use crate::error::{Error, Result};
use crate::vheat::{VHeat, VHeatConfig};

/// A checkpoint format, as told by a file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat {
    /// `.pth` (`.pt`, `.bin`): a PyTorch pickle (zip) holding `{"model": …}`, `{"state_dict": …}` or a bare
    /// state dict. Read only.
    Pytorch,
    /// `.safetensors`: a bare state dict with the reference's key names and layouts.
    Safetensors,
    /// `.bpk`: Burn's burnpack, as [`VHeat::save_burnpack`] writes it.
    Burnpack,
}

impl CheckpointFormat {
    /// The format of `path` by its extension (case-insensitive), or
    /// [`Error::UnsupportedFormat`] naming it.
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            // `.bin` is what `torch.save` files are often called on model hubs: the same zip.
            Some("pth") | Some("pt") | Some("bin") => Ok(Self::Pytorch),
            Some("safetensors") => Ok(Self::Safetensors),
            Some("bpk") => Ok(Self::Burnpack),
            other => Err(Error::UnsupportedFormat {
                path: path.to_path_buf(),
                reason: format!(
                    "unknown extension {}: expected .pth, .pt, .bin, .safetensors or .bpk",
                    other.map_or("(none)".to_string(), |e| format!("{e:?}"))
                ),
            }),
        }
    }
}

/// Loads `path` (format by extension) into a model built for `config` on `device`, strictly.
pub fn load_any(path: impl AsRef<Path>, config: &VHeatConfig, device: &Device) -> Result<VHeat> {
    let path = path.as_ref();
    match CheckpointFormat::from_path(path)? {
        CheckpointFormat::Pytorch => VHeat::load_pytorch(path, config, device),
        CheckpointFormat::Safetensors => VHeat::load_safetensors(path, config, device),
        CheckpointFormat::Burnpack => VHeat::load_burnpack(path, config, device),
    }
}

/// Saves `model` to `path` in the format its extension names: `.safetensors` through
/// [`VHeat::save_pytorch_safetensors`], `.bpk` through [`VHeat::save_burnpack`]. Writing `.pth`
/// is not supported ([`Error::UnsupportedFormat`]; PyTorch reads the safetensors export).
pub fn save_any(model: &VHeat, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    match CheckpointFormat::from_path(path)? {
        CheckpointFormat::Safetensors => model.save_pytorch_safetensors(path),
        CheckpointFormat::Burnpack => model.save_burnpack(path),
        CheckpointFormat::Pytorch => Err(pth_not_writable(path)),
    }
}

fn pth_not_writable(path: &Path) -> Error {
    Error::UnsupportedFormat {
        path: path.to_path_buf(),
        reason: "writing .pth is not supported: write .safetensors (the reference's key names, \
                 loadable with safetensors.torch.load_file) or .bpk"
            .into(),
    }
}

/// Converts the checkpoint `input` of a model with configuration `config` into `output`, the
/// formats chosen by the extensions (see [`load_any`] and [`save_any`]); the model is built on
/// `device`. Both extensions are checked before anything is read or written.
///
/// # Errors
/// [`Error::UnsupportedFormat`] for an unknown extension or a `.pth` output; the loading errors
/// of [`load_any`] (naming `input`); [`Error::CheckpointWrite`] naming `output`.
pub fn convert(
    input: impl AsRef<Path>,
    output: impl AsRef<Path>,
    config: &VHeatConfig,
    device: &Device,
) -> Result<()> {
    let (input, output) = (input.as_ref(), output.as_ref());
    CheckpointFormat::from_path(input)?;
    if CheckpointFormat::from_path(output)? == CheckpointFormat::Pytorch {
        return Err(pth_not_writable(output));
    }
    let model = load_any(input, config, device)?;
    save_any(&model, output)
}
