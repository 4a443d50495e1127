//! The heat operator's spectral decay `exp(−ReLU(k)·(ωₙ² + ωₘ²))`, forward and backward, from
//! the conductivity predictor's raw output `k` (`[H, W, C]`, channels last) and the frequency
//! grid `ωₙ² + ωₘ²` (`[H, W]`, one value per row of `C` channels), a constant.
//!
//! The reference ([`heat_decay_reference`], [`heat_decay_backward_reference`]: the fallback on
//! every other backend, and with the kernels off) is Burn's operators, four passes (ReLU, the
//! broadcast product, negation, `exp`), each on one thread below flex's parallel threshold and
//! each a fresh buffer. The host loops make it one vectorised pass over the rows. Its gradient
//! in `k` is `−(ωₙ² + ωₘ²)·decay` where `k > 0` and 0 elsewhere (ReLU's derivative at 0 is 0,
//! as in Burn).

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, TensorMetadata};
use burn::tensor::{Shape, Tensor};

use crate::kernels::autodiff::{record, Gradient};
use crate::kernels::isa::isa_dispatch;
use crate::kernels::on_host;
use crate::kernels::runtime::math::exp;

/// The spectral decay as a backend operation, with its backward pass.
#[backend_extension(Flex: cfg(feature = "flex"), Autodiff)]
pub trait HeatDecayOps: Backend {
    /// The heat operator's spectral decay `exp(−ReLU(k)·freq)` for `k` `[H, W, C]` and the
    /// frequency grid `freq` (`[H, W]`, `ωₙ² + ωₘ²`), a constant: it gets no gradient.
    fn vheat_heat_decay(k: FloatTensor<Self>, freq: FloatTensor<Self>) -> FloatTensor<Self> {
        heat_decay_reference::<Self>(k, freq)
    }

    /// `grad · ∂/∂k` of [`vheat_heat_decay`](Self::vheat_heat_decay).
    fn vheat_heat_decay_backward(
        k: FloatTensor<Self>,
        freq: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        heat_decay_backward_reference::<Self>(k, freq, grad)
    }
}

/// The heat operator's spectral decay `exp(−ReLU(k)·freq)`: `k` `[H, W, C]` is the
/// conductivity predictor's raw output and `freq` `[H, W]` the frequency grid `ωₙ² + ωₘ²`
/// (`heat::frequency_sq`), a constant that gets no gradient.
///
/// One vectorised pass (forward and backward) on the host fast path; elsewhere
/// [`heat_decay_reference`], Burn's `(relu(k) · freq).neg().exp()`.
///
/// # Panics
/// If `freq` is not `[H, W]` for `k`'s `[H, W, C]`.
pub fn heat_decay(k: Tensor<3>, freq: Tensor<2>) -> Tensor<3> {
    let [h, w, _] = k.dims();
    assert_eq!(
        freq.dims(),
        [h, w],
        "heat_decay needs freq [H, W] for k [H, W, C]"
    );
    let host = on_host(&k) && on_host(&freq);
    let (k, freq) = (k.into_dispatch(), freq.into_dispatch());
    Tensor::from_dispatch(if host {
        <Dispatch as HeatDecayOps>::vheat_heat_decay(k, freq)
    } else {
        heat_decay_reference::<Dispatch>(k, freq)
    })
}

/// `freq` (`[H, W]`) as `[H, W, 1]` expanded to `k`'s shape `[H, W, C]`.
fn frequencies_like<B: Backend>(freq: FloatTensor<B>, k: &FloatTensor<B>) -> FloatTensor<B> {
    let ks = k.shape();
    let column = B::float_reshape(freq, Shape::new([ks[0], ks[1], 1]));
    B::float_expand(column, ks)
}

/// [`HeatDecayOps::vheat_heat_decay`] in Burn's operators: ReLU, the broadcast product,
/// negation, `exp`.
pub(crate) fn heat_decay_reference<B: Backend>(
    k: FloatTensor<B>,
    freq: FloatTensor<B>,
) -> FloatTensor<B> {
    let freq = frequencies_like::<B>(freq, &k);
    B::float_exp(B::float_neg(B::float_mul(B::relu(k), freq)))
}

