//! The product's driver: how `A·B` is cut into tasks over the rayon pool and into register
//! tiles over the packed panels, and where each tile's sums are stored.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::{tile_product, PackedB, SharedOut, TileOut, KC, MR, NR, PANEL_GROUP_BYTES};
use crate::kernels::isa::{active, Isa};

/// `A·B + bias` with `A` row-major `m × k`: the row-major `m × n` result.
pub(crate) fn gemm(a: &[f32], m: usize, b: &PackedB, bias: Option<&[f32]>) -> Vec<f32> {
    let k = b.k;
    assert!(a.len() >= m * k, "gemm operand sizes");
    gemm_with(m, b, bias, |row0, rows| {
        Cow::Borrowed(&a[row0 * k..(row0 + rows) * k])
    })
}

/// As [`gemm`], with the rows of `A` produced per task by `rows_of(row0, rows)` (`rows × k`
/// values, row-major): borrowed from a matrix, or built on the fly (a convolution's patches),
/// so that `A` never exists whole.
///
/// The result is written once, by the tasks that compute it, into memory nobody cleared
/// first: zeroing it beforehand would be one more pass over memory.
pub(crate) fn gemm_with<'a>(
    m: usize,
    b: &PackedB,
    bias: Option<&[f32]>,
    rows_of: impl Fn(usize, usize) -> Cow<'a, [f32]> + Sync,
) -> Vec<f32> {
    let (k, n) = (b.k, b.n);
    if m == 0 || n == 0 {
        return Vec::new();
    }
    if k == 0 {
        let mut out = vec![0.0f32; m * n];
        bias_only(&mut out, n, bias);
        return out;
    }
    let mut out = Vec::<f32>::with_capacity(m * n);
    let isa = active();
    // About four tasks per thread. Rows are cut into chunks of at least MIN_TASK_ROWS (each
    // chunk reads all of B once); when that gives too few chunks (a short A: batch 1, late
    // stages), the columns are split as well, so that B is still read about once in all.
    let want = rayon::current_num_threads().max(1) * 4;
    let row_chunks = m.div_ceil(MIN_TASK_ROWS).clamp(1, want);
    let rows_per_task = m.div_ceil(row_chunks).div_ceil(MR) * MR;
    let row_chunks = m.div_ceil(rows_per_task);
    let panels = b.panels();
    let panels_per_task = panels.div_ceil(want.div_ceil(row_chunks).clamp(1, panels));
    let col_groups = panels.div_ceil(panels_per_task);
    let shared = SharedOut(out.as_mut_ptr());
    (0..row_chunks * col_groups)
        .into_par_iter()
        .for_each(|task| {
            let (chunk, group) = (task / col_groups, task % col_groups);
            let row0 = chunk * rows_per_task;
            let rows = rows_per_task.min(m - row0);
            let panels = group * panels_per_task..((group + 1) * panels_per_task).min(panels);
            let a = rows_of(row0, rows);
            assert!(a.len() >= rows * k, "rows of A");
            // SAFETY: this task writes rows row0.. row0 + rows, columns of `panels`, of the
            // m × n values `out` has room for, and no other task writes them.
            unsafe { gemm_block(isa, &a, rows, b, bias, panels, shared, row0 * n) };
        });
    // SAFETY: the tasks cover every row chunk × column group, and `gemm_block` writes every
    // value of its rows and panels' columns (its contract), so all m·n values are written.
    unsafe { out.set_len(m * n) };
    out
}

/// `out = A·B + bias` on the calling thread (no tasks): for callers that already split the
/// work, such as the fused MLP.
pub(crate) fn gemm_serial(a: &[f32], m: usize, b: &PackedB, bias: Option<&[f32]>, out: &mut [f32]) {
    assert!(out.len() >= m * b.n, "gemm operand sizes");
    // SAFETY: `out` holds the m × n result (asserted) and is borrowed mutably here alone.
    unsafe { gemm_serial_raw(a, m, b, bias, SharedOut(out.as_mut_ptr())) }
}

