//! The heat operator's gate `a · SiLU(z) = a · z · σ(z)`, element-wise over two tensors of one
//! shape, forward and backward.
//!
//! The reference ([`silu_gate_reference`] and [`silu_gate_backward_reference`]: the fallback
//! on every other backend, and with the kernels off) is Burn's operators: `a · (z · σ(z))`,
//! and `∂/∂a = z·σ(z)`, `∂/∂z = a·σ(z)·(1 + z·(1 − σ(z)))`. The host loops do the same in one
//! pass each way, σ through the vectorised `exp` of `runtime/math.rs`.

use std::mem::MaybeUninit;

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch};
use burn::tensor::Tensor;

use crate::kernels::autodiff::{record, Gradient};
use crate::kernels::isa::isa_dispatch;
use crate::kernels::on_host;
use crate::kernels::runtime::math::exp;

/// The SiLU gate as a backend operation, with its backward pass.
#[backend_extension(Flex: cfg(feature = "flex"), Autodiff)]
pub trait SiluGateOps: Backend {
    /// `a · z · σ(z)`.
    fn vheat_silu_gate(a: FloatTensor<Self>, z: FloatTensor<Self>) -> FloatTensor<Self> {
        silu_gate_reference::<Self>(a, z)
    }

    /// `(∂/∂a, ∂/∂z)` of [`vheat_silu_gate`](Self::vheat_silu_gate) times `grad`.
    fn vheat_silu_gate_backward(
        a: FloatTensor<Self>,
        z: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        silu_gate_backward_reference::<Self>(a, z, grad)
    }
}

/// `a · SiLU(z) = a · z · σ(z)`, element-wise over two tensors of the same shape.
///
/// One pass on the host fast path (σ through a vectorised `exp`), with a one-pass backward;
/// elsewhere [`silu_gate_reference`], Burn's `a * activation::silu(z)`.
///
/// # Panics
/// If the shapes differ (callers pass the two halves of one projection).
pub fn silu_gate<const D: usize>(a: Tensor<D>, z: Tensor<D>) -> Tensor<D> {
    assert_eq!(a.dims(), z.dims(), "silu_gate needs equal shapes");
    let host = on_host(&a) && on_host(&z);
    let (a, z) = (a.into_dispatch(), z.into_dispatch());
    Tensor::from_dispatch(if host {
        <Dispatch as SiluGateOps>::vheat_silu_gate(a, z)
    } else {
        silu_gate_reference::<Dispatch>(a, z)
    })
}

/// The gate in Burn's operators: `a · (z · σ(z))`, as `a * activation::silu(z)`.
pub(crate) fn silu_gate_reference<B: Backend>(
    a: FloatTensor<B>,
    z: FloatTensor<B>,
) -> FloatTensor<B> {
    let silu = B::float_mul(z.clone(), B::sigmoid(z));
    B::float_mul(a, silu)
}

/// The SiLU gate's backward pass in Burn's operators.
pub(crate) fn silu_gate_backward_reference<B: Backend>(
    a: FloatTensor<B>,
    z: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let s = B::sigmoid(z.clone());
    let silu = B::float_mul(z.clone(), s.clone());
    let da = B::float_mul(grad.clone(), silu);
    // σ(z)·(1 + z·(1 − σ(z)))
    let one_minus = B::float_add_scalar(B::float_neg(s.clone()), 1.0.into());
    let inner = B::float_add_scalar(B::float_mul(z, one_minus), 1.0.into());
    let dz = B::float_mul(B::float_mul(grad, a), B::float_mul(s, inner));
    (da, dz)
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Flex, TensorMetadata};
    use rayon::prelude::*;

    use super::*;
    use crate::kernels::flex::{is_f32, reusable, tensor, values};
    use crate::kernels::runtime::buffer::filled;
    use crate::kernels::runtime::CHUNK;

    impl SiluGateOps for Flex {
        fn vheat_silu_gate(a: FloatTensor<Self>, z: FloatTensor<Self>) -> FloatTensor<Self> {
            if !is_f32(&[&a, &z]) || a.shape() != z.shape() {
                return silu_gate_reference::<Self>(a, z);
            }
            let z_values = values(&z);
            if !reusable(&a) {
                // `a` is kept (saved for the backward pass): one pass into a fresh buffer.
                let av = values(&a);
                let out = filled(av.len(), |start, out| {
                    let end = start + out.len();
                    silu_gate_to_slice(&av[start..end], &z_values[start..end], out)
                });
                return tensor(out, a.shape());
            }
            let mut a = a;
            let out = a.storage_mut::<f32>();
            out.par_chunks_mut(CHUNK)
                .zip(z_values.par_chunks(CHUNK))
                .for_each(|(a, z)| silu_gate_slice(a, z));
            a
        }

        fn vheat_silu_gate_backward(
            a: FloatTensor<Self>,
            z: FloatTensor<Self>,
            grad: FloatTensor<Self>,
        ) -> (FloatTensor<Self>, FloatTensor<Self>) {
            if !is_f32(&[&a, &z, &grad]) || a.shape() != z.shape() || a.shape() != grad.shape() {
                return silu_gate_backward_reference::<Self>(a, z, grad);
            }
            let shape = grad.shape();
            let (a, z, g) = (values(&a), values(&z), values(&grad));
            let n = g.len();
            assert!(a.len() == n && z.len() == n, "equal shapes, checked above");
            // Both gradients are written once, by the pass that computes them (no zeroing).
            let (mut da, mut dz) = (Vec::<f32>::with_capacity(n), Vec::<f32>::with_capacity(n));
            da.spare_capacity_mut()[..n]
                .par_chunks_mut(CHUNK)
                .zip(dz.spare_capacity_mut()[..n].par_chunks_mut(CHUNK))
                .zip(a.par_chunks(CHUNK).zip(z.par_chunks(CHUNK)))
                .zip(g.par_chunks(CHUNK))
                .for_each(|(((da, dz), (a, z)), g)| silu_gate_backward_slice(a, z, g, da, dz));
            // SAFETY: the chunks of all five cover `..n` alike (equal lengths, asserted), and
            // the kernel writes every value of its `da` and `dz` chunks.
            unsafe {
                da.set_len(n);
                dz.set_len(n);
            }
            (tensor(da, shape.clone()), tensor(dz, shape))
        }
    }
}

