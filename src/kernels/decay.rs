//! The heat operator's spectral decay `exp(−ReLU(k)·(ωₙ² + ωₘ²))` on host slices, forward and
//! backward, from the conductivity predictor's raw output `k` (`[H, W, C]`, channels last)
//! and the frequency grid `ωₙ² + ωₘ²` (`[H, W]`, one value per row of `C` channels).
//!
//! Burn's operators make it four passes (ReLU, the broadcast product, negation, `exp`), each
//! on one thread below flex's 4 Mi-value threshold and each a fresh buffer; at 768² the first
//! stage's decay has 3.5 M values per block, and these passes with the predictor's product
//! took about 8 % of a vHeat-T forward pass. Here it is one vectorised pass over the rows.
//! Its gradient in `k` is `−(ωₙ² + ωₘ²)·decay` where `k > 0` and 0 elsewhere (ReLU's
//! derivative at 0 is 0, as in Burn).

use super::isa::isa_dispatch;
use super::math::exp;

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
