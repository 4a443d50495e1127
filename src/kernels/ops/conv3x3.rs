//! A dense 3×3 convolution (padding 1, any stride) of a channels-last map, forward and
//! backward: the stem's and the downsamplings' convolutions.
//!
//! The reference ([`conv_nhwc_reference`], [`conv_nhwc_backward_reference`]: the fallback on
//! every other backend, and with the kernels off; the depthwise convolution shares it) is
//! Burn's NCHW `conv2d` and its backward functions between permutes.
//!
//! Burn's flex backend convolves NCHW maps only, so a channels-last model would pay a permute
//! copy on each side of every such convolution, plus Burn's own unfold. Here the product runs
//! through the crate's matrix product (`gemm/`) with the patches built per task straight
//! from the channels-last map (each tap is `C_in` contiguous values), so the full patch matrix
//! never exists and neither side is permuted. The weight, stored like PyTorch's
//! `[C_out, C_in, 3, 3]`, is packed once per live buffer as the product's right operand, with
//! rows in (tap row, tap column, input channel) order.

use std::borrow::Cow;

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, TensorMetadata};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Shape, Tensor};
use rayon::prelude::*;

use crate::kernels::autodiff::record_weighted;
use crate::kernels::gemm::{gemm, gemm_with, PackedB};
use crate::kernels::on_host;
use crate::kernels::runtime::buffer::zeroed;

/// The dense channels-last 3×3 convolution as a backend operation, with its backward pass.
#[backend_extension(Flex: cfg(feature = "flex"), Autodiff)]
pub trait Conv3x3Ops: Backend {
    /// A dense 3×3 convolution, padding 1, stride `stride`, of a channels-last map `x`
    /// (`[B, H, W, C_in]`) with `weight` in PyTorch's layout `[C_out, C_in, 3, 3]` and `bias`
    /// (`[C_out]`): `[B, H_out, W_out, C_out]`.
    fn vheat_conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
    ) -> FloatTensor<Self> {
        conv_nhwc_reference::<Self>(x, weight, Some(bias), dense_options(stride))
    }

    /// `(∂L/∂x, ∂L/∂weight, ∂L/∂bias)` of [`vheat_conv3x3`](Self::vheat_conv3x3) from `grad`
    /// (`[B, H_out, W_out, C_out]`).
    fn vheat_conv3x3_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stride: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        conv_nhwc_backward_reference::<Self>(x, weight, grad, dense_options(stride))
    }
}

/// A dense 3×3 convolution with padding 1 and stride `stride` of a channels-last map `x`
/// (`[B, H, W, C_in]`), with `weight` in PyTorch's layout `[C_out, C_in, 3, 3]`: the
/// channels-last `[B, H_out, W_out, C_out]` result, `H_out = (H − 1) / stride + 1`.
///
/// On flex it runs through the crate's matrix product with the patches built from the map as
/// it is, with a handwritten backward under autodiff (the input gradient gathered from the
/// patch gradients in a fixed order; the weight gradient from the patch matrix through the
/// weight-gradient product); on every other backend it is [`conv_nhwc_reference`], Burn's
/// `conv2d` between permutes.
///
/// # Panics
/// If `weight` is not `[C_out, C_in, 3, 3]` for the map's `C_in`, `bias` not `[C_out]`, or
/// `stride` is 0.
pub fn conv3x3_nhwc(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    stride: usize,
) -> Tensor<4> {
    let [_, _, _, c_in] = x.dims();
    let [c_out, w_in, kh, kw] = weight.dims();
    assert!(stride > 0, "convolution stride 0");
    assert_eq!([w_in, kh, kw], [c_in, 3, 3], "3×3 convolution weight");
    if let Some(bias) = &bias {
        assert_eq!(bias.dims(), [c_out], "convolution bias");
    }
    if !(on_host(&x) && on_host(&weight) && bias.as_ref().is_none_or(on_host)) {
        let bias = bias.map(Tensor::into_dispatch);
        let (x, weight) = (x.into_dispatch(), weight.into_dispatch());
        let options = dense_options(stride);
        return Tensor::from_dispatch(conv_nhwc_reference::<Dispatch>(x, weight, bias, options));
    }
    let bias = bias.unwrap_or_else(|| Tensor::zeros([c_out], &x.device()));
    Tensor::from_dispatch(<Dispatch as Conv3x3Ops>::vheat_conv3x3(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        stride,
    ))
}

/// Stride `stride`, padding 1, one group: the dense convolution's options.
fn dense_options(stride: usize) -> ConvOptions<2> {
    ConvOptions::new([stride, stride], [1, 1], [1, 1], 1)
}