/// As [`gemm_serial`] into memory not yet written (every value of the `m × n` result is).
pub(crate) fn gemm_serial_uninit(
    a: &[f32],
    m: usize,
    b: &PackedB,
    bias: Option<&[f32]>,
    out: &mut [MaybeUninit<f32>],
) {
    assert!(out.len() >= m * b.n, "gemm operand sizes");
    // SAFETY: as in `gemm_serial`; the values are only written, never read before.
    unsafe { gemm_serial_raw(a, m, b, bias, SharedOut(out.as_mut_ptr().cast())) }
}

/// # Safety
/// `out` must point at room for `m × b.n` values that nothing else touches during the call.
unsafe fn gemm_serial_raw(a: &[f32], m: usize, b: &PackedB, bias: Option<&[f32]>, out: SharedOut) {
    let (k, n) = (b.k, b.n);
    assert!(a.len() >= m * k, "gemm operand sizes");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for r in 0..m {
            for j in 0..n {
                let v = bias.map_or(0.0, |bias| bias[j]);
                // SAFETY: row r, column j of the m × n values (the caller's contract).
                unsafe { out.ptr().add(r * n + j).write(v) };
            }
        }
        return;
    }
    // SAFETY: the caller's contract.
    unsafe { gemm_block(active(), a, m, b, bias, 0..b.panels(), out, 0) };
}

/// The product with an empty inner dimension: every row of `out` (`n` wide) is `bias`, or 0.
fn bias_only(out: &mut [f32], n: usize, bias: Option<&[f32]>) {
    for row in out.chunks_exact_mut(n) {
        match bias {
            Some(bias) => row.copy_from_slice(bias),
            None => row.fill(0.0),
        }
    }
}

/// Fewest rows of A per task in [`gemm`].
const MIN_TASK_ROWS: usize = 64;

