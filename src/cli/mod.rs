//! `cli` — the `vheat` command-line tool: argument structs (clap derive) and the function that
//! runs each subcommand, shared by `src/bin/vheat.rs` and the examples.
//!
//! One file per subcommand, each with its `…Args` struct and a `run(args)` function:
//! [`classify`], [`train`], [`convert`], [`export`], [`info`], [`bench`], [`verify`]. This file holds the
//! top-level [`Cli`] / [`Command`], the argument groups several subcommands share
//! ([`BackendArgs`], [`resolve_config`]) and [`exit_code`], which turns a result into the
//! process's exit status (`error: <message>` on standard error and status 1).
//!
//! ```
//! use clap::Parser;
//! use vheat::cli::{Cli, Command};
//!
//! let cli = Cli::try_parse_from(["vheat", "info", "--config", "tiny", "--size", "224"]).unwrap();
//! assert!(matches!(cli.command, Command::Info(_)));
//! ```
//!
//! The layer above everything else: it may use every module, none uses it.

pub mod bench;
pub mod classify;
pub mod convert;
pub mod export;
pub mod info;
pub mod train;
pub mod verify;

use std::process::ExitCode;

use burn::prelude::Device;
use clap::{Args, Parser, Subcommand};

use crate::error::Result;
use crate::vheat::VHeatConfig;

/// vHeat vision backbones on Burn: classify images, train, convert checkpoints, inspect and
/// benchmark configurations, check parity with the PyTorch reference.
#[derive(Debug, Parser)]
#[command(name = "vheat", version, propagate_version = true)]
#[non_exhaustive]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `vheat`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Classify image files with a checkpoint: prints the top labels with probabilities.
    Classify(classify::ClassifyArgs),
    /// Train a small vHeat on the built-in synthetic shapes, or fine-tune on an image folder.
    Train(Box<train::TrainArgs>),
    /// Convert a checkpoint between formats (.pth / safetensors ↔ our .bpk + .json).
    Convert(convert::ConvertArgs),
    /// Export a model's inference form as an ONNX file for other runtimes.
    Export(export::ExportArgs),
    /// Show a configuration, its parameter counts and its multiply-accumulates.
    Info(info::InfoArgs),
    /// Measure throughput (img/s, GFLOP/s) and peak memory of a configuration.
    Bench(bench::BenchArgs),
    /// Check parity with the PyTorch reference fixtures, then time vHeat-T.
    Verify(verify::VerifyArgs),
}

impl Cli {
    /// Runs the chosen subcommand.
    ///
    /// # Errors
    /// Whatever the subcommand reports (a missing file, an unknown backend, …), as a typed
    /// [`crate::Error`].
    pub fn run(self) -> Result<()> {
        match self.command {
            Command::Classify(a) => classify::run(a),
            Command::Train(a) => train::run(*a),
            Command::Convert(a) => convert::run(a),
            Command::Export(a) => export::run(a),
            Command::Info(a) => info::run(a),
            Command::Bench(a) => bench::run(a),
            Command::Verify(a) => verify::run(a),
        }
    }
}

/// The backend to run on (`--backend`), shared by the subcommands that compute.
#[derive(Debug, Clone, Args)]
#[non_exhaustive]
pub struct BackendArgs {
    /// Backend: flex (CPU), ndarray, wgpu or cuda, as compiled in by Cargo features; a device
    /// index may follow a colon (wgpu:1).
    #[arg(long, value_name = "NAME", default_value = "flex")]
    pub backend: String,
}

impl BackendArgs {
    /// The device named by `--backend`, checked to run on this machine.
    ///
    /// # Errors
    /// [`crate::Error::UnknownBackend`], [`crate::Error::BackendNotCompiled`] or
    /// [`crate::Error::BackendUnavailable`].
    pub fn device(&self) -> Result<Device> {
        device_by_name(&self.backend)
    }
}

/// A device by name (see [`crate::device_from_name`]), probed with [`crate::probe_device`].
///
/// # Errors
/// As [`BackendArgs::device`].
pub fn device_by_name(name: &str) -> Result<Device> {
    let device = crate::device_from_name(name)?;
    crate::probe_device(&device)?;
    Ok(device)
}

/// The model configuration a `--config` value names: `tiny`, `small`, `base` (see
/// [`VHeatConfig::by_name`]), a configuration JSON file, or one of our checkpoints
/// (`NAME.bpk`, or its `NAME.json`, whose configuration is used).
///
/// # Errors
/// [`crate::Error::InvalidConfig`] for an unknown name; [`crate::Error::ConfigFile`] or
/// [`crate::Error::CheckpointRead`] for a file that cannot be read as either.
pub fn resolve_config(value: &str) -> Result<VHeatConfig> {
    let path = std::path::Path::new(value);
    let is_file_like = path.extension().is_some() || value.contains(std::path::MAIN_SEPARATOR);
    if !is_file_like {
        return VHeatConfig::by_name(value);
    }
    if path.extension().is_some_and(|e| e == "bpk") {
        return Ok(crate::train::load_checkpoint_meta(path)?.config);
    }
    match VHeatConfig::load(path) {
        Ok(config) => Ok(config),
        // A checkpoint's JSON holds the configuration under "config".
        Err(plain) => match crate::train::load_checkpoint_meta(path) {
            Ok(meta) => Ok(meta.config),
            Err(_) => Err(plain),
        },
    }
}

/// The exit status for a subcommand's result: success, or `error: <message>` on standard error
/// and status 1. (clap's own parse errors exit with status 2 before anything runs.)
pub fn exit_code(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `n` with thousands separators: `30853480` → `"30,853,480"`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
