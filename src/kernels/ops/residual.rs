//! A block's residual connection `y = x + branch ⊙ scale`, forward and backward, with `scale`
//! one `[C]` row per sample (`[B, C]`): layer scale `γ[c]` times the sample's stochastic-depth
//! factor (0 or `1/keep`), either or both; without a scale, `x + branch`.
//!
//! The reference ([`residual_reference`], [`residual_backward_reference`],
//! [`residual_sum_reference`]: the fallback on every other backend and with the kernels off) is
//! Burn's broadcast product and sum. Composed from Burn's operators the connection is up to
//! three passes over the map per branch (the layer-scale product, the drop-path product and
//! division, the sum) and as many in the backward pass, each on one thread on flex while the
//! rest of the pool waits. Here the forward is one pass and the backward one (`∂/∂branch = g ⊙ scale`, `∂/∂x = g` itself), plus, when
//! `scale` needs a gradient (layer scale), `∂/∂scale[b, c] = Σ g ⊙ branch` over the sample's
//! pixels, summed per fixed block of rows and added in block order, so seeded training is
//! reproducible whatever the thread count.

use std::mem::MaybeUninit;

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, TensorMetadata};
use burn::tensor::{Shape, Tensor};
use rayon::prelude::*;

use crate::kernels::autodiff::{record, Gradient};
use crate::kernels::isa::isa_dispatch;
use crate::kernels::on_host;
use crate::kernels::runtime::buffer::filled_in_blocks;
use crate::kernels::runtime::reduce::sum_in_order;
use crate::kernels::runtime::CHUNK;

/// The residual connection as a backend operation, with its backward pass.
#[backend_extension(Flex: cfg(feature = "flex"), Autodiff)]
pub trait ResidualOps: Backend {
    /// A residual connection `x + branch ⊙ scale` for `x` and `branch` `[B, …, C]` and
    /// `scale` `[B, C]` (one row per sample, broadcast over its pixels): layer scale times the
    /// stochastic-depth factor.
    fn vheat_residual(
        x: FloatTensor<Self>,
        branch: FloatTensor<Self>,
        scale: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        residual_reference::<Self>(x, branch, scale)
    }

    /// `(∂L/∂branch, ∂L/∂scale)` of [`vheat_residual`](Self::vheat_residual) for the output
    /// gradient `grad` (`∂L/∂x` is `grad`); without `want_dscale` the second is zeros.
    fn vheat_residual_backward(
        branch: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        want_dscale: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        residual_backward_reference::<Self>(branch, scale, grad, want_dscale)
    }

    /// A residual connection without scale, `x + branch` (equal shapes).
    fn vheat_residual_sum(x: FloatTensor<Self>, branch: FloatTensor<Self>) -> FloatTensor<Self> {
        residual_sum_reference::<Self>(x, branch)
    }
}

/// A residual connection `x + branch ⊙ scale`, for `x` and `branch` of one shape `[B, …, C]`
/// and `scale` `[B, C]`: one row per sample, broadcast over its pixels (a block's layer scale
/// times the sample's stochastic-depth factor); without `scale`, `x + branch`.
///
/// On the host fast path it is one parallel pass, forward and backward (`∂/∂x` is the
/// incoming gradient itself, `∂/∂branch` one scaled pass, `∂/∂scale` summed per sample only
/// when `scale` needs a gradient); elsewhere [`residual_reference`] (Burn's broadcast product
/// and sum) and [`residual_sum_reference`].
///
/// # Panics
/// If `branch`'s shape is not `x`'s, or `scale` is not `[B, C]` for it.
pub fn residual<const D: usize>(
    x: Tensor<D>,
    branch: Tensor<D>,
    scale: Option<Tensor<2>>,
) -> Tensor<D> {
    let dims = x.dims();
    assert_eq!(branch.dims(), dims, "residual needs equal shapes");
    let host = on_host(&x) && on_host(&branch) && D >= 2;
    let Some(scale) = scale else {
        let (x, branch) = (x.into_dispatch(), branch.into_dispatch());
        return Tensor::from_dispatch(if host {
            <Dispatch as ResidualOps>::vheat_residual_sum(x, branch)
        } else {
            residual_sum_reference::<Dispatch>(x, branch)
        });
    };
    assert!(
        D >= 2 && scale.dims() == [dims[0], dims[D - 1]],
        "residual scale must be [B, C]"
    );
    let host = host && on_host(&scale);
    let (x, branch, scale) = (
        x.into_dispatch(),
        branch.into_dispatch(),
        scale.into_dispatch(),
    );
    Tensor::from_dispatch(if host {
        <Dispatch as ResidualOps>::vheat_residual(x, branch, scale)
    } else {
        residual_reference::<Dispatch>(x, branch, scale)
    })
}

