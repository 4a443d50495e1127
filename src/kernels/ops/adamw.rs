//! One AdamW step: the parameter and both moments updated in place, in one pass over memory
//! (the optimiser `train::FusedAdamW` is built on it).
//!
//! The reference ([`adamw_step_reference`], the fallback on every other backend and with the
//! kernels off) is the fourteen tensor operations Burn's `AdamW` runs per parameter, each a
//! pass over memory into a fresh buffer, on one thread while the pool sits idle (flex
//! parallelises element-wise operations only above 4 Mi values). The host loop does the same
//! float32 arithmetic, in the same order, per element:
//!
//! ```text
//! m ← m·β₁ + g·(1 − β₁)            v ← v·β₂ + (g·g)·(1 − β₂)
//! δ = (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
//! p ← p·(1 − lr·λ) − δ·lr
//! ```
//!
//! Each of these is a correctly rounded IEEE operation (no fused multiply-add is formed), so
//! the result is bit-identical to Burn's on every instruction family.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch};
use burn::tensor::Tensor;

use crate::kernels::isa::isa_dispatch;
use crate::kernels::on_host;

/// The AdamW step as a backend operation.
#[backend_extension(Flex: cfg(feature = "flex"), Autodiff)]
pub trait AdamwOps: Backend {
    /// One AdamW step on a parameter: `(param, moment_1, moment_2)` after it, from the
    /// gradient and the moments before it (zeros before the first step), with the step's
    /// scalars `step`. Not differentiable: optimisers run it on the inner backend.
    fn vheat_adamw_step(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamwStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        adamw_step_reference::<Self>(param, grad, moment_1, moment_2, step)
    }
}

/// One AdamW step on a parameter (`(param, moment_1, moment_2)` after it; see [`AdamwStep`]
/// for the arithmetic): on the host fast path one pass over the four tensors, in place where
/// they are not shared, bit-identical to Burn's `AdamW`; elsewhere [`adamw_step_reference`],
/// the same operators Burn's `AdamW` runs, in its order.
///
/// # Panics
/// If the four shapes differ.
pub fn adamw_step<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moment_1: Tensor<D>,
    moment_2: Tensor<D>,
    step: AdamwStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let shape = param.dims();
    assert!(
        [grad.dims(), moment_1.dims(), moment_2.dims()] == [shape; 3],
        "adamw_step needs equal shapes"
    );
    let host = [&param, &grad, &moment_1, &moment_2]
        .iter()
        .all(|t| on_host(t));
    let (param, grad) = (param.into_dispatch(), grad.into_dispatch());
    let (m, v) = (moment_1.into_dispatch(), moment_2.into_dispatch());
    let (p, m, v) = if host {
        <Dispatch as AdamwOps>::vheat_adamw_step(param, grad, m, v, step)
    } else {
        adamw_step_reference::<Dispatch>(param, grad, m, v, step)
    };
    (
        Tensor::from_dispatch(p),
        Tensor::from_dispatch(m),
        Tensor::from_dispatch(v),
    )
}

/// [`AdamwOps::vheat_adamw_step`] in Burn's operators, in the order Burn's `AdamW` applies
/// them (`burn_optim::AdamW::step`), so that the two agree bit for bit.
pub(crate) fn adamw_step_reference<B: Backend>(
    param: FloatTensor<B>,
    grad: FloatTensor<B>,
    moment_1: FloatTensor<B>,
    moment_2: FloatTensor<B>,
    s: AdamwStep,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let scaled = |t: FloatTensor<B>, c: f32| B::float_mul_scalar(t, c.into());
    let m = B::float_add(
        scaled(moment_1, s.beta_1),
        scaled(grad.clone(), s.one_minus_beta_1),
    );
    let squares = B::float_mul(grad.clone(), grad);
    let v = B::float_add(
        scaled(moment_2, s.beta_2),
        scaled(squares, s.one_minus_beta_2),
    );
    let m_hat = B::float_div_scalar(m.clone(), s.bias_correction_1.into());
    let v_hat = B::float_div_scalar(v.clone(), s.bias_correction_2.into());
    let root = B::float_add_scalar(B::float_sqrt(v_hat), s.epsilon.into());
    let delta = B::float_div(m_hat, root);
    let param = B::float_sub(scaled(param, s.decay), scaled(delta, s.lr));
    (param, m, v)
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Flex, TensorMetadata};
    use rayon::prelude::*;

    use super::*;
    use crate::kernels::flex::{is_f32, owned, values};
    use crate::kernels::runtime::CHUNK;

    impl AdamwOps for Flex {
        fn vheat_adamw_step(
            param: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            moment_1: FloatTensor<Self>,
            moment_2: FloatTensor<Self>,
            step: AdamwStep,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            let shape = param.shape();
            let same = [&grad, &moment_1, &moment_2]
                .iter()
                .all(|t| t.shape() == shape);
            if !is_f32(&[&param, &grad, &moment_1, &moment_2]) || !same {
                return adamw_step_reference::<Self>(param, grad, moment_1, moment_2, step);
            }
            let g = values(&grad);
            let (mut p, mut m, mut v) = (owned(param), owned(moment_1), owned(moment_2));
            p.storage_mut::<f32>()
                .par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .zip(m.storage_mut::<f32>().par_chunks_mut(CHUNK))
                .zip(v.storage_mut::<f32>().par_chunks_mut(CHUNK))
                .for_each(|(((p, g), m), v)| adamw_slice(p, g, m, v, &step));
            (p, m, v)
        }
    }
}

