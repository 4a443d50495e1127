//! `vheat info`: a configuration, its parameter counts in both forms and its
//! multiply-accumulates at an input size.

use clap::Parser;

use super::{resolve_config, thousands};
use crate::error::{Error, Result};
use crate::vheat::{Form, MacCount, VHeatConfig};

/// Arguments of `vheat info`.
#[derive(Debug, Clone, Parser)]
#[command(about = "Show a configuration, its parameter counts and its multiply-accumulates")]
#[non_exhaustive]
pub struct InfoArgs {
    /// The model: tiny, small, base, a configuration JSON file, or our checkpoint (.bpk/.json).
    #[arg(long, value_name = "NAME|FILE", default_value = "tiny")]
    pub config: String,

    /// Square input side for the MAC count and the inference form's parameters.
    #[arg(long, value_name = "S", default_value_t = 224)]
    pub size: usize,
}

/// What `vheat info` reports.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Info {
    /// The configuration.
    pub config: VHeatConfig,
    /// Parameters of the ordinary (trainable) form.
    pub params_trainable: usize,
    /// Parameters of the inference form at `size × size`.
    pub params_inference: usize,
    /// MACs of one image in the ordinary form.
    pub macs_ordinary: MacCount,
    /// MACs of one image in the inference form.
    pub macs_inference: MacCount,
}

/// Builds the model of `config` on the CPU (random weights) to count its parameters, and counts
/// its MACs at `size × size`.
///
/// # Errors
/// [`Error::InvalidConfig`], [`Error::InputTooSmall`], [`Error::MemoryLimit`].
pub fn info(config: VHeatConfig, size: usize) -> Result<Info> {
    // The inference form is built at `size`: its tensors scale with it.
    config.check_memory(1, size, false)?;
    let macs_ordinary = config.macs(size, size, Form::Ordinary)?;
    let macs_inference = config.macs(size, size, Form::Inference)?;
    let model = config.try_init(&crate::device::host_device())?;
    let params_trainable = model.num_params();
    let params_inference = model.to_inference(size, size)?.num_params();
    Ok(Info {
        config,
        params_trainable,
        params_inference,
        macs_ordinary,
        macs_inference,
    })
}

/// `n` MACs as giga-MACs with two decimals.
fn giga(n: u64) -> String {
    format!("{:.2} G", n as f64 / 1e9)
}

/// The report as text.
pub fn render(info: &Info, name: &str, size: usize) -> Result<String> {
    let json = serde_json::to_string_pretty(&info.config)
        .map_err(|e| Error::InvalidConfig(format!("cannot print the configuration: {e}")))?;
    let mut s = format!("configuration {name}:\n{json}\n");
    s += &format!(
        "parameters: {} (trainable form), {} (inference form at {size}x{size})\n",
        thousands(info.params_trainable as u64),
        thousands(info.params_inference as u64)
    );
    s += &format!("MACs of one {size}x{size} image (fvcore's convention):\n");
    s += &format!(
        "  {:<10} {:>8} {:>15} {:>15} {:>12} {:>10} {:>10}\n",
        "form", "total", "conv", "linear", "layer_norm", "einsum", "avg_pool"
    );
    for (form, m) in [
        ("trainable", &info.macs_ordinary),
        ("inference", &info.macs_inference),
    ] {
        s += &format!(
            "  {form:<10} {:>8} {:>15} {:>15} {:>12} {:>10} {:>10}\n",
            giga(m.total()),
            thousands(m.conv),
            thousands(m.linear),
            thousands(m.layer_norm),
            thousands(m.einsum),
            thousands(m.adaptive_avg_pool2d)
        );
    }
    Ok(s)
}

/// Runs `vheat info`: prints [`render`] of [`info`].
///
/// # Errors
/// As [`resolve_config`] and [`info`].
pub fn run(args: InfoArgs) -> Result<()> {
    let config = resolve_config(&args.config)?;
    let info = info(config, args.size)?;
    print!("{}", render(&info, &args.config, args.size)?);
    Ok(())
}