/// The gate's node: keeps both inputs.
#[derive(Debug)]
struct SiluGateGradient;

impl<B: SiluGateOps> Gradient<B, 2> for SiluGateGradient {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(
        (a, z): Self::State,
        grad: FloatTensor<B>,
        _: [bool; 2],
    ) -> [Option<FloatTensor<B>>; 2] {
        let (da, dz) = B::vheat_silu_gate_backward(a, z, grad);
        [Some(da), Some(dz)]
    }
}

impl<B: SiluGateOps, C: CheckpointStrategy> SiluGateOps for Autodiff<B, C> {
    fn vheat_silu_gate(a: FloatTensor<Self>, z: FloatTensor<Self>) -> FloatTensor<Self> {
        let inputs = [a.node(), z.node()];
        record::<B, C, SiluGateGradient, 2>(inputs, |keep| {
            let (a, z) = (a.into_primitive(), z.into_primitive());
            let kept = keep.then(|| (a.clone(), z.clone()));
            (B::vheat_silu_gate(a, z), kept)
        })
    }
}

#[inline(always)]
fn sigmoid<const FUSED: bool>(z: f32) -> f32 {
    1.0 / (1.0 + exp::<FUSED>(-z))
}

#[inline(always)]
fn silu_gate_loop<const FUSED: bool>(a: &mut [f32], z: &[f32]) {
    for (a, &z) in a.iter_mut().zip(z) {
        *a *= z * sigmoid::<FUSED>(z);
    }
}

#[inline(always)]
fn silu_gate_to_loop<const FUSED: bool>(a: &[f32], z: &[f32], out: &mut [MaybeUninit<f32>]) {
    for ((o, &a), &z) in out.iter_mut().zip(a).zip(z) {
        o.write(a * (z * sigmoid::<FUSED>(z)));
    }
}

#[inline(always)]
fn silu_gate_backward_loop<const FUSED: bool>(
    a: &[f32],
    z: &[f32],
    grad: &[f32],
    da: &mut [MaybeUninit<f32>],
    dz: &mut [MaybeUninit<f32>],
) {
    for i in 0..grad
        .len()
        .min(a.len())
        .min(z.len())
        .min(da.len())
        .min(dz.len())
    {
        let (a, z, g) = (a[i], z[i], grad[i]);
        let s = sigmoid::<FUSED>(z);
        da[i].write(g * z * s);
        dz[i].write(g * a * s * (1.0 + z * (1.0 - s)));
    }
}

isa_dispatch! {
    /// `a ← a · z · σ(z)`, element-wise.
    pub(crate) fn silu_gate_slice(a: &mut [f32], z: &[f32]) => fused silu_gate_loop;
}

isa_dispatch! {
    /// `out ← a · z · σ(z)`, element-wise, into memory not written before.
    pub(crate) fn silu_gate_to_slice(
        a: &[f32],
        z: &[f32],
        out: &mut [MaybeUninit<f32>],
    ) => fused silu_gate_to_loop;
}

isa_dispatch! {
    /// The gate's gradients: `da = grad·z·σ(z)`, `dz = grad·a·σ(z)·(1 + z·(1 − σ(z)))`, into
    /// memory not written before (the first `min` of the five lengths values of each).
    pub(crate) fn silu_gate_backward_slice(
        a: &[f32],
        z: &[f32],
        grad: &[f32],
        da: &mut [MaybeUninit<f32>],
        dz: &mut [MaybeUninit<f32>],
    ) => fused silu_gate_backward_loop;
}
