//! Throughput and peak memory of one vHeat configuration, like the reference's throughput script.
//!
//! ```text
//! cargo run --release --example throughput -- --config tiny --size 224 --batch 8 \
//!     --backend flex --form inference --iters 10
//! ```
//!
//! Options (all optional):
//! - `--config tiny|small|base|FILE.json` (default `tiny`)
//! - `--size N` square input side (default 224), or `--height H --width W`
//! - `--batch N` (default 1)
//! - `--backend flex|ndarray|wgpu|cuda` (default `flex`)
//! - `--form trainable|inference|both` (default `both`)
//! - `--dtype f32|f16|bf16` float type of weights and activations (default `f32`)
//! - `--warmup N` untimed passes (default 2), `--iters N` timed passes (default 5)
//!
//! Beside img/s it prints the achieved GFLOP/s: 2 × the form's multiply-accumulates
//! ([`VHeatConfig::macs`], fvcore's count, as in the reference's published GFLOPs) × images / s.
//! It prints images per second (mean over the timed passes, with the fastest and slowest pass)
//! and the process's peak resident memory (`VmHWM`) after each form, which on a CPU backend is the
//! peak memory of the model and its activations. On a GPU backend it also prints what the
//! device's allocator holds.

use std::time::Instant;

/// mimalloc keeps freed pages for reuse. With the system allocator (glibc), every activation
/// above 32 MiB is a fresh `mmap`, and on virtual machines each first touch of a page is a
/// costly fault: see the README's Performance section for the measured difference.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/proc_status.rs"]
mod proc_status;

use burn::prelude::*;
use burn::tensor::FloatDType;
use vheat::{Form, MacCount, VHeat, VHeatConfig};

struct Args {
    config: String,
    height: usize,
    width: usize,
    batch: usize,
    backend: String,
    form: String,
    dtype: String,
    warmup: usize,
    iters: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        config: "tiny".into(),
        height: 224,
        width: 224,
        batch: 1,
        backend: "flex".into(),
        form: "both".into(),
        dtype: "f32".into(),
        warmup: 2,
        iters: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--config" => a.config = value()?,
            "--size" => {
                let n = num(value()?)?;
                a.height = n;
                a.width = n;
            }
            "--height" => a.height = num(value()?)?,
            "--width" => a.width = num(value()?)?,
            "--batch" => a.batch = num(value()?)?,
            "--backend" => a.backend = value()?,
            "--form" => a.form = value()?,
            "--dtype" => a.dtype = value()?,
            "--warmup" => a.warmup = num(value()?)?,
            "--iters" => a.iters = num(value()?)?.max(1),
            "-h" | "--help" => {
                println!("see the doc comment at the top of examples/throughput.rs");
                std::process::exit(0);
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(a)
}

/// Peak resident set size of this process in MiB (Linux), if known.
fn peak_rss_mib() -> Option<f64> {
    proc_status::status_mib("VmHWM:")
}

fn time_form(model: &VHeat, x: &Tensor<4>, args: &Args, label: &str, macs: MacCount) {
    let run = || {
        let y = model.forward(x.clone());
        // Reading the result back waits for the device to finish.
        let _ = y.into_data();
    };
    for _ in 0..args.warmup {
        run();
    }
    let mut times = Vec::with_capacity(args.iters);
    for _ in 0..args.iters {
        let t = Instant::now();
        run();
        times.push(t.elapsed().as_secs_f64());
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let min = times.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = times.iter().cloned().fold(0.0, f64::max);
    let ips = args.batch as f64 / mean;
    let gflops = macs.flops(args.batch) / mean / 1e9;
    print!(
        "{label:<10} {ips:8.2} img/s  {gflops:6.1} GFLOP/s  ({:.1} ms/batch, fastest {:.1}, slowest {:.1})",
        mean * 1e3,
        min * 1e3,
        max * 1e3
    );
    if let Some(mib) = peak_rss_mib() {
        print!("  peak RSS {mib:.0} MiB");
    }
    if let Some(usage) = x.device().memory_pool_usage() {
        print!("  device pool {usage:?}");
    }
    println!();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args().map_err(|e| format!("{e} (try --help)"))?;
    let device = vheat::device_from_name(&args.backend)?;
    vheat::probe_device(&device)?;
    let config = match args.config.as_str() {
        name @ ("tiny" | "small" | "base") => VHeatConfig::by_name(name)?,
        path => VHeatConfig::load(path)?,
    };
    let dtype = match args.dtype.as_str() {
        "f32" => FloatDType::F32,
        "f16" => FloatDType::F16,
        "bf16" => FloatDType::BF16,
        other => return Err(format!("--dtype {other}: expected f32, f16 or bf16").into()),
    };
    let model = config.try_init(&device)?;
    println!(
        "{} | {} params | input {}x{}x{}x{} {} | backend {} ({:?}) | {} threads",
        args.config,
        model.num_params(),
        args.batch,
        config.in_chans,
        args.height,
        args.width,
        args.dtype,
        args.backend,
        device,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let x = Tensor::<4>::random(
        [args.batch, config.in_chans, args.height, args.width],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    model.check_input(&x.dims())?;
    if args.form == "trainable" || args.form == "both" {
        let macs = config.macs(args.height, args.width, Form::Ordinary)?;
        time_form(
            &model.with_float_dtype(dtype)?,
            &x,
            &args,
            "trainable",
            macs,
        );
    }
    if args.form == "inference" || args.form == "both" {
        // The decay is precomputed in float32, then cast with the rest of the weights.
        let fast = model
            .to_inference(args.height, args.width)?
            .with_float_dtype(dtype)?;
        let macs = config.macs(args.height, args.width, Form::Inference)?;
        time_form(&fast, &x, &args, "inference", macs);
    }
    Ok(())
}
