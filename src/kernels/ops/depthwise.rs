//! The heat operator's depthwise 3×3 convolution (stride 1, zero padding 1) of a channels-last
//! map, forward and backward.
//!
//! The reference (the fallback on every other backend, and with the kernels off) is the dense
//! convolution's, [`conv_nhwc_reference`] with one group per channel: Burn's NCHW `conv2d`
//! between permutes. Flex convolves NCHW maps only, so the model would pay a permute copy on
//! each side; the host loops run on the map as it is, one output row per task, vectorised over
//! channels:
//!
//! `y[b, i, j, c] = bias[c] + Σ_{di,dj ∈ {0,1,2}} t[3·di + dj][c] · x[b, i+di−1, j+dj−1, c]`,
//! `x` zero outside the map, with the taps `t` as `[9][C]` rows (PyTorch's `[C, 1, 3, 3]`
//! weight transposed) so that each tap is contiguous over channels. The input gradient is the
//! same convolution of the output gradient with the taps flipped; the tap and bias gradients
//! are sums over every position, accumulated per fixed group of rows and added up in order.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, TensorMetadata};
use burn::tensor::ops::ConvOptions;
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::conv3x3::{conv_nhwc_backward_reference, conv_nhwc_reference};
use crate::kernels::autodiff::record_weighted;
use crate::kernels::isa::isa_dispatch;
use crate::kernels::on_host;
use crate::kernels::runtime::buffer::{filled_in_blocks, init_repeating};
use crate::kernels::runtime::reduce::sum_in_order;

/// The channels-last depthwise 3×3 convolution as a backend operation, with its backward pass.
#[backend_extension(Flex: cfg(feature = "flex"), Autodiff)]
pub trait DepthwiseOps: Backend {
    /// Depthwise 3×3 convolution, stride 1, zero padding 1, of a channels-last map `[B, H, W, C]`
    /// with a PyTorch-layout weight `[C, 1, 3, 3]` and a bias `[C]`.
    fn vheat_dwconv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let options = depthwise_options(weight.shape()[0]);
        conv_nhwc_reference::<Self>(x, weight, Some(bias), options)
    }

    /// `(dx, dweight, dbias)` of [`vheat_dwconv3x3`](Self::vheat_dwconv3x3) for the output
    /// gradient `grad` (`[B, H, W, C]`).
    fn vheat_dwconv3x3_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let options = depthwise_options(weight.shape()[0]);
        conv_nhwc_backward_reference::<Self>(x, weight, grad, options)
    }
}

/// `y[b, i, j, c] = bias[c] + Σ_{di,dj ∈ {-1,0,1}} w[c, 0, 1+di, 1+dj] · x[b, i+di, j+dj, c]`,
/// with `x` zero outside the map: a depthwise 3×3 convolution, stride 1, padding 1, of a
/// channels-last map `[B, H, W, C]`, with `weight` in PyTorch's layout `[C, 1, 3, 3]`.
///
/// On the host fast path it runs on the map as it is, one output row per task, vectorised over
/// channels, and so does its backward pass; elsewhere it permutes to NCHW, calls Burn's
/// `conv2d` and permutes back ([`conv_nhwc_reference`]).
///
/// # Panics
/// If `weight` is not `[C, 1, 3, 3]` or `bias` not `[C]` for the map's `C`.
pub fn depthwise_conv3x3_nhwc(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
) -> Tensor<4> {
    let [_, _, _, c] = x.dims();
    assert_eq!(weight.dims(), [c, 1, 3, 3], "depthwise 3×3 weight");
    if let Some(bias) = &bias {
        assert_eq!(bias.dims(), [c], "depthwise bias");
    }
    if !(on_host(&x) && on_host(&weight) && bias.as_ref().is_none_or(on_host)) {
        let bias = bias.map(Tensor::into_dispatch);
        let (x, weight) = (x.into_dispatch(), weight.into_dispatch());
        let options = depthwise_options(c);
        return Tensor::from_dispatch(conv_nhwc_reference::<Dispatch>(x, weight, bias, options));
    }
    let bias = bias.unwrap_or_else(|| Tensor::zeros([c], &x.device()));
    Tensor::from_dispatch(<Dispatch as DepthwiseOps>::vheat_dwconv3x3(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
    ))
}

