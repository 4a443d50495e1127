//! LayerNorm over the last (contiguous) axis, forward and backward.
//!
//! The reference ([`layer_norm_reference`], [`layer_norm_backward_reference`]: the fallback on
//! every other backend) is Burn's `layer_norm` operator and its backward pass in Burn's
//! operators; the public [`layer_norm_with_epsilon`] falls back to Burn's `LayerNorm` module
//! itself, which runs that operator (widening low-precision inputs first). Under autodiff
//! Burn decomposes LayerNorm into eight generic operators; here it is one graph node.
//!
//! The host loops, per row of `C` values: `μ = Σx/C`, `σ² = Σ(x − μ)²/C` (biased, two passes,
//! as PyTorch and Burn compute it), `r = 1/√(σ² + ε)`, `x̂ = (x − μ)·r`, `y = x̂·γ + β`. The backward pass
//! recomputes `μ` and `r` from the saved input instead of storing them, and gives
//! `dx = r·(g·γ − mean(g·γ) − x̂·mean(g·γ·x̂))`, `dγ = Σ_rows g·x̂`, `dβ = Σ_rows g`.
//! Sums run in 16 interleaved partial sums so that they vectorise.

use std::mem::MaybeUninit;

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, TensorMetadata};
use burn::nn::LayerNorm;
use burn::tensor::{Shape, Tensor};

use crate::kernels::autodiff::record_weighted;
use crate::kernels::isa::isa_dispatch;
use crate::kernels::on_host;
use crate::kernels::runtime::buffer::filled_in_blocks;
use crate::kernels::runtime::reduce::sum_in_order;

/// LayerNorm over the last axis as a backend operation, with its backward pass.
#[backend_extension(Flex: cfg(feature = "flex"), Autodiff)]
pub trait LayerNormOps: Backend {
    /// LayerNorm over the last axis: `(x − μ)/√(σ² + ε) · γ + β`.
    fn vheat_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        layer_norm_reference::<Self>(x, gamma, beta, epsilon)
    }

    /// `(dx, dγ, dβ)` of [`vheat_layer_norm`](Self::vheat_layer_norm) for the output gradient
    /// `grad`.
    fn vheat_layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        layer_norm_backward_reference::<Self>(x, gamma, grad, epsilon)
    }
}

/// `norm.forward(x)` — LayerNorm over the last axis, `norm`'s epsilon being `epsilon` — through
/// the host kernel where it applies: the caller passes the epsilon it built the norm with
/// (Burn's `LayerNorm` keeps its own private).
///
/// On the host fast path it is one pass each way (one graph node under autodiff); a norm
/// without bias, a map whose last axis is not the norm's, and every other backend or dtype run
/// Burn's `norm.forward(x)`.
pub fn layer_norm_with_epsilon<const D: usize>(
    x: Tensor<D>,
    norm: &LayerNorm,
    epsilon: f64,
) -> Tensor<D> {
    let Some(beta) = norm.beta.as_ref() else {
        return norm.forward(x);
    };
    let gamma = norm.gamma.val();
    let beta = beta.val();
    if !(on_host(&x) && on_host(&gamma) && on_host(&beta)) || x.dims()[D - 1] != gamma.dims()[0] {
        return norm.forward(x);
    }
    Tensor::from_dispatch(<Dispatch as LayerNormOps>::vheat_layer_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
    ))
}

/// LayerNorm in Burn's operator (`ModuleOps::layer_norm`, which `LayerNorm::forward` calls).
pub(crate) fn layer_norm_reference<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f64,
) -> FloatTensor<B> {
    B::layer_norm(x, gamma, Some(beta), epsilon)
}

