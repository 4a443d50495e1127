//! Stochastic depth: drop a whole residual branch per sample while training.

use burn::module::{Flag, Param};
use burn::prelude::*;
use burn::tensor::Distribution;

/// DropPath (stochastic depth, Huang et al. 2016): during training, zero a residual branch for
/// a random subset of the batch with probability `prob` and scale the kept ones by
/// `1 / (1 - prob)`. Identity in evaluation (after `valid()`) and on a device without autodiff.
#[derive(Module, Debug)]
#[non_exhaustive]
pub struct DropPath {
    /// Probability of dropping the branch for one sample.
    pub prob: f64,
    /// Switched off by `valid()` and on by `train()`.
    pub training: Param<Flag>,
}

impl DropPath {
    /// A DropPath with drop probability `prob`.
    pub fn new(prob: f64) -> Self {
        Self {
            prob,
            training: Param::from_bool(true),
        }
    }

    /// Applies the branch mask to `x` (`[B, ...]`).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if self.prob <= 0.0 || !self.training.is_enabled() || !x.device().is_autodiff() {
            return x;
        }
        let keep = 1.0 - self.prob;
        let mut shape = [1usize; D];
        shape[0] = x.dims()[0];
        let mask = Tensor::<D>::random(shape, Distribution::Bernoulli(keep), &x.device());
        x * mask / keep
    }

    /// The factor [`forward`](Self::forward) would multiply each of `batch` samples by, drawn
    /// afresh: 0 (dropped) or `1 / (1 − prob)` (kept), `[batch]`. `None` where `forward` is
    /// the identity (probability 0, evaluation, no autodiff), so that callers can fold the
    /// factor into another product (see `kernels::residual`).
    pub fn sample_scale(&self, batch: usize, device: &Device) -> Option<Tensor<1>> {
        if self.prob <= 0.0 || !self.training.is_enabled() || !device.is_autodiff() {
            return None;
        }
        let keep = 1.0 - self.prob;
        let mask = Tensor::<1>::random([batch], Distribution::Bernoulli(keep), device);
        Some(mask / keep)
    }
}

/// The linear stochastic-depth rule: block `i` of `n` drops with `rate · i / (n - 1)`
/// (`torch.linspace(0, rate, n)`), so the first block never drops and the last drops with `rate`.
pub fn drop_path_schedule(rate: f64, n: usize) -> Vec<f64> {
    match n {
        0 => vec![],
        1 => vec![0.0],
        _ => (0..n).map(|i| rate * i as f64 / (n - 1) as f64).collect(),
    }
}
