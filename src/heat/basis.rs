//! The orthonormal DCT-II matrix and its inverse.

use burn::prelude::*;

use super::cache::{get_or_build, Kind};

/// The orthonormal DCT-II matrix of size `n × n`, computed in `f64` on the host, row-major.
///
/// Row `k` (frequency), column `x` (position): `sqrt(2/n) · cos(π k (x + ½) / n)`, with row 0
/// scaled by `1/√2` so that every row has unit norm. This is the reference's `get_cos_map`.
pub fn dct_basis_host(n: usize) -> Vec<f64> {
    let nf = n as f64;
    let scale = (2.0 / nf).sqrt();
    let mut m = Vec::with_capacity(n * n);
    for k in 0..n {
        let row_scale = if k == 0 { scale / 2f64.sqrt() } else { scale };
        for x in 0..n {
            let angle = std::f64::consts::PI * k as f64 * (x as f64 + 0.5) / nf;
            m.push(row_scale * angle.cos());
        }
    }
    m
}

fn build(n: usize, transpose: bool, device: &Device) -> Tensor<2> {
    let host = dct_basis_host(n);
    let mut data = vec![0f32; n * n];
    for r in 0..n {
        for c in 0..n {
            let v = host[r * n + c] as f32;
            if transpose {
                data[c * n + r] = v;
            } else {
                data[r * n + c] = v;
            }
        }
    }
    Tensor::from_data(TensorData::new(data, [n, n]), device)
}

/// The orthonormal DCT-II matrix `D` (`[n, n]`, row = frequency, column = position) on `device`.
///
/// Built once per `(n, device)` and cached; later calls return the cached tensor.
pub fn dct_basis(n: usize, device: &Device) -> Tensor<2> {
    get_or_build(Kind::Dct, [n, n], device, |d| build(n, false, d))
}

/// The inverse transform `Dᵀ` (`[n, n]`, row = position, column = frequency) on `device`.
///
/// `D` is orthogonal, so its inverse is its transpose (the orthonormal DCT-III). Cached like
/// [`dct_basis`], stored contiguous so the matmul needs no copy.
pub fn idct_basis(n: usize, device: &Device) -> Tensor<2> {
    get_or_build(Kind::Idct, [n, n], device, |d| build(n, true, d))
}
