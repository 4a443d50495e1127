//! Classifies image files with a trained vHeat: top-5 labels with probabilities. The same as
//! `vheat classify`; options and logic in [`vheat::cli::classify`] (`--help` lists them).
//!
//! ```text
//! # our checkpoint (written by the train example), on images of your own:
//! cargo run --release --example classify -- --checkpoint artifacts/train/model.bpk a.png b.jpg
//! # … or on freshly drawn synthetic images (written as PNGs first, then read back):
//! cargo run --release --example classify -- --checkpoint artifacts/train/model.bpk --synthetic 4
//! # a reference ImageNet checkpoint, any input size, another backend:
//! cargo run --release --example classify -- --from vheat_tiny.pth --config tiny --size 384 cat.jpg
//! ```
//!
//! Images are preprocessed as the reference evaluates: bicubic resize of the shorter side to
//! `S·256/224`, centre crop `S`, ImageNet mean/std (our checkpoints record their own crop
//! fraction: the synthetic model's is 1, i.e. a plain resize).

use std::process::ExitCode;

use clap::Parser;
use vheat::cli::{classify::ClassifyArgs, exit_code};

fn main() -> ExitCode {
    exit_code(vheat::cli::classify::run(ClassifyArgs::parse()))
}
