//! Resampling as a matrix: bicubic (how an FVE learned at one size is read at another) and
//! bilinear (how dense-prediction heads upsample).
//!
//! PyTorch's `F.interpolate(mode="bicubic", align_corners=False)` is separable: along each axis,
//! output sample `i` reads the source at `s = (i + ½)·(n_in / n_out) − ½` and mixes the four
//! neighbours `⌊s⌋−1 … ⌊s⌋+2` (clamped to the border) with Keys' cubic convolution weights
//! (`A = −0.75`). Written as an `[n_out, n_in]` matrix `R`, a resize of an `[H, W, C]` map is
//! `R_H · X · R_Wᵀ` per channel: two products, differentiable on every backend (Burn's GPU
//! backends have no bicubic backward pass), cached like the DCT bases.

use burn::prelude::*;

use super::cache::{get_or_build, Kind};

/// Keys' cubic convolution parameter used by PyTorch (and OpenCV).
const A: f64 = -0.75;

/// Weight of a neighbour at distance `x ≤ 1`.
fn near(x: f64) -> f64 {
    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
}

/// Weight of a neighbour at distance `1 < x < 2`.
fn far(x: f64) -> f64 {
    ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
}

/// The `[n_out, n_in]` bicubic resampling matrix (row-major, `f64`), PyTorch's
/// `align_corners=False` convention with the output size given (scale `n_in / n_out`).
pub fn bicubic_matrix_host(n_out: usize, n_in: usize) -> Vec<f64> {
    let mut m = vec![0.0; n_out * n_in];
    if n_in == 0 {
        return m;
    }
    // PyTorch computes the scale in the accumulation type (f32 for f32 tensors) from the sizes.
    let scale = (n_in as f32 / n_out as f32) as f64;
    for i in 0..n_out {
        let src = (i as f64 + 0.5) * scale - 0.5;
        let x0 = src.floor();
        let t = src - x0;
        let weights = [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)];
        for (k, wgt) in weights.iter().enumerate() {
            let j = (x0 as i64 - 1 + k as i64).clamp(0, n_in as i64 - 1) as usize;
            m[i * n_in + j] += wgt;
        }
    }
    m
}

/// [`bicubic_matrix_host`] as a cached `[n_out, n_in]` tensor on `device`.
pub fn bicubic_matrix(n_out: usize, n_in: usize, device: &Device) -> Tensor<2> {
    get_or_build(Kind::Bicubic, [n_out, n_in], device, |d| {
        let data: Vec<f32> = bicubic_matrix_host(n_out, n_in)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        Tensor::from_data(TensorData::new(data, [n_out, n_in]), d)
    })
}

/// The `[n_out, n_in]` matrix of a bilinear resampling along one axis, row-major, PyTorch's
/// `F.interpolate(mode="bilinear", align_corners=False)` convention with the output size given:
/// output sample `i` reads the source at `s = max((i + ½)·(n_in / n_out) − ½, 0)` and mixes
/// `⌊s⌋` and `⌊s⌋ + 1` (clamped to the border) linearly.
pub fn bilinear_matrix(n_out: usize, n_in: usize) -> Vec<f32> {
    let mut m = vec![0.0f32; n_out * n_in];
    if n_in == 0 {
        return m;
    }
    // PyTorch computes the scale in the accumulation type (f32 for f32 tensors).
    let scale = (n_in as f32 / n_out as f32) as f64;
    for i in 0..n_out {
        let src = ((i as f64 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(n_in - 1);
        let i1 = (i0 + 1).min(n_in - 1);
        let t = src - i0 as f64;
        m[i * n_in + i0] += (1.0 - t) as f32;
        m[i * n_in + i1] += t as f32;
    }
    m
}

/// [`bilinear_matrix`] as a cached `[n_out, n_in]` tensor on `device`.
pub fn bilinear_matrix_cached(n_out: usize, n_in: usize, device: &Device) -> Tensor<2> {
    get_or_build(Kind::Bilinear, [n_out, n_in], device, |d| {
        Tensor::from_data(
            TensorData::new(bilinear_matrix(n_out, n_in), [n_out, n_in]),
            d,
        )
    })
}
