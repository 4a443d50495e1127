//! The heat operator's diffusion `y = IDCT2D(DCT2D(x) ⊙ decay)` on a channels-last map,
//! forward and backward.
//!
//! The reference ([`diffuse_reference`], [`diffuse_backward_reference`]: the fallback on every
//! other backend and with the kernels off, and what `heat::diffuse` runs there) is the
//! composition in Burn's operators. Composed that way, the diffusion is four full passes of
//! the map through a matrix product (DCT along H, along W, inverse along H, along W), each
//! writing a fresh map, and a broadcast product with the decay in between — five buffers the
//! size of the map, and under autodiff five graph nodes. Here the transforms along W, and the
//! decay between them, run on one `[W, C]` row of the map at a time while it is in cache: the
//! map goes through memory three times (DCT along H, the row pass, inverse along H) instead of
//! five, with two buffers.
//!
//! The backward pass uses the operator's symmetry: with orthonormal bases (`IDCT = DCTᵀ`),
//! `y = (D_Hᵀ ⊗ D_Wᵀ) · diag(decay) · (D_H ⊗ D_W) · x` is a symmetric linear map of `x`, so
//! `∂L/∂x` is the same diffusion applied to the incoming gradient, and
//! `∂L/∂decay = Σ_b DCT2D(x)[b] ⊙ DCT2D(g)[b]`, whose second factor the backward's own row
//! pass computes on the way. The forward pass of a training step keeps `DCT2D(x)` (the
//! spectrum) for it. The sum over the batch runs in item order on one task per row `h`, so the
//! result does not depend on the thread count.

use std::mem::MaybeUninit;

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, TensorMetadata};
use burn::tensor::{Shape, Tensor};
use rayon::prelude::*;

use super::mix_along::mix_along_reference;
use crate::kernels::autodiff::{record, Gradient};
use crate::kernels::gemm::{mix_along, mix_panels, RowTiles, SharedOut, MIX_MAX_AXIS, NR};
use crate::kernels::isa::active;
use crate::kernels::on_host;

/// The heat operator's diffusion as a backend operation, with its backward pass.
#[backend_extension(Flex: cfg(feature = "flex"), Autodiff)]
pub trait DiffuseOps: Backend {
    /// `IDCT2D(DCT2D(x) ⊙ decay)` for a channels-last map `x` (`[B, H, W, C]`), `decay`
    /// (`[H, W, C]`) and the orthonormal DCT-II matrices `dct_h` (`[H, H]`) and `dct_w`
    /// (`[W, W]`); the inverse transforms are their transposes.
    fn vheat_diffuse(
        x: FloatTensor<Self>,
        decay: FloatTensor<Self>,
        dct_h: FloatTensor<Self>,
        dct_w: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        diffuse_reference::<Self>(x, decay, dct_h, dct_w).0
    }

    /// As [`vheat_diffuse`](Self::vheat_diffuse), also returning the spectrum `DCT2D(x)` that
    /// the backward pass needs.
    fn vheat_diffuse_keeping_spectrum(
        x: FloatTensor<Self>,
        decay: FloatTensor<Self>,
        dct_h: FloatTensor<Self>,
        dct_w: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        diffuse_reference::<Self>(x, decay, dct_h, dct_w)
    }

    /// `(∂L/∂x, ∂L/∂decay)` of [`vheat_diffuse`](Self::vheat_diffuse): the same diffusion of
    /// `grad`, and `Σ_b spectrum[b] ⊙ DCT2D(grad)[b]`.
    fn vheat_diffuse_backward(
        grad: FloatTensor<Self>,
        decay: FloatTensor<Self>,
        dct_h: FloatTensor<Self>,
        dct_w: FloatTensor<Self>,
        spectrum: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        diffuse_backward_reference::<Self>(grad, decay, dct_h, dct_w, spectrum)
    }
}

/// `IDCT2D(DCT2D(x) ⊙ decay)`: the heat operator's diffusion of a channels-last map `x`
/// (`[B, H, W, C]`) with `decay` (`[H, W, C]`, broadcast over the batch), given the orthonormal
/// DCT-II matrices `dct_h` (`[H, H]`) and `dct_w` (`[W, W]`); the inverse transforms are their
/// transposes.
///
/// On the host fast path (both axes at most 256 long) the transforms along W and the decay
/// between them run on one row of the map at a time (see the module docs), and under autodiff
/// the whole diffusion is one graph node whose backward is the same diffusion of the gradient,
/// plus `∂L/∂decay = Σ_b DCT2D(x)[b] ⊙ DCT2D(∂L/∂y)[b]`. Elsewhere it is
/// [`diffuse_reference`]: four batched matrix products and a broadcast product in Burn's
/// operators. `heat::diffuse` calls this with the cached DCT bases.
///
/// # Panics
/// If the shapes do not agree as above.
pub fn diffuse(x: Tensor<4>, decay: Tensor<3>, dct_h: Tensor<2>, dct_w: Tensor<2>) -> Tensor<4> {
    let [_, h, w, c] = x.dims();
    assert_eq!(decay.dims(), [h, w, c], "diffusion decay");
    assert_eq!(dct_h.dims(), [h, h], "diffusion basis along H");
    assert_eq!(dct_w.dims(), [w, w], "diffusion basis along W");
    let host = [
        on_host(&x),
        on_host(&decay),
        on_host(&dct_h),
        on_host(&dct_w),
    ];
    let host = host.iter().all(|&on| on) && fits(x.dims());
    let (x, decay) = (x.into_dispatch(), decay.into_dispatch());
    let (dct_h, dct_w) = (dct_h.into_dispatch(), dct_w.into_dispatch());
    Tensor::from_dispatch(if host {
        <Dispatch as DiffuseOps>::vheat_diffuse(x, decay, dct_h, dct_w)
    } else {
        diffuse_reference::<Dispatch>(x, decay, dct_h, dct_w).0
    })
}