/// [`HeatDecayOps::vheat_heat_decay_backward`] in Burn's operators: `grad · (−freq · decay)`
/// through ReLU's backward (0 where `k ≤ 0`).
pub(crate) fn heat_decay_backward_reference<B: Backend>(
    k: FloatTensor<B>,
    freq: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let freq = frequencies_like::<B>(freq, &k);
    let relu = B::relu(k);
    let decay = B::float_exp(B::float_neg(B::float_mul(relu.clone(), freq.clone())));
    let slope = B::float_neg(B::float_mul(freq, decay));
    B::relu_backward(relu, B::float_mul(grad, slope))
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::flex::FlexTensor;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Flex, TensorMetadata};
    use rayon::prelude::*;

    use super::*;
    use crate::kernels::flex::{is_f32, owned, tensor, values};
    use crate::kernels::runtime::buffer::zeroed;
    use crate::kernels::runtime::CHUNK;

    /// `C` when the decay kernel takes `k` and `freq`: float32, `k` `[H, W, C]` with `C > 0`,
    /// `freq` `[H, W]`.
    fn decay_channels(k: &FlexTensor, freq: &FlexTensor) -> Option<usize> {
        let (ks, fs) = (k.shape(), freq.shape());
        let fits = is_f32(&[k, freq])
            && ks.num_dims() == 3
            && fs.num_dims() == 2
            && ks[0] == fs[0]
            && ks[1] == fs[1]
            && ks[2] > 0;
        fits.then(|| ks[2])
    }

    impl HeatDecayOps for Flex {
        fn vheat_heat_decay(k: FloatTensor<Self>, freq: FloatTensor<Self>) -> FloatTensor<Self> {
            let Some(c) = decay_channels(&k, &freq) else {
                return heat_decay_reference::<Self>(k, freq);
            };
            let (kv, fv) = (values(&k), values(&freq));
            let mut out = zeroed(kv.len());
            let rows = (CHUNK / c).max(1);
            out.par_chunks_mut(rows * c)
                .zip(kv.par_chunks(rows * c))
                .zip(fv.par_chunks(rows))
                .for_each(|((out, k), freq)| decay_rows(k, freq, c, out));
            tensor(out, k.shape())
        }

        fn vheat_heat_decay_backward(
            k: FloatTensor<Self>,
            freq: FloatTensor<Self>,
            grad: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            let fits =
                decay_channels(&k, &freq).filter(|_| is_f32(&[&grad]) && grad.shape() == k.shape());
            let Some(c) = fits else {
                return heat_decay_backward_reference::<Self>(k, freq, grad);
            };
            let (kv, fv) = (values(&k), values(&freq));
            let mut grad = owned(grad);
            let rows = (CHUNK / c).max(1);
            grad.storage_mut::<f32>()
                .par_chunks_mut(rows * c)
                .zip(kv.par_chunks(rows * c))
                .zip(fv.par_chunks(rows))
                .for_each(|((g, k), freq)| decay_backward_rows(k, freq, c, g));
            grad
        }
    }
}

/// The decay's node: keeps `k` and the frequency grid; only `k` is an input of the graph.
#[derive(Debug)]
struct HeatDecayGradient;

impl<B: HeatDecayOps> Gradient<B, 1> for HeatDecayGradient {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(
        (k, freq): Self::State,
        grad: FloatTensor<B>,
        [want]: [bool; 1],
    ) -> [Option<FloatTensor<B>>; 1] {
        [want.then(|| B::vheat_heat_decay_backward(k, freq, grad))]
    }
}

impl<B: HeatDecayOps, C: CheckpointStrategy> HeatDecayOps for Autodiff<B, C> {
    fn vheat_heat_decay(k: FloatTensor<Self>, freq: FloatTensor<Self>) -> FloatTensor<Self> {
        // `freq` is a constant (the cached frequency grid): only `k` is a parent.
        let input = k.node();
        record::<B, C, HeatDecayGradient, 1>([input], |keep| {
            let (k, freq) = (k.into_primitive(), freq.into_primitive());
            let kept = keep.then(|| (k.clone(), freq.clone()));
            (B::vheat_heat_decay(k, freq), kept)
        })
    }
}