/// LayerNorm's backward pass in Burn's operators (the formulas of the module docs).
pub(crate) fn layer_norm_backward_reference<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    grad: FloatTensor<B>,
    epsilon: f64,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let shape = x.shape();
    let last = shape.num_dims() - 1;
    let c = shape[last];
    let rows = shape.num_elements() / c.max(1);
    let mut bcast = vec![1; shape.num_dims()];
    bcast[last] = c;
    let gamma = B::float_reshape(gamma, Shape::from(bcast));
    let mean = B::float_mean_dim(x.clone(), last);
    let centred = B::float_sub(x, mean);
    let var = B::float_mean_dim(B::float_mul(centred.clone(), centred.clone()), last);
    let rstd = B::float_powf_scalar(B::float_add_scalar(var, epsilon.into()), (-0.5).into());
    let xhat = B::float_mul(centred, rstd.clone());
    let gg = B::float_mul(grad.clone(), gamma);
    let m1 = B::float_mean_dim(gg.clone(), last);
    let m2 = B::float_mean_dim(B::float_mul(gg.clone(), xhat.clone()), last);
    let inner = B::float_sub(B::float_sub(gg, m1), B::float_mul(xhat.clone(), m2));
    let dx = B::float_mul(rstd, inner);
    let flat = |t: FloatTensor<B>| {
        let t = B::float_reshape(t, Shape::new([rows, c]));
        B::float_reshape(B::float_sum_dim(t, 0), Shape::new([c]))
    };
    let dgamma = flat(B::float_mul(grad.clone(), xhat));
    let dbeta = flat(grad);
    (dx, dgamma, dbeta)
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Flex, TensorMetadata};

    use super::*;
    use crate::kernels::flex::{is_f32, tensor, values};

    impl LayerNormOps for Flex {
        fn vheat_layer_norm(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            epsilon: f64,
        ) -> FloatTensor<Self> {
            if !is_f32(&[&x, &gamma, &beta]) {
                return layer_norm_reference::<Self>(x, gamma, beta, epsilon);
            }
            let shape = x.shape();
            let (x, gamma, beta) = (values(&x), values(&gamma), values(&beta));
            tensor(layer_norm_forward(&x, &gamma, &beta, epsilon as f32), shape)
        }

        fn vheat_layer_norm_backward(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            epsilon: f64,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            if !is_f32(&[&x, &gamma, &grad]) {
                return layer_norm_backward_reference::<Self>(x, gamma, grad, epsilon);
            }
            let shape = x.shape();
            let c = gamma.shape()[0];
            let (x, gamma, grad) = (values(&x), values(&gamma), values(&grad));
            let (dx, dgamma, dbeta) = layer_norm_backward(&x, &gamma, &grad, epsilon as f32);
            (tensor(dx, shape), tensor(dgamma, [c]), tensor(dbeta, [c]))
        }
    }
}

impl<B: LayerNormOps, C: CheckpointStrategy> LayerNormOps for Autodiff<B, C> {
    fn vheat_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        // The node keeps x, γ and ε (β is not needed).
        let (forward, backward) = (B::vheat_layer_norm, B::vheat_layer_norm_backward);
        record_weighted::<B, C, _>([x, gamma, beta], epsilon, forward, backward)
    }
}

const LANES: usize = 16;

#[inline(always)]
fn lanes_total(acc: [f32; LANES]) -> f32 {
    acc.iter().sum()
}

#[inline(always)]
fn sum(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for k in 0..LANES {
            acc[k] += chunk[k];
        }
    }
    lanes_total(acc) + tail
}

#[inline(always)]
fn squared_deviation(v: &[f32], mean: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|x| (x - mean) * (x - mean))
        .sum();
    for chunk in chunks {
        for k in 0..LANES {
            let d = chunk[k] - mean;
            acc[k] += d * d;
        }
    }
    lanes_total(acc) + tail
}

