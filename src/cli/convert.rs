//! `vheat convert`: a checkpoint from one format to another.
//!
//! A reference checkpoint (`.pth`/`.pt`/`.bin`, or `.safetensors`, with `--config`) → our
//! checkpoint (`NAME.bpk` + `NAME.json`, readable by `vheat classify --from`) with [`import`];
//! our `.bpk` → the reference's safetensors (key names and layouts) with [`export`].

use std::path::{Path, PathBuf};

use clap::Parser;

use super::classify::reference_classes;
use super::resolve_config;
use crate::error::{Error, Result};
use crate::train::{meta_path, refuse_overwriting_inputs, save_checkpoint, CheckpointMeta};
use crate::vheat::VHeatConfig;
use crate::weights::{load_pytorch_into, load_safetensors_into, CheckpointFormat, LoadOptions};

/// Arguments of `vheat convert`.
#[derive(Debug, Clone, Parser)]
#[command(
    about = "Convert a checkpoint: .pth or .safetensors → our .bpk + .json, or our .bpk → the reference's .safetensors"
)]
#[non_exhaustive]
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

/// Export: our checkpoint `input` (`.bpk` + `.json`) → a safetensors file with the
/// reference's key names and layouts ([`VHeat::save_pytorch_safetensors`]), which the
/// reference's `vHeat` loads with `strict=True`.
///
/// # Errors
/// The checkpoint's read errors naming `input`; [`Error::Unsupported`] for a `.pth` output
/// (`.pth` is read, not written); [`Error::CheckpointWrite`] naming `output`.
pub fn export(input: &Path, output: &Path, format: CheckpointFormat) -> Result<()> {
    if format == CheckpointFormat::Pytorch {
        return Err(Error::Unsupported(format!(
            "writing {}: .pth is read, not written; export to .safetensors (the reference \
             loads it with `load_state_dict(safetensors.torch.load_file(..), strict=True)`)",
            output.display()
        )));
    }
    let (model, _meta) = crate::train::load_checkpoint(input, &crate::device::host_device())?;
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
pub fn import(args: &ConvertArgs, format: CheckpointFormat, config: VHeatConfig) -> Result<()> {
    let device = crate::device::host_device();
    let mut model = config.try_init(&device)?;
    let mut options = LoadOptions::strict();
    if let Some(key) = &args.key {
        options = options.with_key(key.clone());
    }
    let report = match format {
        CheckpointFormat::Safetensors => load_safetensors_into(&mut model, &args.input, &options)?,
        _ => load_pytorch_into(&mut model, &args.input, &options)?,
    };
    let config_file = Path::new(&args.config);
    let mut inputs = vec![(args.input.as_path(), "the checkpoint to convert")];
    if config_file.is_file() {
        inputs.push((config_file, "the --config file"));
    }
    refuse_overwriting_inputs(&args.output, &inputs)?;
    let classes = reference_classes(config.num_classes);
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
    let from = CheckpointFormat::from_path(&args.input)?;
    let to = CheckpointFormat::from_path(&args.output)?;
    match (from, to) {
        (CheckpointFormat::Pytorch | CheckpointFormat::Safetensors, CheckpointFormat::Burnpack) => {
            let config = resolve_config(&args.config)?;
            import(&args, from, config)
        }
        (CheckpointFormat::Burnpack, CheckpointFormat::Pytorch | CheckpointFormat::Safetensors) => {
            export(&args.input, &args.output, to)
        }
        _ => Err(Error::Unsupported(format!(
            "converting {from:?} to {to:?}: convert a reference checkpoint to .bpk, or (later) \
             a .bpk to a reference format"
        ))),
    }
}