/// Not differentiable: on autodiff tensors the step is the reference in the tracked operators.
impl<B: AdamwOps, C: CheckpointStrategy> AdamwOps for Autodiff<B, C> {}

/// The scalars of one AdamW step, as float32 values computed the way Burn's `AdamW` computes
/// them (see [`AdamwStep::new`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamwStep {
    /// β₁.
    pub beta_1: f32,
    /// β₂.
    pub beta_2: f32,
    /// `1 − β₁`.
    pub one_minus_beta_1: f32,
    /// `1 − β₂`.
    pub one_minus_beta_2: f32,
    /// `1 − β₁ᵗ`.
    pub bias_correction_1: f32,
    /// `1 − β₂ᵗ`.
    pub bias_correction_2: f32,
    /// ε, added to the root of the corrected second moment.
    pub epsilon: f32,
    /// `1 − lr·λ`: the decoupled weight decay's factor.
    pub decay: f32,
    /// The learning rate.
    pub lr: f32,
}

impl AdamwStep {
    /// The scalars of step `time` (1 for the first) with learning rate `lr` and weight decay
    /// `weight_decay`: `1 − βᵗ` in float32 with `powi`, `lr·λ` in float64, as Burn does.
    pub fn new(
        beta_1: f32,
        beta_2: f32,
        epsilon: f32,
        weight_decay: f32,
        lr: f64,
        time: usize,
    ) -> Self {
        let t = i32::try_from(time).unwrap_or(i32::MAX);
        Self {
            beta_1,
            beta_2,
            one_minus_beta_1: 1.0 - beta_1,
            one_minus_beta_2: 1.0 - beta_2,
            bias_correction_1: 1.0 - beta_1.powi(t),
            bias_correction_2: 1.0 - beta_2.powi(t),
            epsilon,
            decay: (1.0 - lr * f64::from(weight_decay)) as f32,
            lr: lr as f32,
        }
    }
}

#[inline(always)]
fn adamw_loop(param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32], s: &AdamwStep) {
    let n = param.len().min(grad.len()).min(m.len()).min(v.len());
    let (param, grad, m, v) = (&mut param[..n], &grad[..n], &mut m[..n], &mut v[..n]);
    for i in 0..n {
        let g = grad[i];
        let mi = m[i] * s.beta_1 + g * s.one_minus_beta_1;
        let vi = v[i] * s.beta_2 + (g * g) * s.one_minus_beta_2;
        m[i] = mi;
        v[i] = vi;
        let delta = (mi / s.bias_correction_1) / ((vi / s.bias_correction_2).sqrt() + s.epsilon);
        param[i] = param[i] * s.decay - delta * s.lr;
    }
}

isa_dispatch! {
    /// One AdamW step over matching slices of the parameter, its gradient and both moments.
    pub(crate) fn adamw_slice(
        param: &mut [f32],
        grad: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        s: &AdamwStep,
    ) => adamw_loop;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::isa::{force, runnable, tests_lock};

    #[test]
    fn matches_float64_within_float32_rounding_on_every_path() {
        let _lock = tests_lock();
        let n = 1000;
        let grad: Vec<f32> = (0..n)
            .map(|i| ((i * 31 % 97) as f32 - 48.0) / 13.0)
            .collect();
        let start: Vec<f32> = (0..n)
            .map(|i| ((i * 17 % 89) as f32 - 44.0) / 29.0)
            .collect();
        for isa in runnable() {
            force(Some(isa));
            let (mut p, mut m, mut v) = (start.clone(), vec![0.0f32; n], vec![0.0f32; n]);
            let (mut p64, mut m64, mut v64) = (
                start.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(),
                vec![0.0f64; n],
                vec![0.0f64; n],
            );
            for t in 1..=3 {
                let s = AdamwStep::new(0.9, 0.999, 1e-8, 0.05, 1e-3, t);
                adamw_slice(&mut p, &grad, &mut m, &mut v, &s);
                for i in 0..n {
                    let g = f64::from(grad[i]);
                    m64[i] = m64[i] * 0.9 + g * 0.1;
                    v64[i] = v64[i] * 0.999 + g * g * 0.001;
                    let mh = m64[i] / (1.0 - 0.9f64.powi(t as i32));
                    let vh = v64[i] / (1.0 - 0.999f64.powi(t as i32));
                    p64[i] = p64[i] * (1.0 - 1e-3 * 0.05) - 1e-3 * mh / (vh.sqrt() + 1e-8);
                }
            }
            for i in 0..n {
                // A handful of float32 roundings per step on values of order 1 (the step
                // itself is of order lr = 1e-3): 1e-6 absolute covers them.
                assert!(
                    (f64::from(p[i]) - p64[i]).abs() < 1e-6,
                    "param {i}: {} vs {}",
                    p[i],
                    p64[i]
                );
                assert!((f64::from(m[i]) - m64[i]).abs() < 1e-6 * (1.0 + m64[i].abs()));
                assert!((f64::from(v[i]) - v64[i]).abs() < 1e-6 * (1.0 + v64[i].abs()));
            }
        }
        force(None);
    }
}
