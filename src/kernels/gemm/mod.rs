//! Float32 matrix products `C = A·B (+ bias)` on the host: the model's projections, the
//! convolutions' patch products and the DCTs.
//!
//! Written here because the projections of vHeat have a short inner dimension (K = 96…768)
//! against a long outer one (M = B·H·W, tens of thousands of rows), a shape that
//! general-purpose products (the `gemm` crate under Burn's flex backend) are not tuned for.
//! `B` (the weight) is packed once into panels of [`NR`] columns ([`PackedB`], `packing.rs`;
//! kept per weight buffer by `packed_cache.rs`), `A` is read in place, and an 8 × 32 tile of
//! `C` is kept in registers while `K` streams through, in blocks of `KC` so that the panel
//! stays in the first-level caches, and stored straight into the output (`driver.rs`). Rows are
//! split over the rayon pool.
//!
//! One file per instruction family's tile: `avx512.rs` (sixteen 512-bit sums), `avx2.rs` (with
//! half the registers: 6 × 16, 6 × 16 and 2 × 32 passes of twelve, twelve and eight 256-bit
//! sums), both with fused multiply-adds, and `portable.rs` (plain loops). `mix.rs` applies a
//! small matrix along the middle axis of a tensor read in place (the DCTs);
//! `transposed_product.rs` is the weight gradient's `aᵀ·b` over a long inner dimension.

mod avx2;
mod avx512;
mod driver;
mod mix;
#[cfg(feature = "flex")]
pub(crate) mod packed_cache;
mod packing;
mod portable;
pub(crate) mod transposed_product;

pub(crate) use driver::{gemm, gemm_serial, gemm_serial_uninit, gemm_with};
pub(crate) use mix::{mix_along, mix_panels, RowTiles, MIX_MAX_AXIS};
pub(crate) use packing::PackedB;

use crate::kernels::isa::Isa;

/// Columns per packed panel (two 512-bit vectors).
pub(crate) const NR: usize = 32;
/// Rows per register tile.
pub(crate) const MR: usize = 8;
/// Inner-dimension block.
pub(crate) const KC: usize = 256;
/// Bytes of packed `B` visited per row block: panels are grouped to stay near this size.
pub(crate) const PANEL_GROUP_BYTES: usize = 256 * 1024;

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

/// Where a register tile's sums go: `rows` rows and `cols` columns at `dst`, rows `ldd`
/// apart, plus `bias` (the tile's columns' values) or, with `accumulate`, plus what `dst`
/// holds. Lanes outside the rows and columns are neither read nor written.
#[derive(Clone, Copy)]
pub(crate) struct TileOut<'a> {
    dst: *mut f32,
    ldd: usize,
    rows: usize,
    cols: usize,
    bias: Option<&'a [f32]>,
    accumulate: bool,
}

/// `tile[r][j] = Σ_kk a[r·lda + kk] · panel[kk·ldb + j]` for `r < MR`, `j < NR`, `kk < kc`.
pub(crate) fn tile_product(
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
        Isa::Avx512 => unsafe {
            avx512::tile_avx512(a.as_ptr(), lda, panel.as_ptr(), ldb, kc, tile)
        },
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
            avx2::tile_avx2_store(a.as_ptr(), lda, panel.as_ptr(), ldb, kc, to)
        },
        _ => portable::tile_portable(a, lda, panel, ldb, kc, tile),
    }
}
