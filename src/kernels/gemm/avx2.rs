//! The 8 × 32 register tile with AVX2 and FMA, in passes that fit sixteen 256-bit registers.

use super::{TileOut, MR};

/// The sums of an `R`-row × `8·V`-column tile in `R·V` 256-bit registers (row `r`, columns
/// `8v..8v + 8`: `c[r][v]`), the terms added in order of `kk`: rows of `a` are `lda` apart,
/// rows of `b` `ldb` apart.
///
/// AVX2 has sixteen vector registers, so a tile keeps at most twelve sums besides the `V`
/// values of `b` and the broadcast `a`: 6 × 16 (twelve sums, eight loads per twelve
/// multiply-adds) and 2 × 32 (eight sums) are the shapes `tile_avx2_store` uses.
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

/// The AVX2 counterpart of `avx512::tile_avx512_store`: the 8 × 32 tile `A·B` (rows of `a` `lda`
/// apart, rows of `b` `ldb` apart, `kc` terms), written as `to` says.
///
/// Sixteen 256-bit registers hold at most twelve sums next to their operands, so the tile is
/// computed in three passes over `kc`: rows 0–5 × columns 0–15, rows 0–5 × columns 16–31 (6 ×
/// 16 tiles: eight loads per twelve multiply-adds) and rows 6–7 × columns 0–31 (2 × 32).
/// Passes whose rows or columns are all outside the tile are skipped, and a tile of at most
/// two rows takes the 2 × 32 pass alone. Keeping twelve sums per pass (rather than eight in
/// four 4 × 16 passes) means fewer loads per multiply-add.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn tile_avx2_store(
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
