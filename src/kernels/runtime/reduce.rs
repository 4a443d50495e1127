//! Reductions on host slices, split over the rayon pool in a fixed way: the bias gradient's
//! column sums and the sum of squares behind global-norm gradient clipping.
//!
//! Flex sums on one thread. These cut the input into blocks of a size that depends on the
//! shape alone, reduce each block in order, and add the blocks' partial results in block
//! order, so the result does not depend on how rayon schedules the blocks: seeded training
//! stays bit-reproducible across runs and thread counts.

use rayon::prelude::*;

use super::CHUNK;

/// Rows per block of [`column_sums`]: about [`CHUNK`] values, at least one row.
fn rows_per_block(n: usize) -> usize {
    (CHUNK / n.max(1)).max(1)
}

/// `Σ_r g[r·n + j]` for every column `j` of a row-major `m × n` matrix `g`.
///
/// # Panics
/// If `g` holds fewer than `m·n` values.
pub(crate) fn column_sums(g: &[f32], m: usize, n: usize) -> Vec<f32> {
    assert!(g.len() >= m * n, "column_sums operand size");
    if n == 0 {
        return Vec::new();
    }
    let block = rows_per_block(n) * n;
    let partials: Vec<Vec<f32>> = g[..m * n]
        .par_chunks(block)
        .map(|rows| {
            let mut acc = vec![0.0f32; n];
            for row in rows.chunks_exact(n) {
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += v;
                }
            }
            acc
        })
        .collect();
    sum_in_order(&partials, n)
}

/// `Σ_i partials[i]`, element-wise over `n` values, added in the order of `partials`: how the
/// kernels combine per-block partial sums so that the result does not depend on scheduling.
pub(crate) fn sum_in_order(partials: &[Vec<f32>], n: usize) -> Vec<f32> {
    let mut sums = vec![0.0f32; n];
    for partial in partials {
        for (s, p) in sums.iter_mut().zip(partial) {
            *s += p;
        }
    }
    sums
}

/// Values per block of [`sum_of_squares`].
const SQUARES_BLOCK: usize = 4 * CHUNK;

/// `Σ v²`, accumulated in float64 per block and over blocks (the clipping norm is one number
/// over tens of millions of squares; float64 keeps it as exact as the float32 inputs allow).
pub(crate) fn sum_of_squares(v: &[f32]) -> f64 {
    v.par_chunks(SQUARES_BLOCK)
        .map(|block| {
            // Eight independent lanes, so the loop vectorises; combined in a fixed order.
            let mut lanes = [0.0f64; 8];
            let mut it = block.chunks_exact(8);
            for eight in &mut it {
                for (l, &x) in lanes.iter_mut().zip(eight) {
                    *l += f64::from(x) * f64::from(x);
                }
            }
            let tail: f64 = it
                .remainder()
                .iter()
                .map(|&x| f64::from(x) * f64::from(x))
                .sum();
            lanes.iter().sum::<f64>() + tail
        })
        .collect::<Vec<f64>>()
        .iter()
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect()
    }

    #[test]
    fn column_sums_match_float64_at_every_shape() {
        for (m, n) in [(0, 3), (1, 1), (5, 3), (3000, 7), (700, 96), (40, 1000)] {
            let g = values(m * n);
            let got = column_sums(&g, m, n);
            for (j, &s) in got.iter().enumerate() {
                let want: f64 = (0..m).map(|r| f64::from(g[r * n + j])).sum();
                // float32 accumulation over m ≤ 3000 terms of size ≤ 8: a few ulps of the
                // running sum.
                assert!(
                    (f64::from(s) - want).abs() <= 1e-5 * (1.0 + want.abs()) * (m as f64).sqrt(),
                    "column {j} of {m}×{n}: {s} against {want}"
                );
            }
        }
    }

    #[test]
    fn sum_of_squares_matches_float64_and_is_order_fixed() {
        for n in [0, 1, 9, SQUARES_BLOCK + 13, 3 * SQUARES_BLOCK] {
            let v = values(n);
            let want: f64 = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
            let got = sum_of_squares(&v);
            // float64 sums of float64-exact squares: rounding of order 1e-16 per term.
            assert!(
                (got - want).abs() <= 1e-12 * want.max(1.0),
                "{n}: {got} against {want}"
            );
            assert_eq!(
                got.to_bits(),
                sum_of_squares(&v).to_bits(),
                "same bits twice"
            );
        }
    }
}
