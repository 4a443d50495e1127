//! The heat operator's diffusion `y = IDCT2D(DCT2D(x) ⊙ decay)` on a channels-last map, as one
//! host kernel, forward and backward.
//!
//! Composed from separate operators, the diffusion is four full passes of the map through a
//! matrix product (DCT along H, along W, inverse along H, along W), each writing a fresh map, and
//! a broadcast product with the decay in between — five buffers the size of the map, and under
//! autodiff five graph nodes. Here the transforms along W, and the decay between them, run on one
//! `[W, C]` row of the map at a time while it is in cache: the map goes through memory three
//! times (DCT along H, the row pass, inverse along H) instead of five, with two buffers.
//!
//! The backward pass uses the operator's symmetry: with orthonormal bases (`IDCT = DCTᵀ`),
//! `y = (D_Hᵀ ⊗ D_Wᵀ) · diag(decay) · (D_H ⊗ D_W) · x` is a symmetric linear map of `x`, so
//! `∂L/∂x` is the same diffusion applied to the incoming gradient, and
//! `∂L/∂decay = Σ_b DCT2D(x)[b] ⊙ DCT2D(g)[b]`, whose second factor the backward's own row
//! pass computes on the way. The forward pass of a training step keeps `DCT2D(x)` (the
//! spectrum) for it. The sum over the batch runs in item order on one task per row `h`, so the
//! result does not depend on the thread count.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::gemm::{mix_along, mix_panels, RowTiles, SharedOut, MIX_MAX_AXIS, NR};
use super::isa::active;

/// `[B, H, W, C]`.
pub(crate) type Dims = [usize; 4];

/// Whether a map of these dimensions fits the kernel (each transformed axis at most
/// [`MIX_MAX_AXIS`] long).
pub(crate) fn fits([_, h, w, _]: Dims) -> bool {
    h <= MIX_MAX_AXIS && w <= MIX_MAX_AXIS
}

/// The bases along W, `D_W` and `D_Wᵀ`, as left operands of the row pass.
struct Bases {
    dct_w: RowTiles,
    idct_w: RowTiles,
}

impl Bases {
    fn new(dct_w: &[f32], w: usize) -> Self {
        Self {
            dct_w: RowTiles::new(dct_w, w, w),
            idct_w: RowTiles::transposed(dct_w, w, w),
        }
    }
}

/// One `[W, C]` row through `D_W`, then `scale` (`decay` row, `W·C` values), then `D_Wᵀ`, in
/// place. `spectrum`, when given, receives the row after `D_W` (before the decay), every
/// value of it written; `tmp` is scratch of at least `W·C` values.
fn row_pass(
    bases: &Bases,
    row: &mut [f32],
    c: usize,
    decay: &[f32],
    mut spectrum: Option<&mut [MaybeUninit<f32>]>,
    tmp: &mut [f32],
    strip: &mut Vec<f32>,
) {
    let isa = active();
    let panels = 0..c.div_ceil(NR);
    mix_panels(
        isa,
        &bases.dct_w,
        row,
        c,
        panels.clone(),
        strip,
        |i, j0, values| {
            let at = i * c + j0;
            if let Some(spectrum) = spectrum.as_deref_mut() {
                for (s, &v) in spectrum[at..at + values.len()].iter_mut().zip(values) {
                    s.write(v);
                }
            }
            for ((t, &v), &d) in tmp[at..at + values.len()]
                .iter_mut()
                .zip(values)
                .zip(&decay[at..])
            {
                *t = v * d;
            }
        },
    );
    mix_panels(
        isa,
        &bases.idct_w,
        tmp,
        c,
        panels,
        strip,
        |i, j0, values| {
            let at = i * c + j0;
            row[at..at + values.len()].copy_from_slice(values);
        },
    );
}

