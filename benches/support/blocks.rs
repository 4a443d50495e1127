//! The two token mixers compared by `benches/hco_vs_attention.rs` and `examples/scaling.rs`
//! (both include this file with `#[path]`), at the same width:
//!
//! - [`HcoBlock`]: vHeat's heat block without its MLP, `x + HCO(LayerNorm(x))`, where the HCO is
//!   the ordinary (trainable) form, so `k = ReLU(to_k(FVE))` and the decay are recomputed on
//!   every call;
//! - [`AttentionBlock`]: `x + out(MHSA(LayerNorm(x)))` with one qkv projection and Burn's own
//!   scaled-dot-product attention (`burn::tensor::module::attention`; on flex it is a tiled
//!   online-softmax kernel above 256K scores per head, so the N² score matrix is never stored).

use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::Distribution;
use vheat::{FrequencyEmbeddingConfig, HeatBlock, HeatBlockConfig};

/// Width of both blocks (vHeat-T / Swin-T stage 1).
pub const WIDTH: usize = 96;
/// Attention heads (Swin-T stage 1): head dim 32.
pub const HEADS: usize = 3;

/// One heat block without MLP plus its stage's FVE at the map size.
pub struct HcoBlock {
    block: HeatBlock,
    fve: Tensor<3>,
    side: usize,
}

impl HcoBlock {
    /// A block for an `side × side` map of `width` channels.
    pub fn new(side: usize, width: usize, device: &Device) -> Self {
        let block = HeatBlockConfig::new(width).with_mlp_ratio(0.0).init(device);
        let fve = FrequencyEmbeddingConfig::new(side, side, width)
            .init(device)
            .resized(side, side);
        Self { block, fve, side }
    }

    /// A random channels-last input `[1, side, side, width]`.
    pub fn input(&self, device: &Device) -> Tensor<4> {
        let c = self.fve.dims()[2];
        Tensor::random([1, self.side, self.side, c], Distribution::Default, device)
    }

    /// `x + HCO(norm1(x))` on `[B, H, W, C]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.block.forward(x, Some(self.fve.clone()))
    }
}

/// Pre-norm multi-head self-attention block without MLP: `x + out(MHSA(norm(x)))`.
pub struct AttentionBlock {
    norm: LayerNorm,
    qkv: Linear,
    out: Linear,
    heads: usize,
}

impl AttentionBlock {
    /// A block of `width` channels and `heads` heads (`width % heads == 0`).
    pub fn new(width: usize, heads: usize, device: &Device) -> Self {
        assert_eq!(width % heads, 0, "width must be a multiple of heads");
        Self {
            norm: LayerNormConfig::new(width).init(device),
            qkv: LinearConfig::new(width, 3 * width).init(device),
            out: LinearConfig::new(width, width).init(device),
            heads,
        }
    }

    /// A random token sequence `[1, tokens, width]`.
    pub fn input(&self, tokens: usize, device: &Device) -> Tensor<3> {
        let c = self.out.weight.dims()[1];
        Tensor::random([1, tokens, c], Distribution::Default, device)
    }

    /// `[B, L, C]` → `[B, L, C]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let qkv = self.qkv.forward(self.norm.forward(x.clone()));
        x + self
            .out
            .forward(multi_head_attention(qkv, self.heads, false))
    }
}

/// Self-attention of a fused projection `qkv` (`[B, L, 3C]`, as `[q | k | v]`) with `heads`
/// heads: `[B, L, C]`. With `stored_scores` it computes `softmax(QKᵀ/√d)·V` with the
/// `[B, heads, L, L]` scores in memory (as eager PyTorch does); otherwise Burn's
/// `module::attention`, which on flex tiles them.
pub fn multi_head_attention(qkv: Tensor<3>, heads: usize, stored_scores: bool) -> Tensor<3> {
    let [b, l, c3] = qkv.dims();
    let c = c3 / 3;
    let hd = c / heads;
    // [B, L, 3C] → [3, B, heads, L, head_dim]
    let qkv: Tensor<5> = qkv.reshape([b, l, 3, heads, hd]).permute([2, 0, 3, 1, 4]);
    let mut parts = qkv
        .chunk(3, 0)
        .into_iter()
        .map(|t| t.reshape([b, heads, l, hd]));
    let (q, k, v) = (
        parts.next().expect("q"),
        parts.next().expect("k"),
        parts.next().expect("v"),
    );
    let o = if stored_scores {
        let scores = q.matmul(k.swap_dims(2, 3)) / (hd as f64).sqrt();
        burn::tensor::activation::softmax(scores, 3).matmul(v)
    } else {
        attention(q, k, v, None, None, AttentionModuleOptions::default())
    };
    o.swap_dims(1, 2).reshape([b, l, c])
}

/// Least-squares slope of `ln t` on `ln n`: the exponent `p` in `t ∝ n^p`.
/// `None` with fewer than two points.
pub fn fit_exponent(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let logs: Vec<(f64, f64)> = points.iter().map(|&(n, t)| (n.ln(), t.ln())).collect();
    let k = logs.len() as f64;
    let mx = logs.iter().map(|p| p.0).sum::<f64>() / k;
    let my = logs.iter().map(|p| p.1).sum::<f64>() / k;
    let sxy: f64 = logs.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = logs.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}
