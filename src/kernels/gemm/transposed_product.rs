//! `aᵀ·b` for two row-major matrices with the same (long) number of rows: the weight gradient
//! of a projection, `Σ_rows x[r, i] · g[r, j]`, where every pixel of the batch is a row.
//!
//! The product itself is the `gemm` crate's (the one Burn's flex backend calls, with the same
//! strides and threading rule, so the sums are the same), which handles a long inner dimension
//! well. It is called here rather than through `Flex::float_matmul` because flex allocates the
//! product's output as a zeroed byte vector and then copies it once more into a 16-byte-aligned
//! allocation (`Bytes::from_bytes_vec`), both on the calling thread while the pool waits. Here
//! the output is zeroed on the pool and handed to the tensor as it is.

use crate::kernels::runtime::buffer::zeroed;

/// Work (`m·n·k` multiply-adds) from which the product is split over the rayon pool: flex's
/// own threshold for its matrix products, so the two agree.
const PARALLEL_MIN_WORK: usize = 192 * 192 * 192;

/// `aᵀ·b`, `a_cols × b_cols` row-major, for `a` `rows × a_cols` and `b` `rows × b_cols`
/// (both row-major).
///
/// # Panics
/// If `a` or `b` is shorter than its shape says.
pub(crate) fn transposed_product(
    a: &[f32],
    b: &[f32],
    rows: usize,
    a_cols: usize,
    b_cols: usize,
) -> Vec<f32> {
    assert!(
        a.len() >= rows * a_cols && b.len() >= rows * b_cols,
        "transposed_product operand sizes"
    );
    let mut out = zeroed(a_cols * b_cols);
    if out.is_empty() || rows == 0 {
        return out;
    }
    let work = a_cols.saturating_mul(b_cols).saturating_mul(rows);
    let parallelism = if work >= PARALLEL_MIN_WORK {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `out` holds a_cols × b_cols values (row stride b_cols, column stride 1); the left
    // operand aᵀ (a_cols × rows) reads a[r·a_cols + i], inside `a` (asserted), and the right
    // one (rows × b_cols) reads b[r·b_cols + j], inside `b` (asserted). `read_dst` is false,
    // so `out` is only written.
    unsafe {
        gemm::gemm(
            a_cols,
            b_cols,
            rows,
            out.as_mut_ptr(),
            1,
            b_cols as isize,
            false,
            a.as_ptr(),
            a_cols as isize,
            1,
            b.as_ptr(),
            1,
            b_cols as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against float64 sums, on shapes below and above the threading threshold, with edge
    /// widths (1, a prime, a multiple of the micro-kernels' widths) and an empty inner side.
    #[test]
    fn matches_float64_on_small_large_and_empty_shapes() {
        for &(rows, a_cols, b_cols) in &[
            (0, 3, 4),
            (1, 1, 1),
            (7, 5, 3),
            (300, 17, 48),
            (4096, 96, 37),
            (2000, 128, 384),
        ] {
            let a: Vec<f32> = (0..rows * a_cols)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let b: Vec<f32> = (0..rows * b_cols)
                .map(|i| ((i * 53 % 89) as f32 - 44.0) / 22.0)
                .collect();
            let got = transposed_product(&a, &b, rows, a_cols, b_cols);
            assert_eq!(got.len(), a_cols * b_cols);
            for i in 0..a_cols {
                for j in 0..b_cols {
                    let (mut want, mut size) = (0.0f64, 0.0f64);
                    for r in 0..rows {
                        let term = a[r * a_cols + i] as f64 * b[r * b_cols + j] as f64;
                        want += term;
                        size += term.abs();
                    }
                    // float32 accumulation over `rows` terms: each step rounds by at most
                    // 2⁻²⁴ of the running magnitude, bounded by the sum of |terms|; 4·rows·ε
                    // leaves room for any blocking order.
                    let tol = 4.0 * rows as f64 * f32::EPSILON as f64 * size + 1e-30;
                    let d = (got[i * b_cols + j] as f64 - want).abs();
                    assert!(d <= tol, "({rows},{a_cols},{b_cols})[{i},{j}]: {d} > {tol}");
                }
            }
        }
    }
}
