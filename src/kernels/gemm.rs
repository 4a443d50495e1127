//! Float32 matrix products `C = A·B (+ bias)` for the model's projections, on the host.
//!
//! Written here because the projections of vHeat have a short inner dimension (K = 96…768
//! against M = B·H·W in the tens of thousands), where the `gemm` crate under Burn's flex
//! backend reached 32–70 GFLOP/s on this project's 2-core AVX-512 machine and MKL (PyTorch)
//! 80–150 on the same shapes, measured side by side. `B` (the weight) is packed once per call
//! into panels of [`NR`] columns, `A` is read in place, and an 8 × 32 tile of `C` is kept in
//! registers while `K` streams through (AVX-512: sixteen 512-bit sums; AVX2, with half the
//! registers: 6 × 16, 6 × 16 and 2 × 32 passes of twelve, twelve and eight 256-bit sums), in
//! blocks of [`KC`] so that the panel stays in the first-level caches, and stored straight into
//! the output.
//! Rows are split over the rayon pool. The AVX-512 and AVX2 kernels use fused multiply-adds;
//! the portable one is plain loops.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use super::buffer::zeroed;
use rayon::prelude::*;

use super::isa::{active, Isa};

/// Columns per packed panel (two 512-bit vectors).
pub(crate) const NR: usize = 32;
/// Rows per register tile.
const MR: usize = 8;
/// Inner-dimension block.
const KC: usize = 256;
/// Bytes of packed `B` visited per row block: panels are grouped to stay near this size.
const PANEL_GROUP_BYTES: usize = 256 * 1024;

/// `B` (`k × n`) packed as `⌈n/NR⌉` panels of `k × NR` values, zero-padded on the right.
pub(crate) struct PackedB {
    k: usize,
    n: usize,
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

    fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }

    /// Rows `kc0..kc0+kc` of panel `p`.
    fn panel(&self, p: usize, kc0: usize) -> &[f32] {
        &self.data[(p * self.k + kc0) * NR..]
    }
}

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
/// first: zeroing a large output beforehand was a separate pass over memory.
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

/// A raw pointer that tasks writing disjoint parts of one buffer can share.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(pub(crate) *mut f32);
// SAFETY: every task writes a part of the buffer no other task touches (see `mix_along`).
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The pointer (a method, so that closures capture the whole `Sync` wrapper).
    pub(crate) fn ptr(self) -> *mut f32 {
        self.0
    }
}

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
                                tile_avx512_store(a_block, lda, panel, kc, to);
                            } else {
                                tile_avx2_store(a_block, lda, panel, NR, kc, to);
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

/// Where a register tile's sums go: `rows` rows and `cols` columns at `dst`, rows `ldd`
/// apart, plus `bias` (the tile's columns' values) or, with `accumulate`, plus what `dst`
/// holds. Lanes outside the rows and columns are neither read nor written.
#[derive(Clone, Copy)]
struct TileOut<'a> {
    dst: *mut f32,
    ldd: usize,
    rows: usize,
    cols: usize,
    bias: Option<&'a [f32]>,
    accumulate: bool,
}

/// `tile[r][j] = Σ_kk a[r·lda + kk] · panel[kk·ldb + j]` for `r < MR`, `j < NR`, `kk < kc`.
fn tile_product(
    isa: Isa,
    a: &[f32],
    lda: usize,
    panel: &[f32],
    ldb: usize,
    kc: usize,
    tile: &mut [f32; MR * NR],
) {
    assert!(a.len() >= (MR - 1) * lda + kc && ldb >= NR);
    assert!(kc == 0 || panel.len() >= (kc - 1) * ldb + NR);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `active` reported AVX-512F; the bounds were asserted above.
        Isa::Avx512 => unsafe { tile_avx512(a.as_ptr(), lda, panel.as_ptr(), ldb, kc, tile) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `active` reported AVX2 and FMA; the bounds were asserted above.
        Isa::Avx2 => unsafe {
            let to = TileOut {
                dst: tile.as_mut_ptr(),
                ldd: NR,
                rows: MR,
                cols: NR,
                bias: None,
                accumulate: false,
            };
            tile_avx2_store(a.as_ptr(), lda, panel.as_ptr(), ldb, kc, to)
        },
        _ => tile_portable(a, lda, panel, ldb, kc, tile),
    }
}