/// Stride 1, padding 1, dilation 1, `c` groups.
fn depthwise_options(c: usize) -> ConvOptions<2> {
    ConvOptions::new([1, 1], [1, 1], [1, 1], c)
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::flex::FlexTensor;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Flex, TensorMetadata};

    use super::*;
    use crate::kernels::flex::{dims4, is_f32, tensor, values};

    /// PyTorch's `[C, 1, 3, 3]` weight as `[9][C]` taps.
    fn taps_of(weight: &FlexTensor) -> Vec<f32> {
        let w = values(weight);
        let c = w.len() / 9;
        let mut taps = vec![0.0f32; 9 * c];
        for ch in 0..c {
            for t in 0..9 {
                taps[t * c + ch] = w[ch * 9 + t];
            }
        }
        taps
    }

    impl DepthwiseOps for Flex {
        fn vheat_dwconv3x3(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            bias: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            if !is_f32(&[&x, &weight, &bias]) {
                let options = depthwise_options(weight.shape()[0]);
                return conv_nhwc_reference::<Self>(x, weight, Some(bias), options);
            }
            let dims = dims4(&x);
            let y = dwconv3x3_forward(&values(&x), &taps_of(&weight), &values(&bias), dims);
            tensor(y, dims)
        }

        fn vheat_dwconv3x3_backward(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            grad: FloatTensor<Self>,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            if !is_f32(&[&x, &weight, &grad]) {
                let options = depthwise_options(weight.shape()[0]);
                return conv_nhwc_backward_reference::<Self>(x, weight, grad, options);
            }
            let dims = dims4(&x);
            let c = dims[3];
            let (dx, dtaps, dbias) =
                dwconv3x3_backward(&values(&x), &taps_of(&weight), &values(&grad), dims);
            let mut dw = vec![0.0f32; 9 * c];
            for ch in 0..c {
                for t in 0..9 {
                    dw[ch * 9 + t] = dtaps[t * c + ch];
                }
            }
            (
                tensor(dx, dims),
                tensor(dw, [c, 1, 3, 3]),
                tensor(dbias, [c]),
            )
        }
    }
}

impl<B: DepthwiseOps, C: CheckpointStrategy> DepthwiseOps for Autodiff<B, C> {
    fn vheat_dwconv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        record_weighted::<B, C, ()>(
            [x, weight, bias],
            (),
            |x, weight, bias, ()| B::vheat_dwconv3x3(x, weight, bias),
            |x, weight, grad, ()| B::vheat_dwconv3x3_backward(x, weight, grad),
        )
    }
}

/// The map's `[B, H, W, C]`.
pub(crate) type Dims = [usize; 4];

/// One output row to compute: row `i` of one image `plane` (`[H, W, C]`).
struct Row<'a> {
    plane: &'a [f32],
    taps: &'a [f32],
    i: usize,
    h: usize,
    w: usize,
    c: usize,
}

/// Adds one output row's taps into `out_row`, which holds the bias at every pixel.
#[inline(always)]
fn conv_row_loop(job: &Row<'_>, out_row: &mut [f32]) {
    let &Row {
        plane,
        taps,
        i,
        h,
        w,
        c,
    } = job;
    for j in 0..w {
        let out = &mut out_row[j * c..(j + 1) * c];
        for di in 0..3 {
            let Some(src_i) = (i + di).checked_sub(1).filter(|&r| r < h) else {
                continue;
            };
            for dj in 0..3 {
                let Some(src_j) = (j + dj).checked_sub(1).filter(|&s| s < w) else {
                    continue;
                };
                let tap = &taps[(di * 3 + dj) * c..(di * 3 + dj + 1) * c];
                let start = (src_i * w + src_j) * c;
                let src = &plane[start..start + c];
                for ((o, &t), &s) in out.iter_mut().zip(tap).zip(src) {
                    *o += t * s;
                }
            }
        }
    }
}

