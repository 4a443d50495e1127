//! `vheat export`: the inference form of a model as an ONNX file, for ONNX Runtime, TensorRT,
//! OpenVINO, tract and the other runtimes that read ONNX ([`crate::VHeat::save_onnx`]).
//!
//! The model comes from where `vheat classify` takes it ([`super::classify::load_source`]): one
//! of our checkpoints, a reference checkpoint with `--config`, or `--pretrained NAME`
//! (`--mirror`).

use std::path::{Path, PathBuf};

use clap::Parser;

use super::classify::load_source;
use crate::error::{Error, Result};
use crate::weights::onnx::{OnnxOptions, ONNX_INPUT, ONNX_IR_VERSION, ONNX_OPSET, ONNX_OUTPUT};

/// Arguments of `vheat export`.
#[derive(Debug, Clone, Parser)]
#[command(
    about = "Export a model's inference form as ONNX (opset 17): vheat export [MODEL] OUT.onnx --size H[,W]",
    override_usage = "vheat export <MODEL> <OUTPUT> [OPTIONS]\n       vheat export --pretrained <NAME> <OUTPUT> [OPTIONS]"
)]
pub struct ExportArgs {
    /// MODEL then OUTPUT: MODEL is our checkpoint (NAME.bpk with NAME.json beside it) or a
    /// reference checkpoint (.pth/.pt/.bin or .safetensors, configuration from --config); with
    /// --pretrained only OUTPUT, the .onnx file to write.
    #[arg(value_name = "PATH", num_args = 1..=2, required = true)]
    pub paths: Vec<PathBuf>,

    /// Published weights by name (e.g. tiny), downloaded into the local cache.
    #[arg(long, value_name = "NAME")]
    pub pretrained: Option<String>,

    /// Download --pretrained weights from this mirror of the reference's releases, as
    /// URL/RELEASE/FILE [default: $VHEAT_MIRROR if set, else
    /// https://github.com/MzeroMiko/vHeat/releases/download]
    #[arg(long, value_name = "URL", requires = "pretrained")]
    pub mirror: Option<String>,

    /// Configuration of a reference checkpoint: tiny, small, base, or a JSON file.
    #[arg(long, value_name = "NAME|FILE", default_value = "tiny")]
    pub config: String,

    /// Input size the file is computed for: S (square) or H,W [default: the checkpoint's
    /// training size].
    #[arg(long, value_name = "H[,W]", value_parser = parse_size)]
    pub size: Option<[usize; 2]>,

    /// The backbone variant: the four stage maps (stage0 … stage3, NCHW, through the output
    /// norms of a dense-prediction checkpoint) as outputs instead of the logits.
    #[arg(long)]
    pub features: bool,
}

/// Parses `S` or `H,W` (also `HxW`) into `[H, W]`.
fn parse_size(value: &str) -> std::result::Result<[usize; 2], String> {
    let parse = |s: &str| {
        s.trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("{s:?} is not a positive number of pixels"))
    };
    match value.split_once([',', 'x']) {
        None => parse(value).map(|s| [s, s]),
        Some((h, w)) => Ok([parse(h)?, parse(w)?]),
    }
}

/// The checkpoint and output paths `args` name.
///
/// # Errors
/// [`Error::InvalidInput`] when the number of paths does not fit `--pretrained`.
fn model_and_output(args: &ExportArgs) -> Result<(Option<&Path>, &Path)> {
    match (args.pretrained.is_some(), args.paths.as_slice()) {
        (true, [out]) => Ok((None, out.as_path())),
        (false, [model, out]) => Ok((Some(model.as_path()), out.as_path())),
        (with, paths) => Err(Error::InvalidInput {
            what: "vheat export paths".into(),
            expected: if with {
                "only OUTPUT with --pretrained".into()
            } else {
                "MODEL and OUTPUT (or --pretrained NAME and OUTPUT)".into()
            },
            found: format!("{paths:?}"),
        }),
    }
}

/// Runs `vheat export`: loads the model, writes the ONNX file, and prints what it holds.
///
/// # Errors
/// The load errors of [`load_source`]; [`Error::MemoryLimit`] for a size whose inference form
/// would not fit in memory; those of [`crate::VHeat::save_onnx`] (a size the model cannot take,
/// an unwritable path), with no file left under OUTPUT.
pub fn run(args: ExportArgs) -> Result<()> {
    let (model_path, output) = model_and_output(&args)?;
    let device = crate::device::host_device();
    let c = load_source(
        model_path,
        args.pretrained.as_deref(),
        args.mirror.as_deref(),
        &args.config,
        &device,
    )?;
    let side = c.transform.size as usize;
    let [h, w] = args.size.unwrap_or([side, side]);
    // The inference form is built at H×W (its decays scale with the map) before it is written.
    c.config.check_memory(1, h.max(w), false)?;
    let options = OnnxOptions::new(h, w).with_features(args.features);
    c.model.save_onnx(output, &options)?;
    let bytes = std::fs::metadata(output).map(|m| m.len()).unwrap_or(0);
    let outputs = if args.features {
        c.model
            .dims()
            .iter()
            .zip(c.model.stage_sizes(h, w))
            .enumerate()
            .map(|(i, (ch, [sh, sw]))| format!("stage{i} [N, {ch}, {sh}, {sw}]"))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        format!("{ONNX_OUTPUT} [N, {}]", c.model.classifier.num_outputs())
    };
    println!(
        "{} ({:.1} MiB): ONNX opset {ONNX_OPSET}, IR version {ONNX_IR_VERSION}, inference form at \
         {h}x{w}; input {ONNX_INPUT} [N, {}, {h}, {w}], output {outputs}",
        output.display(),
        bytes as f64 / (1024.0 * 1024.0),
        c.model.in_chans(),
    );
    Ok(())
}
