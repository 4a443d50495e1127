//! The right operand `B` of the product packed as panels of [`NR`] columns, the layout the
//! register tiles read.

use rayon::prelude::*;

use super::NR;
use crate::kernels::runtime::buffer::zeroed;

/// `B` (`k × n`) packed as `⌈n/NR⌉` panels of `k × NR` values, zero-padded on the right.
pub(crate) struct PackedB {
    pub(super) k: usize,
    pub(super) n: usize,
    data: Vec<f32>,
}

impl PackedB {
    /// `B` (`k × n`) with each panel filled by `fill(j0, cols, panel)`: its columns
    /// `j0..j0 + cols` into the `k × NR` zeroed `panel` (row `kk` at `kk·NR`), one panel per
    /// task on the pool.
    fn by_panel(k: usize, n: usize, fill: impl Fn(usize, usize, &mut [f32]) + Sync) -> Self {
        let panels = n.div_ceil(NR);
        let mut data = zeroed(panels * k * NR);
        data.par_chunks_mut((k * NR).max(1))
            .enumerate()
            .for_each(|(p, panel)| fill(p * NR, NR.min(n - p * NR), panel));
        Self { k, n, data }
    }

    /// `B` given row-major (`b[kk·n + j]`): each panel row is one contiguous copy.
    pub(crate) fn from_row_major(b: &[f32], k: usize, n: usize) -> Self {
        Self::by_panel(k, n, |j0, cols, panel| {
            for kk in 0..k {
                panel[kk * NR..kk * NR + cols].copy_from_slice(&b[kk * n + j0..kk * n + j0 + cols]);
            }
        })
    }

    /// `B = Wᵀ` for a row-major `w` of shape `n × k` (`B(kk, j) = w[j·k + kk]`): each row of
    /// `w` is read in order and scattered down one column of its panel.
    pub(crate) fn from_transposed(w: &[f32], k: usize, n: usize) -> Self {
        Self::by_panel(k, n, |j0, cols, panel| {
            for jj in 0..cols {
                let row = &w[(j0 + jj) * k..(j0 + jj + 1) * k];
                for (kk, &v) in row.iter().enumerate() {
                    panel[kk * NR + jj] = v;
                }
            }
        })
    }

    /// `B(kk, j) = value(kk, j)` for `kk < k`, `j < n`: for weights stored in another order
    /// (a convolution's taps), packed straight from the stored tensor.
    pub(crate) fn from_fn(k: usize, n: usize, value: impl Fn(usize, usize) -> f32 + Sync) -> Self {
        Self::by_panel(k, n, |j0, cols, panel| {
            for (kk, row) in panel.chunks_exact_mut(NR).enumerate() {
                for (jj, v) in row[..cols].iter_mut().enumerate() {
                    *v = value(kk, j0 + jj);
                }
            }
        })
    }

    /// Rows of `B` (the product's inner dimension).
    pub(crate) fn inner(&self) -> usize {
        self.k
    }

    /// Columns of `B` (of the product).
    pub(crate) fn cols(&self) -> usize {
        self.n
    }

    pub(super) fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }

    /// Rows `kc0..kc0+kc` of panel `p`.
    pub(super) fn panel(&self, p: usize, kc0: usize) -> &[f32] {
        &self.data[(p * self.k + kc0) * NR..]
    }
}