#[inline(always)]
fn decay_loop<const FUSED: bool>(k: &[f32], freq: &[f32], c: usize, out: &mut [f32]) {
    for ((k, out), &f) in k.chunks_exact(c).zip(out.chunks_exact_mut(c)).zip(freq) {
        for (o, &k) in out.iter_mut().zip(k) {
            *o = exp::<FUSED>(-(k.max(0.0) * f));
        }
    }
}

#[inline(always)]
fn decay_backward_loop<const FUSED: bool>(k: &[f32], freq: &[f32], c: usize, grad: &mut [f32]) {
    for ((k, grad), &f) in k.chunks_exact(c).zip(grad.chunks_exact_mut(c)).zip(freq) {
        for (g, &k) in grad.iter_mut().zip(k) {
            let slope = if k > 0.0 {
                -f * exp::<FUSED>(-(k * f))
            } else {
                0.0
            };
            *g *= slope;
        }
    }
}

isa_dispatch! {
    /// `out[r, j] = exp(−max(k[r, j], 0)·freq[r])` for rows `r` of `c` values (as many rows
    /// as `freq` has values and both slices hold).
    pub(crate) fn decay_rows(k: &[f32], freq: &[f32], c: usize, out: &mut [f32]) => fused decay_loop;
}

isa_dispatch! {
    /// `grad[r, j] ← grad[r, j] · ∂decay/∂k = grad · (−freq[r]·decay)` where `k > 0`, else 0.
    pub(crate) fn decay_backward_rows(
        k: &[f32],
        freq: &[f32],
        c: usize,
        grad: &mut [f32],
    ) => fused decay_backward_loop;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::isa::{force, runnable, tests_lock};

    /// Against float64, on every ISA path the machine runs, for `k` on both sides of
    /// 0 (0 itself included) and frequencies from 0 to the largest of a grid (2π²).
    #[test]
    fn matches_float64_with_relu_at_zero_on_every_path() {
        let _guard = tests_lock();
        let c = 19;
        let rows = 23;
        let k: Vec<f32> = (0..rows * c)
            .map(|i| {
                if i % 7 == 0 {
                    0.0
                } else {
                    ((i * 37 % 61) as f32 - 30.0) / 7.0
                }
            })
            .collect();
        let freq: Vec<f32> = (0..rows).map(|r| r as f32 * 0.86).collect();
        let grad: Vec<f32> = (0..rows * c)
            .map(|i| ((i % 5) as f32 - 2.0) * 0.75)
            .collect();
        for isa in runnable() {
            force(Some(isa));
            let mut out = vec![0.0f32; rows * c];
            decay_rows(&k, &freq, c, &mut out);
            let mut dk = grad.clone();
            decay_backward_rows(&k, &freq, c, &mut dk);
            for i in 0..rows * c {
                let (kk, f) = (k[i] as f64, freq[i / c] as f64);
                let want = (-(kk.max(0.0) * f)).exp();
                let want_dk = if kk > 0.0 {
                    -f * want * grad[i] as f64
                } else {
                    0.0
                };
                // The vectorised exp is within a few ulp of the float64 value, and the
                // argument's float32 rounding adds |k·f|·2⁻²⁴ relative (|k·f| ≤ 85 here).
                let tol = 8e-6 * want.max(1e-30);
                assert!(
                    (out[i] as f64 - want).abs() <= tol,
                    "{i}: {} vs {want}",
                    out[i]
                );
                let tol = 8e-6 * want_dk.abs() + 1e-30;
                assert!(
                    (dk[i] as f64 - want_dk).abs() <= tol,
                    "{i}: {} vs {want_dk}",
                    dk[i]
                );
            }
        }
        force(None);
    }
}
