//! DCT-II / DCT-III along one axis, and the 2-D transform of a channels-last feature map.

use burn::prelude::*;

use super::basis::{dct_basis, idct_basis};

/// Multiplies `matrix` (`[m, n]`) into axis `axis` of `x`: `y[.., i, ..] = Σⱼ matrix[i, j]·x[.., j, ..]`.
///
/// The tensor is viewed as `[before, n, after]` (a free reshape of a contiguous tensor) and the
/// product is one batched matmul; along the last axis it is one plain matmul with `matrixᵀ`.
/// `matrix` may be rectangular (`[m, n]`: the axis becomes `m` long), as for resampling.
///
/// # Panics
/// If `axis >= D` or `matrix` is not `[m, x.dims()[axis]]`.
pub fn apply_along<const D: usize>(x: Tensor<D>, axis: usize, matrix: Tensor<2>) -> Tensor<D> {
    // The cached bases are f32; a map in another precision (bf16, f16, f64) gets them in its own.
    let matrix = if matrix.dtype() == x.dtype() {
        matrix
    } else {
        matrix.cast(burn::tensor::FloatDType::from(x.dtype()))
    };
    let dims = x.dims();
    let n = dims[axis];
    let mut out_dims = dims;
    out_dims[axis] = matrix.dims()[0];
    let before: usize = dims[..axis].iter().product();
    let after: usize = dims[axis + 1..].iter().product();
    if after == 1 {
        let flat = x.reshape([before, n]);
        flat.matmul(matrix.transpose()).reshape(out_dims)
    } else {
        let view = x.reshape([before, n, after]);
        crate::kernels::mix_along(view, matrix).reshape(out_dims)
    }
}

/// Orthonormal DCT-II of `x` along `axis` (any rank, any axis).
///
/// # Panics
/// If `axis >= D`. The model only calls it with valid axes.
pub fn dct_along<const D: usize>(x: Tensor<D>, axis: usize) -> Tensor<D> {
    let n = x.dims()[axis];
    let basis = dct_basis(n, &x.device());
    apply_along(x, axis, basis)
}

/// Orthonormal inverse DCT (DCT-III, the transpose of the DCT-II) of `x` along `axis`.
///
/// # Panics
/// If `axis >= D`.
pub fn idct_along<const D: usize>(x: Tensor<D>, axis: usize) -> Tensor<D> {
    let n = x.dims()[axis];
    let basis = idct_basis(n, &x.device());
    apply_along(x, axis, basis)
}

/// 2-D orthonormal DCT-II over the spatial axes of a channels-last map `[B, H, W, C]`.
///
/// `X̂ = D_H · X · D_Wᵀ` for every batch item and channel, as two batched matmuls.
pub fn dct2d(x: Tensor<4>) -> Tensor<4> {
    dct_along(dct_along(x, 1), 2)
}

/// 2-D inverse of [`dct2d`] on a channels-last map `[B, H, W, C]`: `X = D_Hᵀ · X̂ · D_W`.
pub fn idct2d(x: Tensor<4>) -> Tensor<4> {
    idct_along(idct_along(x, 1), 2)
}

/// `IDCT2D(DCT2D(x) ⊙ decay)`: the heat operator's diffusion of a channels-last map `x`
/// (`[B, H, W, C]`) with `decay` (`[H, W, C]`, the same for every item).
///
/// [`crate::kernels::diffuse`] with the cached DCT bases (in `x`'s precision): on the CPU fast
/// path one fused kernel, forward and backward; elsewhere the kernels' reference,
/// `idct2d(dct2d(x) * decay)` in Burn's operators.
pub fn diffuse(x: Tensor<4>, decay: Tensor<3>) -> Tensor<4> {
    let [_, h, w, _] = x.dims();
    let device = x.device();
    let basis = |n: usize| {
        let basis = dct_basis(n, &device);
        if basis.dtype() == x.dtype() {
            basis
        } else {
            basis.cast(burn::tensor::FloatDType::from(x.dtype()))
        }
    };
    let (dct_h, dct_w) = (basis(h), basis(w));
    crate::kernels::diffuse(x, decay, dct_h, dct_w)
}
