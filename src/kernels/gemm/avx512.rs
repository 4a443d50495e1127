//! The 8 × 32 register tile with AVX-512: sixteen 512-bit sums, fused multiply-adds.

use super::{TileOut, MR, NR};

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
pub(super) unsafe fn tile_avx512(
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
pub(super) unsafe fn tile_avx512_store(
    a: *const f32,
    lda: usize,
    b: *const f32,
    kc: usize,
    to: TileOut,
) {
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
