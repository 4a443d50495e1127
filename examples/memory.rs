//! Peak memory of vHeat inference against a stack of self-attention blocks of the same widths
//! at the same map sizes, each measured in its own process as the peak resident set (`VmHWM`).
//!
//! ```text
//! cargo run --release --features wgpu --example memory -- --model vheat --config base --size 768
//! cargo run --release --features wgpu --example memory -- --model attention --config base --size 768
//! ```
//!
//! - `--model vheat`: the configuration's model in the inference form, batch 1, one forward.
//! - `--model attention`: the same four map sizes and widths (`C·2^i` channels at `size/4/2^i`),
//!   one pre-norm self-attention block per stage (`x + out(MHSA(LayerNorm(x)))`, heads of 32
//!   channels, Burn's `burn::tensor::module::attention`) plus the same MLP (ratio 4) —
//!   sequential blocks free their inputs, so more blocks per stage do not raise the peak.
//!   `--kernel tiled` (default) uses Burn's attention, which on flex never stores the score
//!   matrix; `--kernel stored` computes `softmax(QKᵀ/√d)·V` with the `[heads, N, N]` scores in
//!   memory, as eager PyTorch and Burn's `nn::attention::MultiHeadAttention` do.
//!   `--from-stage i` skips the stages before `i` (a stored first stage at 768² needs 20 GiB).
//!
//! Both print the resident memory just before the forward pass (weights and input) and the peak
//! after it; the difference is the peak working memory of the activations. They also print what a plain attention kernel that stores the score
//! matrix (as PyTorch's eager `softmax(QKᵀ)V` and Burn's `nn::attention::MultiHeadAttention` do)
//! would need for the first stage's scores alone: `heads · N² · 4` bytes.

use std::time::Instant;

use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use vheat::VHeatConfig;

// The attention itself is the benches' (`benches/support/blocks.rs`); only
// `multi_head_attention` is used here.
#[allow(dead_code)]
#[path = "../benches/support/blocks.rs"]
mod blocks;

#[path = "support/proc_status.rs"]
mod proc_status;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn peak_rss_mib() -> f64 {
    proc_status::status_mib("VmHWM:").unwrap_or(f64::NAN)
}

fn rss_mib() -> f64 {
    proc_status::status_mib("VmRSS:").unwrap_or(f64::NAN)
}

/// `x + out(MHSA(norm(x)))`, then `x + fc2(GELU(fc1(norm2(x))))`, on `[1, L, C]`.
struct AttentionBlock {
    norm: LayerNorm,
    qkv: Linear,
    out: Linear,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
    stored: bool,
}

impl AttentionBlock {
    fn new(width: usize, stored: bool, device: &Device) -> Self {
        Self {
            norm: LayerNormConfig::new(width).init(device),
            qkv: LinearConfig::new(width, 3 * width).init(device),
            out: LinearConfig::new(width, width).init(device),
            norm2: LayerNormConfig::new(width).init(device),
            fc1: LinearConfig::new(width, 4 * width).init(device),
            fc2: LinearConfig::new(4 * width, width).init(device),
            heads: (width / 32).max(1),
            stored,
        }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let qkv = self.qkv.forward(self.norm.forward(x.clone()));
        let x = x + self
            .out
            .forward(blocks::multi_head_attention(qkv, self.heads, self.stored));
        let h = vheat::kernels::gelu(self.fc1.forward(self.norm2.forward(x.clone())));
        x + self.fc2.forward(h)
    }
}

/// Peak resident memory of one forward pass: vHeat, or an attention stack of the same widths.
#[derive(Debug, clap::Parser)]
struct MemoryArgs {
    /// What to run: vheat or attention.
    #[arg(long, value_name = "NAME", default_value = "vheat", value_parser = ["vheat", "attention"])]
    model: String,
    /// The configuration: tiny, small or base.
    #[arg(long, value_name = "NAME", default_value = "base")]
    config: String,
    /// Input side.
    #[arg(long, value_name = "S", default_value_t = 768)]
    size: usize,
    /// Attention only: the first stage to run (0 = all four).
    #[arg(long, value_name = "I", default_value_t = 0)]
    from_stage: usize,
    /// Attention only: tiled (never stores the scores) or stored.
    #[arg(long, value_name = "KIND", default_value = "tiled", value_parser = ["tiled", "stored"])]
    kernel: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let MemoryArgs {
        model,
        config,
        size,
        from_stage,
        kernel,
    } = clap::Parser::parse();
    let stored = kernel == "stored";
    let device = Device::flex();
    let cfg = VHeatConfig::by_name(&config)?;
    let sides: Vec<usize> = (0..cfg.num_stages()).map(|i| (size / 4) >> i).collect();
    let n0 = (sides[0] * sides[0]) as f64;
    let heads0 = (cfg.dims[0] / 32).max(1) as f64;
    println!(
        "{config} at {size}²: stage maps {sides:?}, widths {:?}; a stored first-stage score \
         matrix would take {:.1} GiB",
        cfg.dims,
        heads0 * n0 * n0 * 4.0 / (1u64 << 30) as f64
    );
    let start = Instant::now();
    match model.as_str() {
        "vheat" => {
            let m = cfg.try_init(&device)?.to_inference(size, size)?;
            let x = Tensor::<4>::random([1, 3, size, size], Distribution::Default, &device);
            let before = rss_mib();
            let y = m.try_forward(x)?.into_data();
            let peak = peak_rss_mib();
            println!(
                "vheat     resident {before:.0} MiB before the forward pass, peak {peak:.0} MiB: \
                 {:.0} MiB of activations ({} logits, {:.1} s)",
                peak - before,
                y.num_elements(),
                start.elapsed().as_secs_f64()
            );
        }
        "attention" => {
            let blocks: Vec<AttentionBlock> = cfg
                .dims
                .iter()
                .map(|&c| AttentionBlock::new(c, stored, &device))
                .collect();
            let before = rss_mib();
            for (i, (block, &side)) in blocks.iter().zip(&sides).enumerate() {
                if i < from_stage {
                    continue;
                }
                let x = Tensor::<3>::random(
                    [1, side * side, cfg.dims[i]],
                    Distribution::Default,
                    &device,
                );
                let t = Instant::now();
                let _ = block.forward(x).into_data();
                println!(
                    "attention ({}) stage {i}: {side}² tokens, width {}: {:.1} s, peak RSS so far {:.0} MiB",
                    if stored { "stored scores" } else { "tiled" },
                    cfg.dims[i],
                    t.elapsed().as_secs_f64(),
                    peak_rss_mib()
                );
            }
            let peak = peak_rss_mib();
            println!(
                "attention resident {before:.0} MiB before the forward pass, peak {peak:.0} MiB: \
                 {:.0} MiB of activations",
                peak - before
            );
        }
        other => return Err(format!("--model {other}: expected vheat or attention").into()),
    }
    Ok(())
}
