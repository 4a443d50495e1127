//! LayerNorm over the last (contiguous) axis on host slices, forward and backward.
//!
//! Per row of `C` values: `μ = Σx/C`, `σ² = Σ(x − μ)²/C` (biased, two passes, as PyTorch and
//! Burn compute it), `r = 1/√(σ² + ε)`, `x̂ = (x − μ)·r`, `y = x̂·γ + β`. The backward pass
//! recomputes `μ` and `r` from the saved input instead of storing them, and gives
//! `dx = r·(g·γ − mean(g·γ) − x̂·mean(g·γ·x̂))`, `dγ = Σ_rows g·x̂`, `dβ = Σ_rows g`.
//! Sums run in 16 interleaved partial sums so that they vectorise.

use std::mem::MaybeUninit;

use super::buffer::filled_in_blocks;
use super::reduce::sum_in_order;

use super::isa::isa_dispatch;

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
    (super::CHUNK / c.max(1)).max(1)
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
