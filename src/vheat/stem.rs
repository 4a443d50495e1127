//! The stem: two stride-2 3×3 convolutions that cut the image into 4×4 patches.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Gelu, LayerNorm, LayerNormConfig, PaddingConfig2d};
use burn::prelude::*;

use crate::kernels::layer_norm_with_epsilon;

/// LayerNorm epsilon of the stem's norms (the reference's `build_norm_layer` default).
pub const STEM_NORM_EPS: f64 = 1e-6;

/// `conv3×3 s2 → LayerNorm → GELU → conv3×3 s2 → LayerNorm` (the reference's `StemLayer`),
/// `[B, in, H, W]` → `[B, dim, ⌈⌈H/2⌉/2⌉, ⌈⌈W/2⌉/2⌉]`.
#[derive(Module, Debug)]
#[non_exhaustive]
pub struct Stem {
    /// `in → dim/2`, 3×3, stride 2, padding 1.
    pub conv1: Conv2d,
    /// LayerNorm over channels, eps 1e-6.
    pub norm1: LayerNorm,
    /// Exact GELU (run through [`crate::kernels::gelu`], which is the same function).
    pub act: Gelu,
    /// `dim/2 → dim`, 3×3, stride 2, padding 1.
    pub conv2: Conv2d,
    /// LayerNorm over channels, eps 1e-6.
    pub norm2: LayerNorm,
}

/// A LayerNorm (with epsilon `epsilon`) over the channels of an NCHW map.
pub(crate) fn norm_nchw(norm: &LayerNorm, epsilon: f64, x: Tensor<4>) -> Tensor<4> {
    crate::kernels::layer_norm_with_epsilon(x.permute([0, 2, 3, 1]), norm, epsilon)
        .permute([0, 3, 1, 2])
}

/// `conv` (a Burn `Conv2d`) applied to a channels-last map `[B, H, W, C]`, giving a
/// channels-last map. A dense 3×3 with padding 1 and equal strides (every convolution of the
/// stem and the downsamplings) goes through [`crate::kernels::conv3x3_nhwc`], which on the CPU
/// reads the map as it is; any other convolution runs Burn's between permutes.
pub(crate) fn conv_nhwc(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [stride_h, stride_w] = conv.stride;
    let plain_3x3 = conv.kernel_size == [3, 3]
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && conv.padding == PaddingConfig2d::Explicit(1, 1, 1, 1)
        && stride_h == stride_w
        && stride_h > 0;
    if plain_3x3 {
        let bias = conv.bias.as_ref().map(|b| b.val());
        crate::kernels::conv3x3_nhwc(x, conv.weight.val(), bias, stride_h)
    } else {
        conv.forward(x.permute([0, 3, 1, 2])).permute([0, 2, 3, 1])
    }
}

/// Output side length of a 3×3, stride-2, padding-1 convolution.
pub const fn halve(n: usize) -> usize {
    n.div_ceil(2)
}

impl Stem {
    /// A stem `in_chans → dim` on `device`.
    pub fn new(in_chans: usize, dim: usize, device: &Device) -> Self {
        let conv = |i, o| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        let norm = |c| {
            LayerNormConfig::new(c)
                .with_epsilon(STEM_NORM_EPS)
                .init(device)
        };
        Self {
            conv1: conv(in_chans, dim / 2),
            norm1: norm(dim / 2),
            act: Gelu::new(),
            conv2: conv(dim / 2, dim),
            norm2: norm(dim),
        }
    }

    /// `[B, in, H, W]` → `[B, dim, H/4, W/4]` (NCHW).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        // Images of another float precision are cast to the stem's (see `VHeat::with_float_dtype`).
        let dtype = self.conv1.weight.val().dtype();
        let x = if x.dtype() == dtype {
            x
        } else {
            x.cast(burn::tensor::FloatDType::from(dtype))
        };
        // Channels-last inside (the norms run over channels, the convolutions read the map as
        // it is); NCHW out.
        let x = conv_nhwc(&self.conv1, x.permute([0, 2, 3, 1]));
        let x = crate::kernels::gelu(layer_norm_with_epsilon(x, &self.norm1, STEM_NORM_EPS));
        let x = conv_nhwc(&self.conv2, x);
        layer_norm_with_epsilon(x, &self.norm2, STEM_NORM_EPS).permute([0, 3, 1, 2])
    }

    /// The downsampling factor from image to the last of `num_stages` stages:
    /// 4 (stem) · 2^(num_stages − 1).
    pub const fn total_stride(num_stages: usize) -> usize {
        4usize << num_stages.saturating_sub(1)
    }

    /// Output `[H, W]` for an input of `[h, w]`.
    pub const fn output_size(h: usize, w: usize) -> [usize; 2] {
        [halve(halve(h)), halve(halve(w))]
    }
}
