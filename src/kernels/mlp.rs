//! The block's MLP, `fc2(GELU(fc1(x)))`, as one pass over row chunks for inference.
//!
//! Composed, the MLP writes its hidden activations (`M × 4C`, the largest tensor of the
//! network: 38 MiB for vHeat-T's first stage at batch 8) to fresh memory, reads them back for
//! GELU, writes them again and reads them once more for `fc2`; a buffer that large is mapped
//! fresh from the system on every allocation, so it also costs a page fault per 4 KiB. Here
//! each task takes a chunk of rows, computes its hidden activations into a buffer of its own
//! thread that stays in cache and is reused, applies GELU there, and multiplies by `fc2`
//! straight into the output. The weights are read once per chunk instead, so chunks have at
//! least `C` rows, where both costs are equal ([`chunk_rows`]).

use std::cell::RefCell;

use rayon::prelude::*;

use super::activation::gelu_slice;
use super::gemm::{gemm_serial, gemm_serial_uninit, PackedB};

/// Rows per chunk for `C` input channels: `C` (weight traffic per chunk equal to the hidden
/// traffic it saves), at least 64 and at most 512, a multiple of 8.
pub(crate) fn chunk_rows(c: usize) -> usize {
    c.clamp(64, 512).div_ceil(8) * 8
}

/// Whether `m` rows of `c` channels make enough chunks to keep `threads` threads busy (two
/// each); otherwise the unfused projections, which split their columns, are the better choice.
pub(crate) fn worth_fusing(m: usize, c: usize, threads: usize) -> bool {
    m / chunk_rows(c) >= 2 * threads.max(1)
}

/// `GELU(x·B₁ + b₁)·B₂ + b₂` for `x` row-major `m × C`, with `fc1` packed as `B₁` (`C × H`) and
/// `fc2` as `B₂` (`H × N`): the row-major `m × N` result.
///
/// # Panics
/// If the shapes disagree.
pub(crate) fn mlp(
    x: &[f32],
    m: usize,
    fc1: &PackedB,
    b1: &[f32],
    fc2: &PackedB,
    b2: &[f32],
) -> Vec<f32> {
    let (c, hidden, n) = (fc1.inner(), fc1.cols(), fc2.cols());
    assert!(x.len() >= m * c && fc2.inner() == hidden && b1.len() >= hidden && b2.len() >= n);
    thread_local! {
        /// The hidden activations of the chunk this thread works on, kept between calls.
        static HIDDEN: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    }
    let rows = chunk_rows(c);
    if m == 0 || n == 0 {
        return Vec::new();
    }
    // Each chunk's rows are written once, by `fc2`'s product, into memory not cleared first.
    let mut out = Vec::<f32>::with_capacity(m * n);
    out.spare_capacity_mut()[..m * n]
        .par_chunks_mut(rows * n)
        .enumerate()
        .for_each(|(t, out)| {
            let (row0, count) = (t * rows, out.len() / n);
            HIDDEN.with_borrow_mut(|h| {
                h.resize(rows * hidden, 0.0);
                let h = &mut h[..count * hidden];
                gemm_serial(&x[row0 * c..(row0 + count) * c], count, fc1, Some(b1), h);
                gelu_slice(h);
                gemm_serial_uninit(h, count, fc2, Some(b2), out);
            });
        });
    // SAFETY: the chunks cover all m·n values and `gemm_serial_uninit` writes every value of
    // its `count × n` rows.
    unsafe { out.set_len(m * n) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_have_at_least_c_rows_within_bounds() {
        assert_eq!(chunk_rows(16), 64);
        assert_eq!(chunk_rows(96), 96);
        assert_eq!(chunk_rows(100), 104);
        assert_eq!(chunk_rows(768), 512);
        assert!(worth_fusing(25088, 96, 2));
        assert!(!worth_fusing(196, 384, 2));
    }
}
