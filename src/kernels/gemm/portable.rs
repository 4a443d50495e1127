//! The register tile in plain loops: every machine, and the reference the vector tiles are
//! tested against.

use super::{MR, NR};

pub(super) fn tile_portable(
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