/// One task's block: rows of `a` (`m × k`) times the panels `panels` of `b`, written to the
/// rows of `out` starting at element `at` (row stride `b.n`). Every value of those rows and
/// the panels' columns is written (the first inner block stores, later ones add), so `out`
/// may start unwritten.
///
/// # Safety
/// `out.ptr().add(at)` must start room for `m` rows of `b.n` values inside one buffer, whose
/// columns of `panels` no other thread touches during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_block(
    isa: Isa,
    a: &[f32],
    m: usize,
    b: &PackedB,
    bias: Option<&[f32]>,
    panels: std::ops::Range<usize>,
    out: SharedOut,
    at: usize,
) {
    let (k, n) = (b.k, b.n);
    let mut tile = [0.0f32; MR * NR];
    let mut pad = vec![0.0f32; MR * KC.min(k)];
    for kc0 in (0..k).step_by(KC) {
        let kc = KC.min(k - kc0);
        let group = (PANEL_GROUP_BYTES / (kc * NR * 4)).max(1);
        for p0 in panels.clone().step_by(group) {
            for r0 in (0..m).step_by(MR) {
                let rows = MR.min(m - r0);
                // The A block: in place when whole, else copied with zero rows below.
                let (a_block, lda) = if rows == MR {
                    (&a[r0 * k + kc0..], k)
                } else {
                    pad.fill(0.0);
                    for r in 0..rows {
                        pad[r * kc..(r + 1) * kc]
                            .copy_from_slice(&a[(r0 + r) * k + kc0..(r0 + r) * k + kc0 + kc]);
                    }
                    (&pad[..], kc)
                };
                for p in p0..(p0 + group).min(panels.end) {
                    let cols = NR.min(n - p * NR);
                    #[cfg(target_arch = "x86_64")]
                    if matches!(isa, Isa::Avx512 | Isa::Avx2) {
                        let panel = b.panel(p, kc0);
                        assert!(a_block.len() >= (MR - 1) * lda + kc && panel.len() >= kc * NR);
                        let bias = match (kc0, bias) {
                            (0, Some(bias)) => Some(&bias[p * NR..p * NR + cols]),
                            _ => None,
                        };
                        let (a_block, panel) = (a_block.as_ptr(), panel.as_ptr());
                        // SAFETY: the family's instructions are present (`active`); A and the
                        // panel hold what the kernels read (asserted); the destination rows
                        // r0.. r0 + rows, columns p·NR.. p·NR + cols, are this block's (the
                        // caller's contract).
                        unsafe {
                            let to = TileOut {
                                dst: out.ptr().add(at + r0 * n + p * NR),
                                ldd: n,
                                rows,
                                cols,
                                bias,
                                accumulate: kc0 > 0,
                            };
                            if isa == Isa::Avx512 {
                                super::avx512::tile_avx512_store(a_block, lda, panel, kc, to);
                            } else {
                                super::avx2::tile_avx2_store(a_block, lda, panel, NR, kc, to);
                            }
                        }
                        continue;
                    }
                    tile_product(isa, a_block, lda, b.panel(p, kc0), NR, kc, &mut tile);
                    for r in 0..rows {
                        // Row r0 + r, columns p·NR.. of this block (the caller's contract),
                        // written through the pointer: the first block (kc0 = 0) writes memory
                        // nobody wrote before, the later ones add to what it wrote.
                        // SAFETY: as above.
                        let dst = unsafe { out.ptr().add(at + (r0 + r) * n + p * NR) };
                        let src = &tile[r * NR..r * NR + cols];
                        for (j, &s) in src.iter().enumerate() {
                            // SAFETY: column j < cols of that row.
                            unsafe {
                                if kc0 > 0 {
                                    *dst.add(j) += s;
                                } else if let Some(bias) = bias {
                                    dst.add(j).write(s + bias[p * NR + j]);
                                } else {
                                    dst.add(j).write(s);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values as values;

    /// `A·B + bias` in float64, straight from the definition.
    fn reference(a: &[f32], b: &[f32], bias: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = bias[j] as f64;
                for kk in 0..k {
                    s += a[i * k + kk] as f64 * b[kk * n + j] as f64;
                }
                c[i * n + j] = s;
            }
        }
        c
    }

    #[test]
    fn matches_float64_on_every_path_and_edge_shape() {
        let _one = crate::kernels::isa::tests_lock();
        for isa in crate::kernels::isa::runnable() {
            crate::kernels::isa::force(Some(isa));
            for &(m, k, n) in &[
                (1, 1, 1),
                (7, 3, 5),
                (8, 32, 32),
                (9, 96, 33),
                (37, 300, 70),
                (130, 600, 97),
                (14, 40, 52),
                (64, 0, 5),
            ] {
                let a = values(m * k, 1);
                let b = values(k * n, 2);
                let bias = values(n, 3);
                let want = reference(&a, &b, &bias, m, k, n);
                let out = gemm(&a, m, &PackedB::from_row_major(&b, k, n), Some(&bias));
                assert_eq!(out.len(), m * n);
                // Sums of k products of values below 1: float32 accumulation error below
                // k · 2⁻²⁴ · (sum of |terms|) ≤ 6e-8 · k², and in practice ~√k times less.
                let tol = 1e-6 * (1.0 + k as f64);
                for (i, (&g, &w)) in out.iter().zip(&want).enumerate() {
                    assert!(
                        (g as f64 - w).abs() <= tol,
                        "{m}x{k}x{n} [{i}]: {g} vs {w} ({isa})"
                    );
                }
                // The transposed packing gives the same product.
                let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
                let out_t = gemm(&a, m, &PackedB::from_transposed(&bt, k, n), Some(&bias));
                assert_eq!(out, out_t);
            }
        }
        crate::kernels::isa::force(None);
    }
}
