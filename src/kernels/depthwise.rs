//! Depthwise 3×3 convolution (stride 1, zero padding 1) of a channels-last map on host slices,
//! forward and backward.
//!
//! `y[b, i, j, c] = bias[c] + Σ_{di,dj ∈ {0,1,2}} t[3·di + dj][c] · x[b, i+di−1, j+dj−1, c]`,
//! `x` zero outside the map, with the taps `t` as `[9][C]` rows (PyTorch's `[C, 1, 3, 3]`
//! weight transposed) so that each tap is contiguous over channels. The input gradient is the
//! same convolution of the output gradient with the taps flipped; the tap and bias gradients
//! are sums over every position, accumulated per fixed group of rows and added up in order.

use super::buffer::{filled_in_blocks, init_repeating};
use super::reduce::sum_in_order;
use rayon::prelude::*;

use super::isa::isa_dispatch;

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
    let rows_per_group = (super::CHUNK / row_len).max(1);
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