fn tile_portable(
    a: &[f32],
    lda: usize,
    panel: &[f32],
    ldb: usize,
    kc: usize,
    tile: &mut [f32; MR * NR],
) {
    tile.fill(0.0);
    for kk in 0..kc {
        let b = &panel[kk * ldb..kk * ldb + NR];
        for r in 0..MR {
            let av = a[r * lda + kk];
            for (t, &bv) in tile[r * NR..(r + 1) * NR].iter_mut().zip(b) {
                *t += av * bv;
            }
        }
    }
}

/// The 8 × 32 tile's sums in sixteen registers (row `r`: `c[2r]`, `c[2r + 1]`), the terms
/// added in order of `kk`: the loop both AVX-512 tile kernels share.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile_sums_avx512(
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    kc: usize,
) -> [std::arch::x86_64::__m512; 2 * MR] {
    use std::arch::x86_64::*;
    let mut c = [_mm512_setzero_ps(); 2 * MR];
    for kk in 0..kc {
        let b0 = _mm512_loadu_ps(b.add(kk * ldb));
        let b1 = _mm512_loadu_ps(b.add(kk * ldb + 16));
        for r in 0..MR {
            let av = _mm512_set1_ps(*a.add(r * lda + kk));
            c[2 * r] = _mm512_fmadd_ps(av, b0, c[2 * r]);
            c[2 * r + 1] = _mm512_fmadd_ps(av, b1, c[2 * r + 1]);
        }
    }
    c
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512(
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    kc: usize,
    tile: &mut [f32; MR * NR],
) {
    use std::arch::x86_64::*;
    let c = tile_sums_avx512(a, lda, b, ldb, kc);
    let t = tile.as_mut_ptr();
    for r in 0..MR {
        _mm512_storeu_ps(t.add(r * NR), c[2 * r]);
        _mm512_storeu_ps(t.add(r * NR + 16), c[2 * r + 1]);
    }
}

/// As [`tile_avx512`] with the packed panel (`ldb = NR`), written straight to where `to` says:
/// saves the tile's copy through memory.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512_store(a: *const f32, lda: usize, b: *const f32, kc: usize, to: TileOut) {
    use std::arch::x86_64::*;
    let TileOut {
        dst,
        ldd,
        rows,
        cols,
        bias,
        accumulate,
    } = to;
    let c = tile_sums_avx512(a, lda, b, NR, kc);
    // Lanes of the two halves that hold real columns.
    let lanes = |n: usize| -> __mmask16 { ((1u32 << n.min(16)) - 1) as __mmask16 };
    let (m0, m1) = (lanes(cols), lanes(cols.saturating_sub(16)));
    let (add0, add1) = match bias {
        Some(bias) => (
            _mm512_maskz_loadu_ps(m0, bias.as_ptr()),
            _mm512_maskz_loadu_ps(m1, bias.as_ptr().add(16)),
        ),
        None => (_mm512_setzero_ps(), _mm512_setzero_ps()),
    };
    for r in 0..rows.min(MR) {
        let d = dst.add(r * ldd);
        let (mut v0, mut v1) = (
            _mm512_add_ps(c[2 * r], add0),
            _mm512_add_ps(c[2 * r + 1], add1),
        );
        if accumulate {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, d));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, d.add(16)));
        }
        _mm512_mask_storeu_ps(d, m0, v0);
        _mm512_mask_storeu_ps(d.add(16), m1, v1);
    }
}

