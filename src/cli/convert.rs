//! `vheat convert`: a checkpoint from one format to another.
//!
//! Today: a reference checkpoint (`.pth`/`.pt`/`.bin`, or `.safetensors`, with `--config`) →
//! our checkpoint (`NAME.bpk` + `NAME.json`, readable by `vheat classify --from`). The export
//! direction (our `.bpk` → `.pth`/safetensors) is the hook [`export`], not wired yet.

use std::path::{Path, PathBuf};

use burn::prelude::Device;
use clap::Parser;

use super::classify::is_reference;
use super::resolve_config;
use crate::data::imagenet_classes;
use crate::error::{Error, Result};
use crate::train::{meta_path, save_checkpoint, CheckpointMeta};
use crate::vheat::VHeatConfig;
use crate::weights::{load_pytorch_into, load_safetensors_into, LoadOptions};

/// Arguments of `vheat convert`.
#[derive(Debug, Clone, Parser)]
#[command(
    about = "Convert a checkpoint: .pth or .safetensors → our .bpk + .json (the export direction is not available yet)"
)]
pub struct ConvertArgs {
    /// The checkpoint to read: .pth/.pt/.bin (PyTorch), .safetensors, or our .bpk.
    #[arg(value_name = "INPUT")]
    pub input: PathBuf,

    /// The file to write; its extension picks the format (.bpk: ours, with NAME.json beside it).
    #[arg(value_name = "OUTPUT")]
    pub output: PathBuf,

    /// Configuration of a reference INPUT: tiny, small, base, or a JSON file.
    #[arg(long, value_name = "NAME|FILE", default_value = "tiny")]
    pub config: String,

    /// Entry of a .pth that holds the state dict (the release files hold "model" and
    /// "model_ema") [default: "model", then "state_dict", then the bare dict].
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,

    /// Input side recorded in the written .json for classification [default: the
    /// configuration's img_size].
    #[arg(long, value_name = "S")]
    pub size: Option<usize>,
}

/// The checkpoint formats `convert` knows, by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// PyTorch's zip format (`.pth`, `.pt`, `.bin`).
    Pytorch,
    /// safetensors with the reference's key names.
    Safetensors,
    /// Our checkpoint: Burn's burnpack (`.bpk`) with a `.json` beside it.
    Burnpack,
}

impl Format {
    /// The format of `path`, from its extension.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for another extension.
    pub fn of(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("bpk") => Ok(Self::Burnpack),
            Some("safetensors") => Ok(Self::Safetensors),
            Some(_) if is_reference(path) => Ok(Self::Pytorch),
            _ => Err(Error::Unsupported(format!(
                "{}: unknown checkpoint format (expected .pth, .pt, .bin, .safetensors or .bpk)",
                path.display()
            ))),
        }
    }
}

/// Export: our checkpoint `input` (`.bpk` + `.json`) → a safetensors file with the
/// reference's key names and layouts ([`VHeat::save_pytorch_safetensors`]), which the
/// reference's `vHeat` loads with `strict=True`.
///
/// # Errors
/// The checkpoint's read errors naming `input`; [`Error::Unsupported`] for a `.pth` output
/// (`.pth` is read, not written); [`Error::CheckpointWrite`] naming `output`.
pub fn export(input: &Path, output: &Path, format: Format) -> Result<()> {
    if format == Format::Pytorch {
        return Err(Error::Unsupported(format!(
            "writing {}: .pth is read, not written; export to .safetensors (the reference \
             loads it with `load_state_dict(safetensors.torch.load_file(..), strict=True)`)",
            output.display()
        )));
    }
    let (model, _meta) = crate::train::load_checkpoint(input, &Device::default())?;
    model.save_pytorch_safetensors(output)?;
    println!(
        "{} → {} (reference key names and layouts)",
        input.display(),
        output.display()
    );
    Ok(())
}

/// Reads the reference checkpoint `input` (`format` Pytorch or Safetensors) strictly into a
/// model of `config` and writes it as our checkpoint `output` (`.bpk` + `.json`).
///
/// # Errors
/// The loaders' errors (naming `input`), [`Error::CheckpointWrite`] naming `output`.
pub fn import(args: &ConvertArgs, format: Format, config: VHeatConfig) -> Result<()> {
    let device = Device::default();
    let mut model = config.try_init(&device)?;
    let mut options = LoadOptions::strict();
    if let Some(key) = &args.key {
        options = options.with_key(key.clone());
    }
    let report = match format {
        Format::Safetensors => load_safetensors_into(&mut model, &args.input, &options)?,
        _ => load_pytorch_into(&mut model, &args.input, &options)?,
    };
    let classes = if config.num_classes == 1000 {
        imagenet_classes().into_iter().map(String::from).collect()
    } else {
        (0..config.num_classes)
            .map(|i| format!("class {i}"))
            .collect()
    };
    let meta = CheckpointMeta {
        image_size: args.size.unwrap_or(config.img_size),
        config,
        classes,
        crop_pct: 224.0 / 256.0,
    };
    save_checkpoint(&model, &meta, &args.output)?;
    println!(
        "{} ({} tensors) → {} + {}",
        args.input.display(),
        report.applied.len(),
        args.output.display(),
        meta_path(&args.output).display()
    );
    Ok(())
}

/// Runs `vheat convert`.
///
/// # Errors
/// [`Error::Unsupported`] for a direction that is not available (same format both sides, the
/// export); otherwise as [`import`].
pub fn run(args: ConvertArgs) -> Result<()> {
    let from = Format::of(&args.input)?;
    let to = Format::of(&args.output)?;
    match (from, to) {
        (Format::Pytorch | Format::Safetensors, Format::Burnpack) => {
            let config = resolve_config(&args.config)?;
            import(&args, from, config)
        }
        (Format::Burnpack, Format::Pytorch | Format::Safetensors) => {
            export(&args.input, &args.output, to)
        }
        _ => Err(Error::Unsupported(format!(
            "converting {from:?} to {to:?}: convert a reference checkpoint to .bpk, or (later) \
             a .bpk to a reference format"
        ))),
    }
}
