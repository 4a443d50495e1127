//! Throughput and peak memory of one vHeat configuration, like the reference's throughput script.
//! The same as `vheat bench`; options and logic in [`vheat::cli::bench`] (`--help` lists them).
//!
//! ```text
//! cargo run --release --example throughput -- --config tiny --size 224 --batch 8 \
//!     --backend flex --form inference --iters 10
//! ```
//!
//! Beside img/s it prints the achieved GFLOP/s: 2 × the form's multiply-accumulates
//! ([`vheat::VHeatConfig::macs`], fvcore's count) × images / s, and the process's peak resident
//! memory (`VmHWM`) after each form.

use std::process::ExitCode;

use clap::Parser;
use vheat::cli::{bench::BenchArgs, exit_code};

/// mimalloc keeps freed pages for reuse. With the system allocator (glibc), every activation
/// above 32 MiB is a fresh `mmap`, and on virtual machines each first touch of a page is a
/// costly fault: see the README's Performance section for the measured difference.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    exit_code(vheat::cli::bench::run(BenchArgs::parse()))
}