/// The sums of an `R`-row × `8·V`-column tile in `R·V` 256-bit registers (row `r`, columns
/// `8v..8v + 8`: `c[r][v]`), the terms added in order of `kk`: rows of `a` are `lda` apart,
/// rows of `b` `ldb` apart.
///
/// AVX2 has sixteen vector registers, so a tile keeps at most twelve sums besides the `V`
/// values of `b` and the broadcast `a`: 6 × 16 (twelve sums, eight loads per twelve
/// multiply-adds) and 2 × 32 (eight sums) are the shapes [`tile_avx2_store`] uses.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile_sums_avx2<const R: usize, const V: usize>(
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    kc: usize,
) -> [[std::arch::x86_64::__m256; V]; R] {
    use std::arch::x86_64::*;
    let mut c = [[_mm256_setzero_ps(); V]; R];
    for kk in 0..kc {
        let mut bv = [_mm256_setzero_ps(); V];
        for (v, b_v) in bv.iter_mut().enumerate() {
            *b_v = _mm256_loadu_ps(b.add(kk * ldb + 8 * v));
        }
        for (r, c_r) in c.iter_mut().enumerate() {
            let av = _mm256_broadcast_ss(&*a.add(r * lda + kk));
            for (c_rv, &b_v) in c_r.iter_mut().zip(&bv) {
                *c_rv = _mm256_fmadd_ps(av, b_v, *c_rv);
            }
        }
    }
    c
}

/// Writes the sums `c` (row `r`, columns `8v..8v + 8`: `c[r][v]`) as `to` says.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn store_avx2<const R: usize, const V: usize>(
    c: &[[std::arch::x86_64::__m256; V]; R],
    to: TileOut,
) {
    use std::arch::x86_64::*;
    for v in 0..V {
        let j = 8 * v;
        let lanes = to.cols.saturating_sub(j).min(8);
        if lanes == 0 {
            break;
        }
        // Lane i is on (sign bit set) when i < lanes.
        let mask = _mm256_cmpgt_epi32(
            _mm256_set1_epi32(lanes as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        );
        let add = match to.bias {
            Some(bias) => _mm256_maskload_ps(bias.as_ptr().add(j), mask),
            None => _mm256_setzero_ps(),
        };
        for (r, c_r) in c.iter().enumerate().take(to.rows) {
            let d = to.dst.add(r * to.ldd + j);
            let mut value = _mm256_add_ps(c_r[v], add);
            if lanes == 8 {
                if to.accumulate {
                    value = _mm256_add_ps(value, _mm256_loadu_ps(d));
                }
                _mm256_storeu_ps(d, value);
            } else {
                if to.accumulate {
                    value = _mm256_add_ps(value, _mm256_maskload_ps(d, mask));
                }
                _mm256_maskstore_ps(d, mask, value);
            }
        }
    }
}

/// The AVX2 counterpart of [`tile_avx512_store`]: the 8 × 32 tile `A·B` (rows of `a` `lda`
/// apart, rows of `b` `ldb` apart, `kc` terms), written as `to` says.
///
/// Sixteen 256-bit registers hold at most twelve sums next to their operands, so the tile is
/// computed in three passes over `kc`: rows 0–5 × columns 0–15, rows 0–5 × columns 16–31 (6 ×
/// 16 tiles: eight loads per twelve multiply-adds) and rows 6–7 × columns 0–31 (2 × 32).
/// Passes whose rows or columns are all outside the tile are skipped, and a tile of at most
/// two rows takes the 2 × 32 pass alone. (The earlier four 4 × 16 passes through a tile in
/// memory kept eight sums each; capped at AVX2, this made the vHeat-T points 1.03–1.16×
/// faster, side by side.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2_store(
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    kc: usize,
    to: TileOut,
) {
    const TOP: usize = 6;
    let rows = to.rows.min(MR);
    // Rows 0–5 in the two 6 × 16 passes, the rest in the 2 × 32 one; a tile of at most two
    // rows (batch 1's 7 × 7 maps leave one) takes the 2 × 32 pass alone.
    let top = if rows <= MR - TOP { 0 } else { rows.min(TOP) };
    for col0 in [0, 16] {
        if top > 0 && col0 < to.cols {
            let c = tile_sums_avx2::<TOP, 2>(a, lda, b.add(col0), ldb, kc);
            let part = TileOut {
                dst: to.dst.add(col0),
                rows: top,
                cols: to.cols - col0,
                bias: to.bias.map(|bias| &bias[col0..]),
                ..to
            };
            store_avx2(&c, part);
        }
    }
    if rows > top {
        let c = tile_sums_avx2::<{ MR - TOP }, 4>(a.add(top * lda), lda, b, ldb, kc);
        let part = TileOut {
            dst: to.dst.add(top * to.ldd),
            rows: rows - top,
            ..to
        };
        store_avx2(&c, part);
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
