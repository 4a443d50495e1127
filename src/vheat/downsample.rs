//! Between stages: a stride-2 3×3 convolution (no bias) and a LayerNorm.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, PaddingConfig2d};
use burn::prelude::*;

use super::stem::conv_nhwc;

/// LayerNorm epsilon of the downsampling's norm (PyTorch's default, as in the reference).
const NORM_EPS: f64 = 1e-5;

/// `conv3×3 s2 (no bias) → LayerNorm`, `[B, C, H, W]` → `[B, C', ⌈H/2⌉, ⌈W/2⌉]`
/// (the reference's `make_downsample`).
#[derive(Module, Debug)]
#[non_exhaustive]
pub struct Downsample {
    /// `dim → out_dim`, 3×3, stride 2, padding 1, no bias.
    pub conv: Conv2d,
    /// LayerNorm over channels, eps 1e-5.
    pub norm: LayerNorm,
}

impl Downsample {
    /// The epsilon of this layer's LayerNorms (what an exporter writes beside their weights).
    pub const NORM_EPS: f64 = NORM_EPS;

    /// A downsampling `dim → out_dim` on `device`.
    pub fn new(dim: usize, out_dim: usize, device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([dim, out_dim], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device),
            norm: LayerNormConfig::new(out_dim)
                .with_epsilon(NORM_EPS)
                .init(device),
        }
    }

    /// NCHW in, NCHW out at half the resolution (rounded up).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        // Channels-last inside: the stage's blocks hand over a permuted view of a channels-last
        // map, which this reads without a copy.
        let y = conv_nhwc(&self.conv, x.permute([0, 2, 3, 1]));
        crate::kernels::layer_norm_with_epsilon(y, &self.norm, NORM_EPS).permute([0, 3, 1, 2])
    }
}
