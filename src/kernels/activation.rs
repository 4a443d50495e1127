//! GELU and the heat operator's SiLU gate on host slices, forward and backward.
//!
//! Exact (erf) GELU `x·Φ(x)` uses `1 + erf(x/√2) = erfc(|x|/√2)` for `x < 0` and
//! `2 − erfc(x/√2)` otherwise, accurate in both tails; its derivative is `Φ(x) + x·φ(x)` with
//! `φ(x) = e^(−x²/2)/√(2π)`. The gate is `a·z·σ(z)`, with `∂/∂a = z·σ(z)` and
//! `∂/∂z = a·σ(z)·(1 + z·(1 − σ(z)))`. Each loop is compiled per instruction family
//! ([`super::isa`]) and vectorised by the compiler; `exp` and `erfc` are the branch-free ones
//! of [`super::math`], with fused multiply-adds in the AVX-512 and AVX2 code (`FUSED`).

use std::mem::MaybeUninit;

use super::isa::isa_dispatch;
use super::math::{erfc_nonneg, exp, madd};

/// `1/√(2π)`.
const INV_SQRT_2PI: f32 = 0.398_942_3;

#[inline(always)]
fn phi_upper<const FUSED: bool>(x: f32) -> f32 {
    // Φ(x) = ½·(1 + erf(x/√2)).
    let e = erfc_nonneg::<FUSED>(x.abs() * std::f32::consts::FRAC_1_SQRT_2);
    0.5 * if x < 0.0 { e } else { 2.0 - e }
}

#[inline(always)]
fn gelu_loop<const FUSED: bool>(v: &mut [f32]) {
    for x in v {
        *x *= phi_upper::<FUSED>(*x);
    }
}

#[inline(always)]
fn gelu_to_loop<const FUSED: bool>(x: &[f32], out: &mut [MaybeUninit<f32>]) {
    for (o, &x) in out.iter_mut().zip(x) {
        o.write(x * phi_upper::<FUSED>(x));
    }
}

#[inline(always)]
fn gelu_backward_loop<const FUSED: bool>(x: &[f32], grad: &mut [f32]) {
    for (g, &x) in grad.iter_mut().zip(x) {
        let density = INV_SQRT_2PI * exp::<FUSED>(-0.5 * x * x);
        *g *= madd::<FUSED>(x, density, phi_upper::<FUSED>(x));
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
    /// `v ← GELU(v)`, element-wise.
    pub(crate) fn gelu_slice(v: &mut [f32]) => fused gelu_loop;
}

isa_dispatch! {
    /// `out ← GELU(x)`, element-wise, into memory not written before (for an input that must
    /// stay as it is: one pass instead of a copy and a pass over the copy).
    pub(crate) fn gelu_to_slice(x: &[f32], out: &mut [MaybeUninit<f32>]) => fused gelu_to_loop;
}

isa_dispatch! {
    /// `grad ← grad · GELU'(x)`, element-wise (`x` the forward input).
    pub(crate) fn gelu_backward_slice(x: &[f32], grad: &mut [f32]) => fused gelu_backward_loop;
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