/// `(μ, r)` of one row.
#[inline(always)]
fn moments(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = sum(row) / n;
    let var = squared_deviation(row, mean) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

#[inline(always)]
fn forward_rows(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [MaybeUninit<f32>]) {
    let c = gamma.len();
    for (row, y) in x.chunks_exact(c).zip(out.chunks_exact_mut(c)) {
        let (mean, rstd) = moments(row, eps);
        for k in 0..c {
            y[k].write((row[k] - mean) * rstd * gamma[k] + beta[k]);
        }
    }
}

/// One block of rows' backward pass; adds into `dgamma`/`dbeta` (length `C`).
#[inline(always)]
fn backward_rows(
    x: &[f32],
    gamma: &[f32],
    grad: &[f32],
    eps: f32,
    dx: &mut [MaybeUninit<f32>],
    dgamma_dbeta: &mut [f32],
) {
    let c = gamma.len();
    let (dgamma, dbeta) = dgamma_dbeta.split_at_mut(c);
    for ((row, g), d) in x
        .chunks_exact(c)
        .zip(grad.chunks_exact(c))
        .zip(dx.chunks_exact_mut(c))
    {
        let (mean, rstd) = moments(row, eps);
        let mut s1 = [0.0f32; LANES];
        let mut s2 = [0.0f32; LANES];
        let full = c - c % LANES;
        for base in (0..full).step_by(LANES) {
            for k in 0..LANES {
                let i = base + k;
                let gg = g[i] * gamma[i];
                s1[k] += gg;
                s2[k] += gg * (row[i] - mean) * rstd;
            }
        }
        let (mut t1, mut t2) = (0.0f32, 0.0f32);
        for i in full..c {
            let gg = g[i] * gamma[i];
            t1 += gg;
            t2 += gg * (row[i] - mean) * rstd;
        }
        let inv_c = 1.0 / c as f32;
        let mean_gg = (lanes_total(s1) + t1) * inv_c;
        let mean_ggx = (lanes_total(s2) + t2) * inv_c;
        for k in 0..c {
            let xhat = (row[k] - mean) * rstd;
            d[k].write(rstd * (g[k] * gamma[k] - mean_gg - xhat * mean_ggx));
            dgamma[k] += g[k] * xhat;
            dbeta[k] += g[k];
        }
    }
}

isa_dispatch! {
    fn forward_block(
        x: &[f32],
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
        out: &mut [MaybeUninit<f32>],
    ) => forward_rows;
}

isa_dispatch! {
    fn backward_block(
        x: &[f32],
        gamma: &[f32],
        grad: &[f32],
        eps: f32,
        dx: &mut [MaybeUninit<f32>],
        dgamma_dbeta: &mut [f32],
    ) => backward_rows;
}

/// Rows per parallel task: about 16 Ki values, at least one row.
fn rows_per_task(c: usize) -> usize {
    (crate::kernels::runtime::CHUNK / c.max(1)).max(1)
}

/// LayerNorm of every `C`-row of `x` (`C = gamma.len()`), in parallel over blocks of rows.
pub(crate) fn layer_norm_forward(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32) -> Vec<f32> {
    let c = gamma.len();
    if x.is_empty() {
        return Vec::new();
    }
    // Whole rows: every output value is written (the blocks' contract).
    assert!(
        c > 0 && x.len().is_multiple_of(c),
        "layer norm of whole rows"
    );
    let block = rows_per_task(c) * c;
    filled_in_blocks(x.len(), block, |i, y| {
        let x = &x[i * block..i * block + y.len()];
        forward_block(x, gamma, beta, eps, y)
    })
    .0
}

/// `(dx, dγ, dβ)` of [`layer_norm_forward`] for the output gradient `grad`.
pub(crate) fn layer_norm_backward(
    x: &[f32],
    gamma: &[f32],
    grad: &[f32],
    eps: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let c = gamma.len();
    if x.is_empty() {
        return (Vec::new(), vec![0.0; c], vec![0.0; c]);
    }
    // Whole rows, as many as the gradient's: every value of dx is written.
    assert!(
        c > 0 && x.len().is_multiple_of(c) && grad.len() == x.len(),
        "layer norm of whole rows"
    );
    let block = rows_per_task(c) * c;
    // One partial (dγ, dβ) per block of rows, added up in block order: the result does not
    // depend on how rayon schedules the blocks, so seeded training is reproducible.
    let (dx, partials) = filled_in_blocks(x.len(), block, |i, d| {
        let rows = i * block..i * block + d.len();
        let mut acc = vec![0.0f32; 2 * c];
        backward_block(&x[rows.clone()], gamma, &grad[rows], eps, d, &mut acc);
        acc
    });
    let sums = sum_in_order(&partials, 2 * c);
    let (dgamma, dbeta) = sums.split_at(c);
    (dx, dgamma.to_vec(), dbeta.to_vec())
}