/// [`ResidualOps::vheat_residual_sum`] in Burn's operators: one sum.
pub(crate) fn residual_sum_reference<B: Backend>(
    x: FloatTensor<B>,
    branch: FloatTensor<B>,
) -> FloatTensor<B> {
    B::float_add(x, branch)
}

/// `scale` (`[B, C]`) as `[B, 1, …, 1, C]` for a tensor of `like`'s rank.
fn per_sample_rows<B: Backend>(scale: FloatTensor<B>, like: &FloatTensor<B>) -> FloatTensor<B> {
    let (ss, rank) = (scale.shape(), like.shape().num_dims());
    let mut dims = vec![1usize; rank];
    dims[0] = ss[0];
    dims[rank - 1] = ss[1];
    B::float_reshape(scale, Shape::from(dims))
}

/// [`ResidualOps::vheat_residual`] in Burn's operators: a broadcast product and a sum.
pub(crate) fn residual_reference<B: Backend>(
    x: FloatTensor<B>,
    branch: FloatTensor<B>,
    scale: FloatTensor<B>,
) -> FloatTensor<B> {
    let scale = per_sample_rows::<B>(scale, &branch);
    B::float_add(x, B::float_mul(branch, scale))
}

/// [`ResidualOps::vheat_residual_backward`] in Burn's operators.
pub(crate) fn residual_backward_reference<B: Backend>(
    branch: FloatTensor<B>,
    scale: FloatTensor<B>,
    grad: FloatTensor<B>,
    want_dscale: bool,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let scale_shape = scale.shape();
    let scale_of_shape = scale.clone();
    let dbranch = B::float_mul(grad.clone(), per_sample_rows::<B>(scale, &branch));
    let dscale = if want_dscale {
        let gs = grad.shape();
        let (batch, c) = (gs[0], gs[gs.num_dims() - 1]);
        let terms = B::float_reshape(
            B::float_mul(grad, branch),
            Shape::new([batch, gs.num_elements() / (batch * c).max(1), c]),
        );
        B::float_reshape(B::float_sum_dim(terms, 1), scale_shape)
    } else {
        // Zeros of the scale's shape, made from the scale itself (no device handle needed).
        B::float_mul_scalar(scale_of_shape, 0.0.into())
    };
    (dbranch, dscale)
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::flex::FlexTensor;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Flex, TensorMetadata};

    use super::*;
    use crate::kernels::flex::{is_f32, tensor, values};

    /// `[B, C]` when `a` and `b` are float32 of one shape `[B, …, C]` and `scale` float32
    /// `[B, C]`: the residual kernel's case.
    fn residual_rows(a: &FlexTensor, b: &FlexTensor, scale: &FlexTensor) -> Option<[usize; 2]> {
        let shape = a.shape();
        let rank = shape.num_dims();
        let bc = [shape[0], shape[rank - 1]];
        let fits = is_f32(&[a, b, scale])
            && rank >= 2
            && b.shape() == shape
            && scale.shape().num_dims() == 2
            && [scale.shape()[0], scale.shape()[1]] == bc
            && bc[0] > 0
            && bc[1] > 0;
        fits.then_some(bc)
    }

    impl ResidualOps for Flex {
        fn vheat_residual(
            x: FloatTensor<Self>,
            branch: FloatTensor<Self>,
            scale: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            let Some(bc) = residual_rows(&x, &branch, &scale) else {
                return residual_reference::<Self>(x, branch, scale);
            };
            let out = scaled_sum(&values(&x), &values(&branch), &values(&scale), bc);
            tensor(out, x.shape())
        }

        fn vheat_residual_backward(
            branch: FloatTensor<Self>,
            scale: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            want_dscale: bool,
        ) -> (FloatTensor<Self>, FloatTensor<Self>) {
            let fits = residual_rows(&grad, &branch, &scale);
            let Some(bc) = fits else {
                return residual_backward_reference::<Self>(branch, scale, grad, want_dscale);
            };
            let (gv, bv, sv) = (values(&grad), values(&branch), values(&scale));
            let (dbranch, dscale) = scaled_sum_backward(&gv, &bv, &sv, bc, want_dscale);
            let dscale = dscale.unwrap_or_else(|| vec![0.0; bc[0] * bc[1]]);
            (tensor(dbranch, grad.shape()), tensor(dscale, scale.shape()))
        }

        fn vheat_residual_sum(
            x: FloatTensor<Self>,
            branch: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            if !is_f32(&[&x, &branch]) || x.shape() != branch.shape() {
                return residual_sum_reference::<Self>(x, branch);
            }
            let out = sum(&values(&x), &values(&branch));
            tensor(out, x.shape())
        }
    }
}

