//! `vheat bench`: throughput (img/s, GFLOP/s) and peak memory of one configuration, like the
//! reference's throughput script; `examples/throughput.rs` is a thin wrapper.
//!
//! `--step forward` (the default) times forward passes; `--step train` times whole training
//! steps as a user runs them: forward, label-smoothed (0.1) cross-entropy, backward, global-norm
//! clip at 5, AdamW with weight decay 0.05 ([`ImageClassifier::gradients`] +
//! [`adamw_for`]`(..).step`). `--json` prints one machine-readable line per form, which
//! `scripts/bench_vs_torch.py` reads to compare against PyTorch side by side.
//!
//! GFLOP/s is 2 × the form's multiply-accumulates ([`VHeatConfig::macs`](crate::VHeatConfig::macs),
//! fvcore's count, as in the reference's published GFLOPs) × images / s. Peak memory is the
//! process's `VmHWM` (Linux) after each form; on a GPU backend it also prints what the device's
//! allocator holds.

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::FloatDType;
use burn::train::TrainStep;
use clap::{Parser, ValueEnum};

use super::{resolve_config, BackendArgs};
use crate::data::ImageBatch;
use crate::error::Result;
use crate::train::{adamw_for, ImageClassifier};
use crate::vheat::{Form, MacCount, VHeat, VHeatConfig};

/// What one timed pass is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchStep {
    /// A forward pass (logits read back to the host).
    Forward,
    /// A training step: forward, label-smoothed cross-entropy, backward, global-norm clip at 5,
    /// AdamW (weight decay 0.05). Always the trainable form, on the backend's autodiff device.
    Train,
}

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
#[non_exhaustive]
pub struct BenchArgs {
    /// The model: tiny, small, base, main-job (the README's first command's network: depths
    /// 1-1-2-1, widths 16…128, pre-norm, 8 classes), or a configuration JSON file.
    #[arg(long, value_name = "NAME|FILE", default_value = "tiny")]
    pub config: String,

    /// What one timed pass is: a forward pass or a whole training step.
    #[arg(long, value_enum, default_value_t = BenchStep::Forward)]
    pub step: BenchStep,

    /// Print one JSON object per timed form (for scripts) instead of the text line.
    #[arg(long)]
    pub json: bool,

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
#[non_exhaustive]
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
    let mut pass = || -> Result<()> {
        let _ = model.try_forward(x.clone())?.into_data();
        Ok(())
    };
    let times = timed_passes(warmup, iters, &mut pass)?;
    Ok(Timing::of(&times, batch, macs.flops(batch)))
}

/// Runs `pass` `warmup` times untimed, then `iters` (at least 1) times timed; the seconds of
/// each timed pass.
fn timed_passes(
    warmup: usize,
    iters: usize,
    pass: &mut dyn FnMut() -> Result<()>,
) -> Result<Vec<f64>> {
    for _ in 0..warmup {
        pass()?;
    }
    (0..iters.max(1))
        .map(|_| {
            let t = Instant::now();
            pass()?;
            Ok(t.elapsed().as_secs_f64())
        })
        .collect()
}

impl Timing {
    /// The timing of passes that took `times` seconds each, for `images` images and `flops`
    /// floating-point operations per pass.
    fn of(times: &[f64], images: usize, flops: f64) -> Self {
        let mean_s = times.iter().sum::<f64>() / times.len().max(1) as f64;
        Timing {
            mean_s,
            min_s: times.iter().copied().fold(f64::INFINITY, f64::min),
            max_s: times.iter().copied().fold(0.0, f64::max),
            images_per_s: images as f64 / mean_s,
            gflops: flops / mean_s / 1e9,
        }
    }
}

/// Times training steps of `model` on `batch` (see [`BenchStep::Train`]): `warmup` untimed,
/// then `iters` timed steps, each ending with the loss read back to the host. `model` must be
/// on an autodiff device.
///
/// # Errors
/// An input the model rejects.
pub fn time_train_step(
    model: VHeat,
    batch: &ImageBatch,
    warmup: usize,
    iters: usize,
    macs: MacCount,
) -> Result<Timing> {
    model.check_input(&batch.images.dims())?;
    let images = batch.images.dims()[0];
    let mut classifier = Some(ImageClassifier::new(model, 0.1, Some(5.0)));
    let mut optim = adamw_for(classifier.as_ref().expect("set above"), 0.05, false);
    let mut step = || -> Result<()> {
        let current = classifier.take().expect("put back after every step");
        let (grads, out) = current.gradients(batch.clone());
        // The optimizer step as burn-train's `Learner` takes it (`TrainStep::optimize`).
        classifier = Some(current.optimize(&mut optim, 1e-4.into(), grads));
        let _ = out.loss.into_data();
        Ok(())
    };
    let times = timed_passes(warmup, iters, &mut step)?;
    // One step is about three forward passes' worth of multiply-accumulates (forward, and the
    // two products of the backward pass).
    Ok(Timing::of(&times, images, 3.0 * macs.flops(images)))
}