/// A 3×3 convolution (padding 1, dilation 1) of a channels-last map in Burn's operators:
/// `conv2d` between permutes. The reference of this convolution and of the depthwise one.
pub(crate) fn conv_nhwc_reference<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    options: ConvOptions<2>,
) -> FloatTensor<B> {
    let nchw = B::float_permute(x, &[0, 3, 1, 2]);
    let y = B::conv2d(nchw, weight, bias, options);
    B::float_permute(y, &[0, 2, 3, 1])
}

/// [`conv_nhwc_reference`]'s backward pass in Burn's operators (`conv2d`'s own backward functions).
pub(crate) fn conv_nhwc_backward_reference<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    grad: FloatTensor<B>,
    options: ConvOptions<2>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let c = weight.shape()[0];
    let x = B::float_permute(x, &[0, 3, 1, 2]);
    let g = B::float_permute(grad, &[0, 3, 1, 2]);
    let dx = B::conv2d_x_backward(x.clone(), weight.clone(), g.clone(), options.clone());
    let dw = B::conv2d_weight_backward(x, weight, g.clone(), options);
    let db = B::float_reshape(B::float_sum_dims(g, &[0, 2, 3]), Shape::new([c]));
    (B::float_permute(dx, &[0, 2, 3, 1]), dw, db)
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::flex::FlexTensor;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Flex, TensorMetadata};
    use rayon::prelude::*;

    use super::*;
    use crate::kernels::flex::{dims4, is_f32, tensor, values};
    use crate::kernels::gemm::packed_cache::{packed, Orientation};
    use crate::kernels::gemm::transposed_product::transposed_product;
    use crate::kernels::runtime::buffer::zeroed;
    use crate::kernels::runtime::reduce::column_sums;

    /// Whether the dense 3×3 kernel takes `x` and `weight`: float32, `x` `[B, H, W, C_in]`,
    /// `weight` `[C_out, C_in, 3, 3]`, a stride of at least 1.
    fn conv3x3_fits(x: &FlexTensor, weight: &FlexTensor, stride: usize) -> bool {
        let (xs, ws) = (x.shape(), weight.shape());
        is_f32(&[x, weight])
            && stride > 0
            && xs.num_dims() == 4
            && ws.num_dims() == 4
            && ws[1] == xs[3]
            && ws[2] == 3
            && ws[3] == 3
    }

    impl Conv3x3Ops for Flex {
        fn vheat_conv3x3(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            stride: usize,
        ) -> FloatTensor<Self> {
            let fits = conv3x3_fits(&x, &weight, stride)
                && is_f32(&[&bias])
                && bias.shape().to_vec() == [weight.shape()[0]];
            if !fits {
                return conv_nhwc_reference::<Self>(x, weight, Some(bias), dense_options(stride));
            }
            let ws = weight.shape();
            let (c_out, c_in) = (ws[0], ws[1]);
            let packed = packed(&weight, Orientation::Conv3x3, || {
                pack_weight(&values(&weight), c_out, c_in)
            });
            let (y, dims) = conv3x3(
                &values(&x),
                dims4(&x),
                &packed,
                Some(&values(&bias)),
                stride,
            );
            tensor(y, dims)
        }

        fn vheat_conv3x3_backward(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            stride: usize,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            let (xs, ws, gs) = (x.shape(), weight.shape(), grad.shape());
            let fits = conv3x3_fits(&x, &weight, stride)
                && is_f32(&[&grad])
                && gs.to_vec()
                    == [
                        xs[0],
                        output_side(xs[1], stride),
                        output_side(xs[2], stride),
                        ws[0],
                    ];
            if !fits {
                return conv_nhwc_backward_reference::<Self>(
                    x,
                    weight,
                    grad,
                    dense_options(stride),
                );
            }
            let (c_out, c_in) = (ws[0], ws[1]);
            let dims = dims4(&x);
            let g = values(&grad);
            let packed = packed(&weight, Orientation::Conv3x3InputGrad, || {
                pack_weight_for_input_grad(&values(&weight), c_out, c_in)
            });
            let dx = conv3x3_input_grad(&g, dims, &packed, stride);
            // dW = gᵀ·patches ([C_out, (tap, C_in)], the long inner dimension every output pixel)
            // and db = Σ g; then each output channel's row is reordered to (C_in, tap), on the pool.
            let k = 9 * c_in;
            let m = gs.num_elements() / c_out.max(1);
            let patches = patch_matrix(&values(&x), dims, stride);
            let db = column_sums(&g, m, c_out);
            let dw_taps = transposed_product(&g, &patches, m, c_out, k);
            drop(patches);
            let mut dw = zeroed(c_out * k);
            dw.par_chunks_mut(k.max(1))
                .zip(dw_taps.par_chunks(k.max(1)))
                .for_each(|(row, taps)| {
                    for t in 0..9 {
                        for ci in 0..c_in {
                            row[ci * 9 + t] = taps[t * c_in + ci];
                        }
                    }
                });
            let db = tensor(db, [c_out]);
            (tensor(dx, dims), tensor(dw, [c_out, c_in, 3, 3]), db)
        }
    }
}

