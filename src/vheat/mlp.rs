//! The block's channel MLP: two 1×1 convolutions around an exact GELU.

use burn::nn::Gelu;
use burn::prelude::*;

use super::pointwise::PointwiseConv;

/// `fc2(GELU(fc1(x)))` with 1×1 convolutions `C → ratio·C → C` (the reference's `Mlp` with
/// `channels_first=True`), on a channels-last map.
#[derive(Module, Debug)]
#[non_exhaustive]
pub struct Mlp {
    /// Expansion `C → hidden`.
    pub fc1: PointwiseConv,
    /// Exact (erf) GELU (run through [`crate::kernels::gelu`], which is the same function).
    pub act: Gelu,
    /// Projection `hidden → C`.
    pub fc2: PointwiseConv,
}

impl Mlp {
    /// An MLP `dim → hidden → dim`.
    pub fn new(dim: usize, hidden: usize, device: &Device) -> Self {
        Self {
            fc1: PointwiseConv::new(dim, hidden, device),
            act: Gelu::new(),
            fc2: PointwiseConv::new(hidden, dim, device),
        }
    }

    /// `[B, H, W, C]` → `[B, H, W, C]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [h, c, _, _] = self.fc1.weight.dims();
        let [n, _, _, _] = self.fc2.weight.dims();
        crate::kernels::mlp_out_in(
            x,
            self.fc1.weight.val().reshape([h, c]),
            self.fc1.bias.val(),
            self.fc2.weight.val().reshape([n, h]),
            self.fc2.bias.val(),
        )
    }
}