/// `IDCT2D(DCT2D(x) ⊙ decay)` for `x` `[B, H, W, C]` (row-major), `decay` `[H, W, C]`, and the
/// orthonormal DCT-II matrices `dct_h` (`H × H`) and `dct_w` (`W × W`), row-major. With
/// `keep_spectrum`, also returns `DCT2D(x)`, which [`diffuse_backward`] needs.
///
/// # Panics
/// If the slices are shorter than the dimensions say, or the map does not [`fits`].
pub(crate) fn diffuse(
    x: &[f32],
    dims: Dims,
    decay: &[f32],
    dct_h: &[f32],
    dct_w: &[f32],
    keep_spectrum: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let [b, h, w, c] = dims;
    let plane = w * c;
    assert!(fits(dims) && x.len() >= b * h * plane && decay.len() >= h * plane);
    let bases = Bases::new(dct_w, w);
    // DCT along H: the whole `[W·C]`-wide rows of each item mixed at once.
    let mut u = mix_along(x, [b, h, plane], dct_h, h);
    // The spectrum is written once, by the row pass (every row, every value), not zeroed first.
    let n = u.len();
    let mut spectrum = keep_spectrum.then(|| Vec::<f32>::with_capacity(n));
    if plane > 0 {
        // Scratch (the row between the two products, a partial strip) once per worker, not
        // once per row.
        let scratch = || (vec![0.0f32; plane], Vec::new());
        let task = |(tmp, strip): &mut (Vec<f32>, Vec<f32>),
                    (index, row): (usize, &mut [f32]),
                    spectrum: Option<&mut [MaybeUninit<f32>]>| {
            let hh = index % h;
            let decay = &decay[hh * plane..(hh + 1) * plane];
            row_pass(&bases, row, c, decay, spectrum, tmp, strip);
        };
        match spectrum.as_mut() {
            Some(spectrum) => u
                .par_chunks_mut(plane)
                .enumerate()
                .zip(spectrum.spare_capacity_mut()[..n].par_chunks_mut(plane))
                .for_each_init(scratch, |s, (row, spectrum)| task(s, row, Some(spectrum))),
            None => u
                .par_chunks_mut(plane)
                .enumerate()
                .for_each_init(scratch, |s, row| task(s, row, None)),
        }
    }
    if let Some(spectrum) = spectrum.as_mut() {
        // SAFETY: every `[W·C]` row of the `n` values went through `row_pass`, which writes
        // every value of its spectrum row (`mix_panels` stores every row of every panel); with
        // `plane == 0`, `n` is 0.
        unsafe { spectrum.set_len(n) };
    }
    // The inverse along H (`D_Hᵀ`).
    (
        mix_along(&u, [b, h, plane], &transpose(dct_h, h), h),
        spectrum,
    )
}

/// The backward pass of [`diffuse`]: `(∂L/∂x, ∂L/∂decay)` from the incoming gradient `grad`
/// (`[B, H, W, C]`) and the forward pass's `spectrum` (`DCT2D(x)`).
///
/// # Panics
/// As [`diffuse`].
pub(crate) fn diffuse_backward(
    grad: &[f32],
    dims: Dims,
    decay: &[f32],
    dct_h: &[f32],
    dct_w: &[f32],
    spectrum: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let [b, h, w, c] = dims;
    let plane = w * c;
    let len = b * h * plane;
    assert!(fits(dims) && grad.len() >= len && spectrum.len() >= len);
    assert!(decay.len() >= h * plane);
    let bases = Bases::new(dct_w, w);
    let mut u = mix_along(grad, [b, h, plane], dct_h, h);
    let mut ddecay = vec![0.0f32; h * plane];
    if plane > 0 {
        let shared = SharedOut(u.as_mut_ptr());
        // One task per row h, the items in order: a fixed order of the sum over the batch.
        ddecay
            .par_chunks_mut(plane)
            .enumerate()
            .for_each(|(hh, dd)| {
                let mut tmp = vec![0.0f32; plane];
                let mut strip = Vec::new();
                let mut g_hat = vec![0.0f32; plane];
                let decay = &decay[hh * plane..(hh + 1) * plane];
                for item in 0..b {
                    let at = (item * h + hh) * plane;
                    // SAFETY: row (item, hh) of `u` is `at..at + plane`, inside `u`, and only
                    // the task of row hh touches it.
                    let row =
                        unsafe { std::slice::from_raw_parts_mut(shared.ptr().add(at), plane) };
                    // SAFETY: the same memory seen as possibly-uninitialised values; `row_pass`
                    // only writes initialised ones into it, so `g_hat` stays initialised.
                    let g_hat_out = unsafe {
                        &mut *(g_hat.as_mut_slice() as *mut [f32] as *mut [MaybeUninit<f32>])
                    };
                    row_pass(&bases, row, c, decay, Some(g_hat_out), &mut tmp, &mut strip);
                    for ((d, &s), &g) in dd.iter_mut().zip(&spectrum[at..at + plane]).zip(&g_hat) {
                        *d += s * g;
                    }
                }
            });
    }
    let dx = mix_along(&u, [b, h, plane], &transpose(dct_h, h), h);
    (dx, ddecay)
}

/// The transpose of a square `n × n` row-major matrix.
fn transpose(a: &[f32], n: usize) -> Vec<f32> {
    (0..n * n).map(|i| a[(i % n) * n + i / n]).collect()
}