/// The connection's node: keeps the branch, only when the scale needs a gradient (else it is
/// not kept), and the scale.
#[derive(Debug)]
struct ResidualGradient;

impl<B: ResidualOps> Gradient<B, 3> for ResidualGradient {
    type State = (Option<FloatTensor<B>>, FloatTensor<B>);

    fn backward(
        (branch, scale): Self::State,
        grad: FloatTensor<B>,
        [want_x, want_branch, want_scale]: [bool; 3],
    ) -> [Option<FloatTensor<B>>; 3] {
        let want_dscale = want_scale && branch.is_some();
        let dx = want_x.then(|| grad.clone());
        if !want_branch && !want_dscale {
            return [dx, None, None];
        }
        // Without a kept branch (the scale needs no gradient) `grad` stands in for it: only
        // `∂/∂branch` is computed then, which does not read it.
        let branch = branch.unwrap_or_else(|| grad.clone());
        let (dbranch, dscale) = B::vheat_residual_backward(branch, scale, grad, want_dscale);
        [dx, Some(dbranch), want_dscale.then_some(dscale)]
    }
}

/// The sum's node: both inputs get the output gradient itself (shared, not copied).
#[derive(Debug)]
struct ResidualSumGradient;

impl<B: ResidualOps> Gradient<B, 2> for ResidualSumGradient {
    type State = ();

    fn backward((): (), grad: FloatTensor<B>, _: [bool; 2]) -> [Option<FloatTensor<B>>; 2] {
        [Some(grad.clone()), Some(grad)]
    }
}

impl<B: ResidualOps, C: CheckpointStrategy> ResidualOps for Autodiff<B, C> {
    fn vheat_residual(
        x: FloatTensor<Self>,
        branch: FloatTensor<Self>,
        scale: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let keep_branch = scale.is_tracked();
        let inputs = [x.node(), branch.node(), scale.node()];
        record::<B, C, ResidualGradient, 3>(inputs, |keep| {
            let (branch, scale) = (branch.into_primitive(), scale.into_primitive());
            let kept = keep.then(|| (keep_branch.then(|| branch.clone()), scale.clone()));
            (B::vheat_residual(x.into_primitive(), branch, scale), kept)
        })
    }

    fn vheat_residual_sum(x: FloatTensor<Self>, branch: FloatTensor<Self>) -> FloatTensor<Self> {
        let inputs = [x.node(), branch.node()];
        record::<B, C, ResidualSumGradient, 2>(inputs, |keep| {
            let out = B::vheat_residual_sum(x.into_primitive(), branch.into_primitive());
            (out, keep.then_some(()))
        })
    }
}

#[inline(always)]
fn scaled_sum_loop(x: &[f32], branch: &[f32], scale: &[f32], out: &mut [MaybeUninit<f32>]) {
    let c = scale.len();
    for ((o, x), b) in out
        .chunks_exact_mut(c)
        .zip(x.chunks_exact(c))
        .zip(branch.chunks_exact(c))
    {
        for (((o, &x), &b), &s) in o.iter_mut().zip(x).zip(b).zip(scale) {
            o.write(x + b * s);
        }
    }
}

#[inline(always)]
fn sum_loop(x: &[f32], branch: &[f32], out: &mut [MaybeUninit<f32>]) {
    for ((o, &x), &b) in out.iter_mut().zip(x).zip(branch) {
        o.write(x + b);
    }
}

