//! Checks this crate against the official PyTorch vHeat, then runs vHeat-T. The same as
//! `vheat verify`; options and logic in [`vheat::cli::verify`] (`--help` lists them).
//!
//! Loads the reference fixtures in `tests/fixtures/` (checkpoints in the release format, and the
//! reference's outputs for them), runs every model, and prints the largest difference of every
//! intermediate map and of the logits; then builds vHeat-T and times one 224×224 forward pass in
//! the trainable and the inference form.
//!
//! ```text
//! cargo run --release --example verify                          # flex CPU
//! cargo run --release --features wgpu --example verify -- --backend wgpu
//! ```

use std::process::ExitCode;

use clap::Parser;
use vheat::cli::{exit_code, verify::VerifyArgs};

/// mimalloc reuses freed pages; see the README's Performance section.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    exit_code(vheat::cli::verify::run(VerifyArgs::parse()))
}