/// `matrix` (`[n, n]`) applied along axis `axis` (1 or 2) of a `[B, H, W, C]` map, in Burn's
/// operators: the axes before it flattened into a batch, one broadcast batched product.
fn along_axis<B: Backend>(
    x: FloatTensor<B>,
    axis: usize,
    matrix: FloatTensor<B>,
) -> FloatTensor<B> {
    let shape = x.shape();
    let n = shape[axis];
    let before: usize = (0..axis).map(|i| shape[i]).product();
    let after: usize = (axis + 1..4).map(|i| shape[i]).product();
    let view = B::float_reshape(x, Shape::new([before, n, after]));
    let y = mix_along_reference::<B>(view, matrix);
    B::float_reshape(y, shape)
}

/// `DCT2D` of a `[B, H, W, C]` map (`dct_h` along H, then `dct_w` along W).
fn dct2d_reference<B: Backend>(
    x: FloatTensor<B>,
    dct_h: FloatTensor<B>,
    dct_w: FloatTensor<B>,
) -> FloatTensor<B> {
    along_axis::<B>(along_axis::<B>(x, 1, dct_h), 2, dct_w)
}

/// The decay `[H, W, C]` times a `[B, H, W, C]` map, broadcast over the batch.
fn times_decay<B: Backend>(x: FloatTensor<B>, decay: FloatTensor<B>) -> FloatTensor<B> {
    let s = decay.shape();
    B::float_mul(
        x,
        B::float_reshape(decay, Shape::new([1, s[0], s[1], s[2]])),
    )
}

/// [`DiffuseOps::vheat_diffuse_keeping_spectrum`] in Burn's operators: `(y, DCT2D(x))`.
pub(crate) fn diffuse_reference<B: Backend>(
    x: FloatTensor<B>,
    decay: FloatTensor<B>,
    dct_h: FloatTensor<B>,
    dct_w: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let spectrum = dct2d_reference::<B>(x, dct_h.clone(), dct_w.clone());
    let scaled = times_decay::<B>(spectrum.clone(), decay);
    let y = dct2d_reference::<B>(scaled, B::float_transpose(dct_h), B::float_transpose(dct_w));
    (y, spectrum)
}