#[inline(always)]
fn scaled_grad_loop(
    grad: &[f32],
    branch: &[f32],
    scale: &[f32],
    dbranch: &mut [MaybeUninit<f32>],
    dscale: Option<&mut [f32]>,
) {
    let c = scale.len();
    let rows = dbranch
        .chunks_exact_mut(c)
        .zip(grad.chunks_exact(c))
        .zip(branch.chunks_exact(c));
    match dscale {
        Some(acc) => {
            for ((d, g), b) in rows {
                for ((((d, &g), &b), &s), a) in d.iter_mut().zip(g).zip(b).zip(scale).zip(&mut *acc)
                {
                    d.write(g * s);
                    *a += g * b;
                }
            }
        }
        None => {
            for ((d, g), _) in rows {
                for ((d, &g), &s) in d.iter_mut().zip(g).zip(scale) {
                    d.write(g * s);
                }
            }
        }
    }
}

isa_dispatch! {
    /// `out = x + branch ⊙ scale` over whole rows of `scale.len()` values.
    fn scaled_sum_rows(
        x: &[f32],
        branch: &[f32],
        scale: &[f32],
        out: &mut [MaybeUninit<f32>],
    ) => scaled_sum_loop;
}

isa_dispatch! {
    /// `out = x + branch`.
    fn sum_slice(x: &[f32], branch: &[f32], out: &mut [MaybeUninit<f32>]) => sum_loop;
}

isa_dispatch! {
    /// `dbranch = grad ⊙ scale` over whole rows, and with `dscale`, `dscale += grad ⊙ branch`
    /// per row.
    fn scaled_grad_rows(
        grad: &[f32],
        branch: &[f32],
        scale: &[f32],
        dbranch: &mut [MaybeUninit<f32>],
        dscale: Option<&mut [f32]>,
    ) => scaled_grad_loop;
}

/// Rows of `c` values per task: about [`CHUNK`] values, at least one row.
fn rows_per_task(c: usize) -> usize {
    (CHUNK / c.max(1)).max(1)
}

/// Checks that `len` values are `batch` samples of whole `c`-rows and returns the rows per
/// sample.
fn rows_per_sample(len: usize, [batch, c]: [usize; 2]) -> usize {
    assert!(
        batch > 0 && c > 0 && len.is_multiple_of(batch * c),
        "residual of whole samples and rows"
    );
    len / (batch * c)
}

/// `x + branch ⊙ scale[b]` for `x` and `branch` of `B` samples of `[…, C]` rows (row-major)
/// and `scale` `[B, C]`, in parallel over blocks of rows.
///
/// # Panics
/// If the lengths are not `B` samples of whole `C`-rows, or differ.
pub(crate) fn scaled_sum(x: &[f32], branch: &[f32], scale: &[f32], bc: [usize; 2]) -> Vec<f32> {
    assert!(
        branch.len() == x.len() && scale.len() == bc[0] * bc[1],
        "residual shapes"
    );
    if x.is_empty() {
        return Vec::new();
    }
    let per_sample = rows_per_sample(x.len(), bc);
    let c = bc[1];
    let rows = rows_per_task(c);
    filled_in_blocks(x.len(), rows * c, |i, out| {
        // Run by run of rows of one sample, each with its sample's scale (a block may cross
        // samples).
        let (first, end) = (i * rows, i * rows + out.len() / c);
        let mut row = first;
        while row < end {
            let sample = row / per_sample;
            let run_end = end.min((sample + 1) * per_sample);
            let (at, to) = (row * c, run_end * c);
            let s = &scale[sample * c..(sample + 1) * c];
            let out = &mut out[(row - first) * c..(run_end - first) * c];
            scaled_sum_rows(&x[at..to], &branch[at..to], s, out);
            row = run_end;
        }
    })
    .0
}

/// `x + branch` in parallel, into a fresh buffer.
///
/// # Panics
/// If the lengths differ.
pub(crate) fn sum(x: &[f32], branch: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), branch.len(), "residual shapes");
    filled_in_blocks(x.len(), CHUNK, |i, out| {
        let at = i * CHUNK;
        sum_slice(&x[at..at + out.len()], &branch[at..at + out.len()], out)
    })
    .0
}

