//! A 1×1 convolution applied to a channels-last map, stored like PyTorch's `Conv2d(k=1)`.

use burn::module::Param;
use burn::prelude::*;

/// A 1×1 convolution with PyTorch's `[out, in, 1, 1]` weight layout, applied to a
/// channels-last map `[..., in]` as one matmul (no layout permutes).
#[derive(Module, Debug)]
#[non_exhaustive]
pub struct PointwiseConv {
    /// `[out, in, 1, 1]`, as in PyTorch.
    pub weight: Param<Tensor<4>>,
    /// `[out]`.
    pub bias: Param<Tensor<1>>,
}

impl PointwiseConv {
    /// A 1×1 convolution `d_in → d_out` with PyTorch's default (Kaiming-uniform) initialisation.
    pub fn new(d_in: usize, d_out: usize, device: &Device) -> Self {
        let bound = 1.0 / (d_in as f64).sqrt();
        let dist = burn::tensor::Distribution::Uniform(-bound, bound);
        Self {
            weight: Param::from_tensor(Tensor::random([d_out, d_in, 1, 1], dist, device)),
            bias: Param::from_tensor(Tensor::random([d_out], dist, device)),
        }
    }

    /// Applies the convolution to a channels-last map `[B, H, W, in]` → `[B, H, W, out]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [d_out, d_in, _, _] = self.weight.dims();
        let w: Tensor<2> = self.weight.val().reshape([d_out, d_in]);
        crate::kernels::linear_out_in(x, w, Some(self.bias.val()))
    }
}