/// [`DiffuseOps::vheat_diffuse_backward`] in Burn's operators.
pub(crate) fn diffuse_backward_reference<B: Backend>(
    grad: FloatTensor<B>,
    decay: FloatTensor<B>,
    dct_h: FloatTensor<B>,
    dct_w: FloatTensor<B>,
    spectrum: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let s = decay.shape();
    let g_hat = dct2d_reference::<B>(grad, dct_h.clone(), dct_w.clone());
    let ddecay = B::float_reshape(
        B::float_sum_dim(B::float_mul(g_hat.clone(), spectrum), 0),
        Shape::new([s[0], s[1], s[2]]),
    );
    let scaled = times_decay::<B>(g_hat, decay);
    let dx = dct2d_reference::<B>(scaled, B::float_transpose(dct_h), B::float_transpose(dct_w));
    (dx, ddecay)
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::flex::FlexTensor;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Flex, TensorMetadata};

    use super::*;
    use crate::kernels::flex::{dims4, is_f32, tensor, values};

    /// `[B, H, W, C]` when the diffusion kernel takes these operands: float32, `x` `[B, H, W, C]`,
    /// `decay` `[H, W, C]`, `dct_h` `[H, H]`, `dct_w` `[W, W]`, both axes short enough.
    fn diffusion_dims(
        x: &FlexTensor,
        decay: &FlexTensor,
        dct_h: &FlexTensor,
        dct_w: &FlexTensor,
    ) -> Option<[usize; 4]> {
        if !is_f32(&[x, decay, dct_h, dct_w]) || x.shape().num_dims() != 4 {
            return None;
        }
        let dims = dims4(x);
        let [_, h, w, c] = dims;
        let shapes_agree = decay.shape().to_vec() == [h, w, c]
            && dct_h.shape().to_vec() == [h, h]
            && dct_w.shape().to_vec() == [w, w];
        (shapes_agree && fits(dims)).then_some(dims)
    }

    impl DiffuseOps for Flex {
        fn vheat_diffuse(
            x: FloatTensor<Self>,
            decay: FloatTensor<Self>,
            dct_h: FloatTensor<Self>,
            dct_w: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            match diffusion_dims(&x, &decay, &dct_h, &dct_w) {
                Some(dims) => {
                    let (y, _) = diffuse_slices(
                        &values(&x),
                        dims,
                        &values(&decay),
                        &values(&dct_h),
                        &values(&dct_w),
                        false,
                    );
                    tensor(y, dims)
                }
                None => diffuse_reference::<Self>(x, decay, dct_h, dct_w).0,
            }
        }

        fn vheat_diffuse_keeping_spectrum(
            x: FloatTensor<Self>,
            decay: FloatTensor<Self>,
            dct_h: FloatTensor<Self>,
            dct_w: FloatTensor<Self>,
        ) -> (FloatTensor<Self>, FloatTensor<Self>) {
            match diffusion_dims(&x, &decay, &dct_h, &dct_w) {
                Some(dims) => {
                    let (y, spectrum) = diffuse_slices(
                        &values(&x),
                        dims,
                        &values(&decay),
                        &values(&dct_h),
                        &values(&dct_w),
                        true,
                    );
                    let spectrum = spectrum.expect("asked for the spectrum");
                    (tensor(y, dims), tensor(spectrum, dims))
                }
                None => diffuse_reference::<Self>(x, decay, dct_h, dct_w),
            }
        }

        fn vheat_diffuse_backward(
            grad: FloatTensor<Self>,
            decay: FloatTensor<Self>,
            dct_h: FloatTensor<Self>,
            dct_w: FloatTensor<Self>,
            spectrum: FloatTensor<Self>,
        ) -> (FloatTensor<Self>, FloatTensor<Self>) {
            let dims = diffusion_dims(&grad, &decay, &dct_h, &dct_w)
                .filter(|_| is_f32(&[&spectrum]) && spectrum.shape() == grad.shape());
            match dims {
                Some(dims) => {
                    let [_, h, w, c] = dims;
                    let (dx, ddecay) = diffuse_slices_backward(
                        &values(&grad),
                        dims,
                        &values(&decay),
                        &values(&dct_h),
                        &values(&dct_w),
                        &values(&spectrum),
                    );
                    (tensor(dx, dims), tensor(ddecay, [h, w, c]))
                }
                None => diffuse_backward_reference::<Self>(grad, decay, dct_h, dct_w, spectrum),
            }
        }
    }
}

/// The diffusion's node: keeps the decay, the two bases and the forward pass's spectrum; the
/// bases are constants, so `x` and the decay are its inputs.
#[derive(Debug)]
struct DiffuseGradient;

impl<B: DiffuseOps> Gradient<B, 2> for DiffuseGradient {
    type State = (
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
    );

    fn backward(
        (decay, dct_h, dct_w, spectrum): Self::State,
        grad: FloatTensor<B>,
        _: [bool; 2],
    ) -> [Option<FloatTensor<B>>; 2] {
        let (dx, ddecay) = B::vheat_diffuse_backward(grad, decay, dct_h, dct_w, spectrum);
        [Some(dx), Some(ddecay)]
    }
}

impl<B: DiffuseOps, C: CheckpointStrategy> DiffuseOps for Autodiff<B, C> {
    fn vheat_diffuse(
        x: FloatTensor<Self>,
        decay: FloatTensor<Self>,
        dct_h: FloatTensor<Self>,
        dct_w: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let inputs = [x.node(), decay.node()];
        record::<B, C, DiffuseGradient, 2>(inputs, |keep| {
            let (x, decay) = (x.into_primitive(), decay.into_primitive());
            let (dct_h, dct_w) = (dct_h.into_primitive(), dct_w.into_primitive());
            if !keep {
                return (B::vheat_diffuse(x, decay, dct_h, dct_w), None);
            }
            let (y, spectrum) =
                B::vheat_diffuse_keeping_spectrum(x, decay.clone(), dct_h.clone(), dct_w.clone());
            (y, Some((decay, dct_h, dct_w, spectrum)))
        })
    }
}

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
/// `keep_spectrum`, also returns `DCT2D(x)`, which [`diffuse_slices_backward`] needs.
///
/// # Panics
/// If the slices are shorter than the dimensions say, or the map does not [`fits`].
pub(crate) fn diffuse_slices(
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

/// The backward pass of [`diffuse_slices`]: `(∂L/∂x, ∂L/∂decay)` from the incoming gradient `grad`
/// (`[B, H, W, C]`) and the forward pass's `spectrum` (`DCT2D(x)`).
///
/// # Panics
/// As [`diffuse_slices`].
pub(crate) fn diffuse_slices_backward(
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