/// The backward pass of [`scaled_sum`] for the output gradient `grad`: `∂L/∂branch = grad ⊙
/// scale[b]` and, when `want_dscale`, `∂L/∂scale[b, c] = Σ grad ⊙ branch` over sample `b`'s
/// rows (`[B, C]`); `∂L/∂x` is `grad` itself.
///
/// # Panics
/// As [`scaled_sum`].
pub(crate) fn scaled_sum_backward(
    grad: &[f32],
    branch: &[f32],
    scale: &[f32],
    bc: [usize; 2],
    want_dscale: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    assert!(
        branch.len() == grad.len() && scale.len() == bc[0] * bc[1],
        "residual shapes"
    );
    let [batch, c] = bc;
    if grad.is_empty() {
        return (Vec::new(), want_dscale.then(|| vec![0.0; batch * c]));
    }
    let per_sample = rows_per_sample(grad.len(), bc);
    let len = per_sample * c;
    let block = rows_per_task(c) * c;
    let mut dbranch = Vec::<f32>::with_capacity(grad.len());
    // One task per (sample, block of its rows): blocks never cross samples, so each partial
    // sum of the scale's gradient belongs to one sample; they are added in block order.
    let partials: Vec<Vec<Vec<f32>>> = dbranch.spare_capacity_mut()[..grad.len()]
        .par_chunks_mut(len)
        .enumerate()
        .map(|(sample, out)| {
            let s = &scale[sample * c..(sample + 1) * c];
            out.par_chunks_mut(block)
                .enumerate()
                .map(|(i, out)| {
                    let at = sample * len + i * block;
                    let (g, b) = (&grad[at..at + out.len()], &branch[at..at + out.len()]);
                    let mut acc = want_dscale.then(|| vec![0.0f32; c]);
                    scaled_grad_rows(g, b, s, out, acc.as_deref_mut());
                    acc.unwrap_or_default()
                })
                .collect()
        })
        .collect();
    // SAFETY: the samples' chunks cover all `grad.len()` values, their blocks cover each
    // sample in whole rows (`block` and `len` are multiples of `c`), and `scaled_grad_rows`
    // writes every value of its rows.
    unsafe { dbranch.set_len(grad.len()) };
    let dscale = want_dscale.then(|| {
        partials
            .iter()
            .flat_map(|blocks| sum_in_order(blocks, c))
            .collect()
    });
    (dbranch, dscale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::isa::{force, runnable, tests_lock};
    use crate::kernels::test_values as values;

    /// Against float64 sums from the definition, on every ISA path the machine runs, with
    /// blocks that cross samples (`C` not dividing the block) and more than one block per sample.
    #[test]
    fn matches_float64_on_every_path() {
        let _guard = tests_lock();
        for &(batch, rows, c) in &[(1, 1, 1), (3, 5, 7), (2, 700, 33), (4, 9, 96)] {
            let n = batch * rows * c;
            let (x, branch, grad) = (values(n, 1), values(n, 2), values(n, 3));
            let scale = values(batch * c, 4);
            for isa in runnable() {
                force(Some(isa));
                let y = scaled_sum(&x, &branch, &scale, [batch, c]);
                let plain = sum(&x, &branch);
                let (db, ds) = scaled_sum_backward(&grad, &branch, &scale, [batch, c], true);
                let (db2, none) = scaled_sum_backward(&grad, &branch, &scale, [batch, c], false);
                assert_eq!(db, db2, "the same dbranch with or without dscale");
                assert!(none.is_none());
                let ds = ds.expect("asked for");
                for i in 0..n {
                    let s = scale[(i / (rows * c)) * c + i % c] as f64;
                    // One product and one sum in float32: within an ulp of values below 2.
                    let want = x[i] as f64 + branch[i] as f64 * s;
                    assert!((y[i] as f64 - want).abs() <= 2.5e-7, "y[{i}]");
                    assert_eq!(plain[i], x[i] + branch[i], "sum[{i}]");
                    assert!(
                        (db[i] as f64 - grad[i] as f64 * s).abs() <= 1.2e-7,
                        "db[{i}]"
                    );
                }
                for b in 0..batch {
                    for ch in 0..c {
                        let (mut want, mut size) = (0.0f64, 0.0f64);
                        for r in 0..rows {
                            let i = (b * rows + r) * c + ch;
                            want += grad[i] as f64 * branch[i] as f64;
                            size += (grad[i] as f64 * branch[i] as f64).abs();
                        }
                        // float32 accumulation over `rows` terms, blocked: each addition
                        // rounds by at most 2⁻²⁴ of the sum of magnitudes so far.
                        let tol = 2.0 * rows as f64 * f32::EPSILON as f64 * size + 1e-12;
                        let got = ds[b * c + ch] as f64;
                        assert!(
                            (got - want).abs() <= tol,
                            "dscale[{b}, {ch}]: {got} vs {want}"
                        );
                    }
                }
            }
        }
        force(None);
    }
}