impl<B: Conv3x3Ops, C: CheckpointStrategy> Conv3x3Ops for Autodiff<B, C> {
    fn vheat_conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
    ) -> FloatTensor<Self> {
        let (forward, backward) = (B::vheat_conv3x3, B::vheat_conv3x3_backward);
        record_weighted::<B, C, _>([x, weight, bias], stride, forward, backward)
    }
}

/// `[B, H, W, C]`.
pub(crate) type Dims = [usize; 4];

/// The output side of a 3×3 convolution with padding 1 and stride `stride` over `side` values.
pub(crate) fn output_side(side: usize, stride: usize) -> usize {
    (side + 2 - 3) / stride + 1
}

/// The product's right operand for a weight in PyTorch's layout `[C_out, C_in, 3, 3]`:
/// `B[(ky·3 + kx)·C_in + ci, co] = w[co, ci, ky, kx]`.
pub(crate) fn pack_weight(w: &[f32], c_out: usize, c_in: usize) -> PackedB {
    let k = 9 * c_in;
    assert!(w.len() >= c_out * k);
    // Row kk = tap · C_in + ci of B, column co.
    PackedB::from_fn(k, c_out, |kk, co| {
        w[(co * c_in + kk % c_in) * 9 + kk / c_in]
    })
}

/// `y[b, oy, ox, co] = bias[co] + Σ_{ky, kx, ci} w[co, ci, ky, kx] · x[b, s·oy + ky − 1,
/// s·ox + kx − 1, ci]` with `x` zero outside the map, for `x` `[B, H, W, C_in]` row-major and
/// the weight packed by [`pack_weight`]; returns `y` (`[B, H_out, W_out, C_out]`) and its
/// dimensions.
///
/// # Panics
/// If `x` is shorter than `dims` say, the weight was packed for another `C_in`, or `stride` is 0.
pub(crate) fn conv3x3(
    x: &[f32],
    dims: Dims,
    weight: &PackedB,
    bias: Option<&[f32]>,
    stride: usize,
) -> (Vec<f32>, Dims) {
    let [b, h, w, c_in] = dims;
    assert!(stride > 0 && x.len() >= b * h * w * c_in);
    let k = 9 * c_in;
    assert_eq!(weight.inner(), k, "weight packed for another channel count");
    let (ho, wo) = (output_side(h, stride), output_side(w, stride));
    let c_out = weight.cols();
    let m = b * ho * wo;
    let y = gemm_with(m, weight, bias, |row0, rows| {
        let mut rows_of_patches = vec![0.0f32; rows * k];
        patches(x, dims, stride, row0, &mut rows_of_patches);
        Cow::Owned(rows_of_patches)
    });
    (y, [b, ho, wo, c_out])
}

/// Rows `row0..` of the patch matrix (one row per output pixel, `9·C_in` values in (tap row,
/// tap column, channel) order, zero where the tap falls outside the map), as many as `out`
/// holds.
fn patches(x: &[f32], dims: Dims, stride: usize, row0: usize, out: &mut [f32]) {
    let [_, h, w, c_in] = dims;
    let (ho, wo) = (output_side(h, stride), output_side(w, stride));
    let k = 9 * c_in;
    for (r, patch) in out.chunks_exact_mut(k.max(1)).enumerate() {
        let index = row0 + r;
        let (item, oy, ox) = (index / (ho * wo), index / wo % ho, index % wo);
        for ky in 0..3 {
            let iy = (oy * stride + ky).checked_sub(1).filter(|&iy| iy < h);
            for kx in 0..3 {
                let t = ky * 3 + kx;
                let dst = &mut patch[t * c_in..(t + 1) * c_in];
                let ix = (ox * stride + kx).checked_sub(1).filter(|&ix| ix < w);
                match (iy, ix) {
                    (Some(iy), Some(ix)) => {
                        let src = ((item * h + iy) * w + ix) * c_in;
                        dst.copy_from_slice(&x[src..src + c_in]);
                    }
                    _ => dst.fill(0.0),
                }
            }
        }
    }
}