/// The network of the README's first command (`vheat train` on the synthetic shapes):
/// depths 1-1-2-1, widths 16…128, pre-norm, one class per synthetic shape
/// ([`SHAPE_CLASSES`](crate::data::SHAPE_CLASSES)), at `size`².
pub fn main_job_config(size: usize) -> VHeatConfig {
    crate::train::small_config(size, crate::data::SHAPE_CLASSES.len())
}

fn print_json(args: &BenchArgs, label: &str, t: &Timing) {
    println!(
        "{{\"config\":\"{}\",\"step\":\"{:?}\",\"form\":\"{label}\",\"batch\":{},\"height\":{},\"width\":{},\"mean_s\":{:.6},\"min_s\":{:.6},\"max_s\":{:.6},\"images_per_s\":{:.4},\"peak_rss_mib\":{:.1},\"kernel_isa\":\"{}\",\"host_kernels\":{}}}",
        args.config.replace(['"', '\\'], "_"),
        args.step,
        args.batch,
        args.height.unwrap_or(args.size),
        args.width.unwrap_or(args.size),
        t.mean_s,
        t.min_s,
        t.max_s,
        t.images_per_s,
        peak_rss_mib().unwrap_or(-1.0),
        crate::kernels::isa::active(),
        crate::kernels::enabled(),
    );
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
    let height = args.height.unwrap_or(args.size);
    let width = args.width.unwrap_or(args.size);
    let config = match args.config.as_str() {
        "main-job" => main_job_config(height.max(width)),
        name => resolve_config(name)?,
    };
    config.check_memory(args.batch, height.max(width), args.step == BenchStep::Train)?;
    let dtype = FloatDType::from(args.dtype);
    if args.step == BenchStep::Train {
        return run_train_step(&args, &config, &device, [height, width]);
    }
    let model = config.try_init(&device)?;
    if !args.json {
        println!(
            "{} | {} params | input {}x{}x{}x{} {:?} | backend {} ({:?}) | {} threads | host kernels {}",
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
            kernel_state(),
        );
    }
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
        let t = time_forward(&m, &x, args.warmup, iters, macs)?;
        report(&args, "trainable", &t, &device);
    }
    if matches!(args.form, FormChoice::Inference | FormChoice::Both) {
        // The decay is precomputed in float32, then cast with the rest of the weights.
        let fast = model.to_inference(height, width)?.with_float_dtype(dtype)?;
        let macs = config.macs(height, width, Form::Inference)?;
        let t = time_forward(&fast, &x, args.warmup, iters, macs)?;
        report(&args, "inference", &t, &device);
    }
    Ok(())
}

/// `AVX-512` / `AVX2` / `portable`, or `off` (`VHEAT_HOST_KERNELS=off`).
fn kernel_state() -> String {
    if crate::kernels::enabled() {
        crate::kernels::isa::active().to_string()
    } else {
        "off".into()
    }
}

fn report(args: &BenchArgs, label: &str, t: &Timing, device: &Device) {
    if args.json {
        print_json(args, label, t);
    } else {
        print_timing(label, t, device);
    }
}

/// `--step train`: random images and labels, the trainable form on the autodiff device.
fn run_train_step(
    args: &BenchArgs,
    config: &VHeatConfig,
    device: &Device,
    [height, width]: [usize; 2],
) -> Result<()> {
    if args.dtype != DType::F32 {
        return Err(crate::Error::Unsupported(
            "`--step train` runs in float32 only (--dtype f32)".into(),
        ));
    }
    let train_device = device.clone().autodiff();
    let model = config.try_init(&train_device)?;
    if !args.json {
        println!(
            "{} | {} params | training step, batch {}x{}x{}x{} | backend {} | {} threads | host kernels {}",
            args.config,
            model.num_params(),
            args.batch,
            config.in_chans,
            height,
            width,
            args.backend.backend,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel_state(),
        );
    }
    let images = Tensor::<4>::random(
        [args.batch, config.in_chans, height, width],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &train_device,
    );
    let labels: Vec<i64> = (0..args.batch)
        .map(|i| (i * 7919 % config.num_classes.max(1)) as i64)
        .collect();
    let batch = ImageBatch {
        images,
        targets: Tensor::from_data(TensorData::new(labels, [args.batch]), &train_device),
        soft_targets: None,
    };
    let macs = config.macs(height, width, Form::Ordinary)?;
    let t = time_train_step(model, &batch, args.warmup, args.iters as usize, macs)?;
    report(args, "train-step", &t, device);
    Ok(())
}
