//! `vheat bench`: throughput (img/s, GFLOP/s) and peak memory of one configuration, like the
//! reference's throughput script; `examples/throughput.rs` is a thin wrapper.
//!
//! GFLOP/s is 2 × the form's multiply-accumulates ([`VHeatConfig::macs`](crate::VHeatConfig::macs),
//! fvcore's count, as in the reference's published GFLOPs) × images / s. Peak memory is the
//! process's `VmHWM` (Linux) after each form; on a GPU backend it also prints what the device's
//! allocator holds.

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::FloatDType;
use clap::{Parser, ValueEnum};

use super::{resolve_config, BackendArgs};
use crate::error::Result;
use crate::vheat::{Form, MacCount, VHeat};

/// Which form(s) of the model to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormChoice {
    /// The trainable form (`to_k` runs every call).
    Trainable,
    /// The inference form (decay precomputed for the input size).
    Inference,
    /// Both, one after the other.
    Both,
}

/// Float type of weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
}

impl From<DType> for FloatDType {
    fn from(d: DType) -> Self {
        match d {
            DType::F32 => FloatDType::F32,
            DType::F16 => FloatDType::F16,
            DType::Bf16 => FloatDType::BF16,
        }
    }
}

/// Arguments of `vheat bench` (and of `examples/throughput.rs`).
#[derive(Debug, Clone, Parser)]
#[command(about = "Measure throughput (img/s, GFLOP/s) and peak memory of a configuration")]
pub struct BenchArgs {
    /// The model: tiny, small, base, or a configuration JSON file.
    #[arg(long, value_name = "NAME|FILE", default_value = "tiny")]
    pub config: String,

    /// Square input side.
    #[arg(long, value_name = "N", default_value_t = 224)]
    pub size: usize,

    /// Input height [default: --size].
    #[arg(long, value_name = "H")]
    pub height: Option<usize>,

    /// Input width [default: --size].
    #[arg(long, value_name = "W")]
    pub width: Option<usize>,

    /// Images per forward pass.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub batch: usize,

    /// Which form(s) to time.
    #[arg(long, value_enum, default_value_t = FormChoice::Both)]
    pub form: FormChoice,

    /// Float type of weights and activations.
    #[arg(long, value_enum, default_value_t = DType::F32)]
    pub dtype: DType,

    /// Untimed passes before timing.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub warmup: usize,

    /// Timed passes.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub iters: u32,

    /// The backend to run on.
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// One form's timing.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Mean seconds per forward pass.
    pub mean_s: f64,
    /// Fastest pass.
    pub min_s: f64,
    /// Slowest pass.
    pub max_s: f64,
    /// Images per second (batch / mean).
    pub images_per_s: f64,
    /// Achieved GFLOP/s (2 × MACs × images / s / 1e9).
    pub gflops: f64,
}

/// Peak resident set size of this process in MiB (Linux `/proc/self/status` `VmHWM`), if known.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Times `model` on `x`: `warmup` untimed then `iters` timed passes, each read back to the host
/// (which waits for the device).
///
/// # Errors
/// An input the model rejects.
pub fn time_forward(
    model: &VHeat,
    x: &Tensor<4>,
    warmup: usize,
    iters: usize,
    macs: MacCount,
) -> Result<Timing> {
    let batch = x.dims()[0];
    let pass = || -> Result<()> {
        let _ = model.try_forward(x.clone())?.into_data();
        Ok(())
    };
    for _ in 0..warmup {
        pass()?;
    }
    let mut times = Vec::with_capacity(iters.max(1));
    for _ in 0..iters.max(1) {
        let t = Instant::now();
        pass()?;
        times.push(t.elapsed().as_secs_f64());
    }
    let mean_s = times.iter().sum::<f64>() / times.len() as f64;
    Ok(Timing {
        mean_s,
        min_s: times.iter().copied().fold(f64::INFINITY, f64::min),
        max_s: times.iter().copied().fold(0.0, f64::max),
        images_per_s: batch as f64 / mean_s,
        gflops: macs.flops(batch) / mean_s / 1e9,
    })
}

fn print_timing(label: &str, t: &Timing, device: &Device) {
    print!(
        "{label:<10} {:8.2} img/s  {:6.1} GFLOP/s  ({:.1} ms/batch, fastest {:.1}, slowest {:.1})",
        t.images_per_s,
        t.gflops,
        t.mean_s * 1e3,
        t.min_s * 1e3,
        t.max_s * 1e3
    );
    if let Some(mib) = peak_rss_mib() {
        print!("  peak RSS {mib:.0} MiB");
    }
    if let Some(usage) = device.memory_pool_usage() {
        print!("  device pool {usage:?}");
    }
    println!();
}

/// Runs `vheat bench`.
///
/// # Errors
/// Device, configuration and size errors, typed.
pub fn run(args: BenchArgs) -> Result<()> {
    let device = args.backend.device()?;
    let config = resolve_config(&args.config)?;
    let height = args.height.unwrap_or(args.size);
    let width = args.width.unwrap_or(args.size);
    let dtype = FloatDType::from(args.dtype);
    let model = config.try_init(&device)?;
    println!(
        "{} | {} params | input {}x{}x{}x{} {:?} | backend {} ({:?}) | {} threads",
        args.config,
        model.num_params(),
        args.batch,
        config.in_chans,
        height,
        width,
        args.dtype,
        args.backend.backend,
        device,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let x = Tensor::<4>::random(
        [args.batch, config.in_chans, height, width],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    model.check_input(&x.dims())?;
    let iters = args.iters as usize;
    if matches!(args.form, FormChoice::Trainable | FormChoice::Both) {
        let macs = config.macs(height, width, Form::Ordinary)?;
        let m = model.with_float_dtype(dtype)?;
        print_timing(
            "trainable",
            &time_forward(&m, &x, args.warmup, iters, macs)?,
            &device,
        );
    }
    if matches!(args.form, FormChoice::Inference | FormChoice::Both) {
        // The decay is precomputed in float32, then cast with the rest of the weights.
        let fast = model.to_inference(height, width)?.with_float_dtype(dtype)?;
        let macs = config.macs(height, width, Form::Inference)?;
        print_timing(
            "inference",
            &time_forward(&fast, &x, args.warmup, iters, macs)?,
            &device,
        );
    }
    Ok(())
}
