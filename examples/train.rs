//! The main job: train a small vHeat from scratch on the built-in procedural dataset (no
//! download), or fine-tune one on your own image folder. The same as `vheat train`; the options
//! and the logic are in [`vheat::cli::train`] (`--help` lists them with their defaults).
//!
//! ```text
//! cargo run --release --example train                       # synthetic shapes, flex CPU
//! cargo run --release --example train -- --devices flex,flex  # data parallel on two devices
//! cargo run --release --example train -- --resume           # continue an interrupted run
//! cargo run --release --example train -- --data DIR --from artifacts/train/model.bpk
//! cargo run --release --example train -- --data DIR --from vheat_tiny.pth --config tiny
//! cargo run --release --example train -- --help
//! ```

use std::process::ExitCode;

use clap::Parser;
use vheat::cli::{exit_code, train::TrainArgs};

fn main() -> ExitCode {
    exit_code(vheat::cli::train::run(TrainArgs::parse()))
}