/// Adds one output row's contribution to the tap gradients (`acc[..9C]`) and the bias
/// gradient (`acc[9C..]`): `g` is the output gradient's row `i` of image `plane`.
#[inline(always)]
fn weight_grad_row_loop(plane: &[f32], g: &[f32], i: usize, h: usize, w: usize, acc: &mut [f32]) {
    let c = g.len() / w.max(1);
    let (dtaps, dbias) = acc.split_at_mut(9 * c);
    for j in 0..w {
        let gj = &g[j * c..(j + 1) * c];
        for (d, &v) in dbias.iter_mut().zip(gj) {
            *d += v;
        }
        for di in 0..3 {
            let Some(src_i) = (i + di).checked_sub(1).filter(|&r| r < h) else {
                continue;
            };
            for dj in 0..3 {
                let Some(src_j) = (j + dj).checked_sub(1).filter(|&s| s < w) else {
                    continue;
                };
                let start = (src_i * w + src_j) * c;
                let src = &plane[start..start + c];
                let dt = &mut dtaps[(di * 3 + dj) * c..(di * 3 + dj + 1) * c];
                for ((d, &s), &v) in dt.iter_mut().zip(src).zip(gj) {
                    *d += s * v;
                }
            }
        }
    }
}

isa_dispatch! {
    fn conv_row(job: &Row<'_>, out_row: &mut [f32]) => conv_row_loop;
}

isa_dispatch! {
    fn weight_grad_row(plane: &[f32], g: &[f32], i: usize, h: usize, w: usize, acc: &mut [f32]) => weight_grad_row_loop;
}

/// The convolution of `input` (`[B, H, W, C]`) with `taps` (`[9][C]`) plus `bias` (`[C]`),
/// one output row per parallel task.
pub(crate) fn dwconv3x3_forward(input: &[f32], taps: &[f32], bias: &[f32], dims: Dims) -> Vec<f32> {
    let [b, h, w, c] = dims;
    let row_len = w * c;
    if row_len == 0 || b * h == 0 {
        return Vec::new();
    }
    assert!(input.len() >= b * h * row_len && bias.len() == c && taps.len() >= 9 * c);
    // One output row per block, each first set to the bias then added to: every value is
    // written (the contract of `filled_in_blocks`).
    filled_in_blocks(b * h * row_len, row_len, |row, out_row| {
        let (n, i) = (row / h, row % h);
        let job = Row {
            plane: &input[n * h * row_len..(n + 1) * h * row_len],
            taps,
            i,
            h,
            w,
            c,
        };
        conv_row(&job, init_repeating(out_row, bias));
    })
    .0
}

/// `(dx, dtaps, dbias)` of [`dwconv3x3_forward`] for the output gradient `grad`: `dx` as
/// `[B, H, W, C]`, `dtaps` as `[9][C]`, `dbias` as `[C]`.
pub(crate) fn dwconv3x3_backward(
    input: &[f32],
    taps: &[f32],
    grad: &[f32],
    dims: Dims,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let [_, h, w, c] = dims;
    // dx[p] = Σ_t taps[t] · grad[p − offset(t)] = the forward convolution of `grad` with the
    // taps reversed (tap 8 − t), no bias.
    let flipped: Vec<f32> = (0..9)
        .rev()
        .flat_map(|t| taps[t * c..(t + 1) * c].iter().copied())
        .collect();
    let zeros = vec![0.0f32; c];
    let dx = dwconv3x3_forward(grad, &flipped, &zeros, dims);
    let row_len = w * c;
    if row_len == 0 {
        return (dx, vec![0.0; 9 * c], zeros);
    }
    // Partial sums over fixed groups of rows, added up in group order (independent of rayon's
    // scheduling, so seeded training is reproducible).
    let rows_per_group = (crate::kernels::runtime::CHUNK / row_len).max(1);
    let partials: Vec<Vec<f32>> = grad
        .par_chunks(rows_per_group * row_len)
        .enumerate()
        .map(|(group, g)| {
            let mut acc = vec![0.0f32; 10 * c];
            for (r, g_row) in g.chunks(row_len).enumerate() {
                let row = group * rows_per_group + r;
                let (n, i) = (row / h, row % h);
                let plane = &input[n * h * row_len..(n + 1) * h * row_len];
                weight_grad_row(plane, g_row, i, h, w, &mut acc);
            }
            acc
        })
        .collect();
    let acc = sum_in_order(&partials, 10 * c);
    let (dtaps, dbias) = acc.split_at(9 * c);
    (dx, dtaps.to_vec(), dbias.to_vec())
}
