//! A small matrix applied along the middle axis of a tensor read in place: the DCTs and the
//! resampling matrices.

use rayon::prelude::*;

use super::{tile_product, SharedOut, KC, MR, NR};
use crate::kernels::isa::{active, Isa};

/// The longest axis [`mix_along`] handles (one inner-dimension block, no `KC` splitting).
pub(crate) const MIX_MAX_AXIS: usize = KC;

/// `y[b, i, j] = Σ_t a[i, t] · x[b, t, j]` for `x` `[before, n, after]` and `a` `[m, n]`
/// (a matrix applied along the middle axis, as the DCTs and resampling do), without copying
/// `x`: each 32-column strip of `x[b]` is read in place as the product's right operand.
/// Needs `n ≤ MIX_MAX_AXIS`.
pub(crate) fn mix_along(
    x: &[f32],
    [before, n, after]: [usize; 3],
    a: &[f32],
    m: usize,
) -> Vec<f32> {
    assert!(n <= MIX_MAX_AXIS && x.len() >= before * n * after && a.len() >= m * n);
    if before == 0 || m == 0 || after == 0 {
        return Vec::new();
    }
    // Written once by the tasks below, into memory not cleared first (as `gemm_with`).
    let mut out = Vec::<f32>::with_capacity(before * m * after);
    let isa = active();
    let a = RowTiles::new(a, m, n);
    let panels = after.div_ceil(NR);
    let threads = rayon::current_num_threads().max(1);
    let per_task = (before * panels).div_ceil(threads * 8).clamp(1, panels);
    let chunks = panels.div_ceil(per_task);
    let shared = SharedOut(out.as_mut_ptr());
    (0..before * chunks).into_par_iter().for_each(|task| {
        let (b, chunk) = (task / chunks, task % chunks);
        let xb = &x[b * n * after..(b + 1) * n * after];
        let panels = chunk * per_task..((chunk + 1) * per_task).min(panels);
        let mut strip = Vec::new();
        mix_panels(isa, &a, xb, after, panels, &mut strip, |row, j0, values| {
            let at = b * m * after + row * after + j0;
            // SAFETY: `at..at + values.len()` is row `row`, columns j0.., of item b: inside
            // `out`, and written by this task alone (tasks own distinct (b, panel)s).
            unsafe {
                std::ptr::copy_nonoverlapping(values.as_ptr(), shared.ptr().add(at), values.len());
            }
        });
    });
    // SAFETY: the tasks cover every (item, panel), and `mix_panels` stores every row of each
    // panel it is given, so all before × m × after values were written.
    unsafe { out.set_len(before * m * after) };
    out
}

/// An `m × n` matrix (`n ≤ MIX_MAX_AXIS`) stored with zero rows below, a whole number of
/// [`MR`]-row tiles: the left operand of [`mix_panels`].
pub(crate) struct RowTiles {
    m: usize,
    n: usize,
    data: Vec<f32>,
}

impl RowTiles {
    /// `a` row-major `m × n`.
    pub(crate) fn new(a: &[f32], m: usize, n: usize) -> Self {
        assert!(n <= MIX_MAX_AXIS && a.len() >= m * n);
        let mut data = vec![0.0f32; m.div_ceil(MR) * MR * n.max(1)];
        data[..m * n].copy_from_slice(&a[..m * n]);
        Self { m, n, data }
    }

    /// `aᵀ` of a row-major `n × m` matrix `a`.
    pub(crate) fn transposed(a: &[f32], n: usize, m: usize) -> Self {
        assert!(a.len() >= n * m);
        let t: Vec<f32> = (0..m * n).map(|i| a[(i % n) * m + i / n]).collect();
        Self::new(&t, m, n)
    }
}

/// `Σ_t a[i, t] · x[t, j]` for the 32-column panels `panels` of `x` (`n × after`, row-major,
/// read in place when a panel is whole, else through `strip`): each finished row piece is
/// handed to `store(i, j0, values)` (row `i`, columns `j0..j0 + values.len()`), once per
/// (row, panel), in order of panels, then rows.
pub(crate) fn mix_panels(
    isa: Isa,
    a: &RowTiles,
    x: &[f32],
    after: usize,
    panels: std::ops::Range<usize>,
    strip: &mut Vec<f32>,
    mut store: impl FnMut(usize, usize, &[f32]),
) {
    let (m, n) = (a.m, a.n);
    assert!(x.len() >= n * after);
    let mut tile = [0.0f32; MR * NR];
    for p in panels {
        let j0 = p * NR;
        let cols = NR.min(after - j0);
        let (panel, ldb): (&[f32], usize) = if cols == NR {
            (&x[j0..], after)
        } else {
            strip.clear();
            strip.resize(n * NR, 0.0);
            for t in 0..n {
                strip[t * NR..t * NR + cols]
                    .copy_from_slice(&x[t * after + j0..t * after + j0 + cols]);
            }
            (&strip[..], NR)
        };
        for r0 in (0..m).step_by(MR) {
            tile_product(isa, &a.data[r0 * n..], n, panel, ldb, n, &mut tile);
            for r in 0..MR.min(m - r0) {
                store(r0 + r, j0, &tile[r * NR..r * NR + cols]);
            }
        }
    }
}