/// The whole patch matrix of `x` (`B·H_out·W_out × 9·C_in`), built in parallel: the left
/// operand of the weight gradient.
pub(crate) fn patch_matrix(x: &[f32], dims: Dims, stride: usize) -> Vec<f32> {
    let [b, h, w, c_in] = dims;
    let m = b * output_side(h, stride) * output_side(w, stride);
    let k = 9 * c_in;
    let mut out = zeroed(m * k);
    let rows_per_task = 64;
    out.par_chunks_mut((rows_per_task * k).max(1))
        .enumerate()
        .for_each(|(t, chunk)| patches(x, dims, stride, t * rows_per_task, chunk));
    out
}

/// The backward product's right operand: `Wᵀ` of the patch product, `B[co, (ky·3 + kx)·C_in +
/// ci] = w[co, ci, ky, kx]`, for `∂L/∂patches = g·B`.
pub(crate) fn pack_weight_for_input_grad(w: &[f32], c_out: usize, c_in: usize) -> PackedB {
    let k = 9 * c_in;
    assert!(w.len() >= c_out * k);
    // Row co of B, column j = tap · C_in + ci.
    PackedB::from_fn(c_out, k, |co, j| w[(co * c_in + j % c_in) * 9 + j / c_in])
}

/// `∂L/∂x` of [`conv3x3`] from `grad` (`[B, H_out, W_out, C_out]`), with the weight packed by
/// [`pack_weight_for_input_grad`]: the patch gradients `grad·Wᵀ`, then each input value
/// gathers the (at most nine) patch entries that read it, in tap order, so the sum's order is
/// fixed.
pub(crate) fn conv3x3_input_grad(
    grad: &[f32],
    dims: Dims,
    weight_t: &PackedB,
    stride: usize,
) -> Vec<f32> {
    let [b, h, w, c_in] = dims;
    let (ho, wo) = (output_side(h, stride), output_side(w, stride));
    let k = 9 * c_in;
    let c_out = weight_t.inner();
    assert_eq!(
        weight_t.cols(),
        k,
        "weight packed for another channel count"
    );
    let m = b * ho * wo;
    assert!(grad.len() >= m * c_out);
    let dp = gemm(grad, m, weight_t, None);
    let mut dx = zeroed(b * h * w * c_in);
    dx.par_chunks_mut((w * c_in).max(1))
        .enumerate()
        .for_each(|(row, dx_row)| {
            let (item, iy) = (row / h, row % h);
            for ix in 0..w {
                let dst = &mut dx_row[ix * c_in..(ix + 1) * c_in];
                for ky in 0..3 {
                    // Output row oy reads input row iy through tap ky when s·oy + ky − 1 = iy.
                    let Some(oy) = (iy + 1).checked_sub(ky).filter(|v| v % stride == 0) else {
                        continue;
                    };
                    let oy = oy / stride;
                    if oy >= ho {
                        continue;
                    }
                    for kx in 0..3 {
                        let Some(ox) = (ix + 1).checked_sub(kx).filter(|v| v % stride == 0) else {
                            continue;
                        };
                        let ox = ox / stride;
                        if ox >= wo {
                            continue;
                        }
                        let t = ky * 3 + kx;
                        let src = ((item * ho + oy) * wo + ox) * k + t * c_in;
                        for (d, &v) in dst.iter_mut().zip(&dp[src..src + c_in]) {
                            *d += v;
                        }
                    }
                }
            }
        });
    dx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values as values;

    /// The definition, in float64, on the NHWC map.
    fn reference(
        x: &[f32],
        dims: Dims,
        w: &[f32],
        bias: &[f32],
        c_out: usize,
        s: usize,
    ) -> Vec<f64> {
        let [b, h, wd, c_in] = dims;
        let (ho, wo) = (output_side(h, s), output_side(wd, s));
        let mut y = vec![0.0f64; b * ho * wo * c_out];
        for item in 0..b {
            for oy in 0..ho {
                for ox in 0..wo {
                    for co in 0..c_out {
                        let mut acc = bias[co] as f64;
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (iy, ix) =
                                    ((oy * s + ky) as isize - 1, (ox * s + kx) as isize - 1);
                                if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= wd {
                                    continue;
                                }
                                for ci in 0..c_in {
                                    let xv = x
                                        [((item * h + iy as usize) * wd + ix as usize) * c_in + ci];
                                    acc +=
                                        w[((co * c_in + ci) * 3 + ky) * 3 + kx] as f64 * xv as f64;
                                }
                            }
                        }
                        y[((item * ho + oy) * wo + ox) * c_out + co] = acc;
                    }
                }
            }
        }
        y
    }

    #[test]
    fn matches_float64_on_every_path_stride_and_odd_size() {
        let _one = crate::kernels::isa::tests_lock();
        for isa in crate::kernels::isa::runnable() {
            crate::kernels::isa::force(Some(isa));
            for &(dims, c_out, stride) in &[
                ([1, 1, 1, 1], 1, 2),
                ([2, 7, 5, 3], 8, 2),
                ([1, 9, 9, 16], 40, 2),
                ([3, 6, 8, 5], 33, 1),
                ([1, 4, 4, 2], 3, 3),
            ] {
                let [b, h, w, c_in] = dims;
                let x = values(b * h * w * c_in, 1);
                let wt = values(c_out * c_in * 9, 2);
                let bias = values(c_out, 3);
                let want = reference(&x, dims, &wt, &bias, c_out, stride);
                let (got, out_dims) = conv3x3(
                    &x,
                    dims,
                    &pack_weight(&wt, c_out, c_in),
                    Some(&bias),
                    stride,
                );
                assert_eq!(
                    out_dims,
                    [b, output_side(h, stride), output_side(w, stride), c_out]
                );
                // Sums of at most 9·C_in + 1 products of values below 1 (see gemm's test).
                let tol = 1e-6 * (1.0 + 9.0 * c_in as f64);
                for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g as f64 - w).abs() <= tol,
                        "{dims:?} s{stride} [{i}]: {g} vs {w}"
                    );
                }
            }
        }
        crate::kernels::isa::force(None);
    }

    #[test]
    fn input_and_patch_gradients_match_float64() {
        for &(dims, c_out, stride) in &[
            ([2, 7, 5, 3], 8, 2),
            ([1, 6, 6, 16], 40, 2),
            ([1, 5, 4, 4], 6, 1),
            ([1, 1, 1, 2], 3, 2),
        ] {
            let [b, h, w, c_in] = dims;
            let (ho, wo) = (output_side(h, stride), output_side(w, stride));
            let x = values(b * h * w * c_in, 4);
            let wt = values(c_out * c_in * 9, 5);
            let g = values(b * ho * wo * c_out, 6);
            // ∂L/∂x[b, iy, ix, ci] = Σ over outputs reading it through tap (ky, kx).
            let mut want = vec![0.0f64; x.len()];
            for item in 0..b {
                for oy in 0..ho {
                    for ox in 0..wo {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (iy, ix) = (
                                    (oy * stride + ky) as isize - 1,
                                    (ox * stride + kx) as isize - 1,
                                );
                                if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                                    continue;
                                }
                                for ci in 0..c_in {
                                    let at =
                                        ((item * h + iy as usize) * w + ix as usize) * c_in + ci;
                                    for co in 0..c_out {
                                        want[at] += g[((item * ho + oy) * wo + ox) * c_out + co]
                                            as f64
                                            * wt[((co * c_in + ci) * 3 + ky) * 3 + kx] as f64;
                                    }
                                }
                            }
                        }
                    }
                }
            }
            let packed = pack_weight_for_input_grad(&wt, c_out, c_in);
            let got = conv3x3_input_grad(&g, dims, &packed, stride);
            // Up to nine sums of C_out ≤ 40 products of values below 1.
            let tol = 1e-6 * (1.0 + 9.0 * c_out as f64);
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g as f64 - w).abs() <= tol,
                    "{dims:?} s{stride} dx[{i}]: {g} vs {w}"
                );
            }
            // The patch matrix is the definition's operand: row (b, oy, ox), tap t, channel ci.
            let p = patch_matrix(&x, dims, stride);
            assert_eq!(p.len(), b * ho * wo * 9 * c_in);
            let (oy, ox) = (ho - 1, wo - 1);
            for t in 0..9 {
                let (iy, ix) = (
                    (oy * stride + t / 3) as isize - 1,
                    (ox * stride + t % 3) as isize - 1,
                );
                let inside = iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w;
                let row = ((b - 1) * ho + oy) * wo + ox;
                let expect = if inside {
                    x[(((b - 1) * h + iy as usize) * w + ix as usize) * c_in]
                } else {
                    0.0
                };
                assert_eq!(p[row * 9 * c_in + t * c_in], expect, "patch tap {t}");
            }
        }
    }
}
