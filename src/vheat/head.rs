//! [`Head`]: LayerNorm → global average pool → Linear.

use burn::nn::{LayerNorm, LayerNormConfig, Linear};
use burn::prelude::*;

/// LayerNorm epsilon of the classifier's norm (PyTorch's default, as in the reference).
const NORM_EPS: f64 = 1e-5;

/// The classifier: LayerNorm over channels → global average pool → Linear (the reference's
/// `classifier` sequence, indices 0 and 3). Without `fc` (0 classes) it returns the pooled
/// features.
#[derive(Module, Debug)]
#[non_exhaustive]
pub struct Head {
    /// LayerNorm over channels (eps 1e-5).
    pub norm: LayerNorm,
    /// The final Linear; `None` for a headless model.
    pub fc: Option<Linear>,
}

impl Head {
    /// The epsilon of this layer's LayerNorms (what an exporter writes beside their weights).
    pub const NORM_EPS: f64 = NORM_EPS;

    /// A head `dim → num_classes` (no Linear when `num_classes == 0`).
    pub fn new(dim: usize, num_classes: usize, device: &Device) -> Self {
        Self {
            norm: LayerNormConfig::new(dim)
                .with_epsilon(NORM_EPS)
                .init(device),
            fc: (num_classes > 0).then(|| crate::init::reference_linear(dim, num_classes, device)),
        }
    }

    /// Number of outputs: classes, or the feature width when headless.
    pub fn num_outputs(&self) -> usize {
        match &self.fc {
            Some(fc) => fc.weight.dims()[1],
            None => self.norm.gamma.dims()[0],
        }
    }

    /// Normalised, pooled features `[B, C]` from an NCHW map.
    pub fn pool(&self, x: Tensor<4>) -> Tensor<2> {
        let x =
            crate::kernels::layer_norm_with_epsilon(x.permute([0, 2, 3, 1]), &self.norm, NORM_EPS);
        let pooled: Tensor<4> = x.mean_dim(1).mean_dim(2);
        pooled.flatten(1, 3)
    }

    /// Logits `[B, classes]` (or `[B, C]` when `pre_logits` or headless) from an NCHW map.
    pub fn forward(&self, x: Tensor<4>, pre_logits: bool) -> Tensor<2> {
        let pooled = self.pool(x);
        match (&self.fc, pre_logits) {
            (Some(fc), false) => fc.forward(pooled),
            _ => pooled,
        }
    }
}
