//! Output buffers for the host kernels, made on the rayon pool.
//!
//! A kernel's output is a fresh `Vec<f32>`. Made with `vec![0.0; n]`, a large one is zeroed by
//! one thread before the parallel kernel starts: `calloc` clears a recycled heap block with a
//! serial `memset`, and a fresh mapping's pages are faulted in by whichever thread first
//! writes them: during a training step those serial zeroings and copies leave the pool idle.
//! [`zeroed`] and [`copied`] do the same work split over the pool, so both the stores and the
//! page faults run in parallel.
//! Small buffers (below [`PARALLEL_MIN`] values) take the plain serial way.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::CHUNK;

/// Values below which a buffer is made on the calling thread (parallel tasks cost more).
const PARALLEL_MIN: usize = 4 * CHUNK;

/// Fills `n` values of a fresh vector with `fill(start, chunk)` over chunks of [`CHUNK`]
/// values, in parallel; every value is written before the vector exists (`fill` must write
/// every value of its chunk).
pub(crate) fn filled(n: usize, fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync) -> Vec<f32> {
    filled_in_blocks(n, CHUNK, |i, chunk| fill(i * CHUNK, chunk)).0
}

/// A fresh vector of `n` values written block by block on the pool: `fill(index, block)` gets
/// the `index`-th run of `block` values (the last one shorter) and must write every value of
/// it; what each call returns comes back in block order. For kernels that write their whole
/// output (a norm, a convolution, a gradient): zeroing it first would be one more pass over
/// memory.
pub(crate) fn filled_in_blocks<R: Send>(
    n: usize,
    block: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>]) -> R + Sync,
) -> (Vec<f32>, Vec<R>) {
    let mut v = Vec::<f32>::with_capacity(n);
    let results = v.spare_capacity_mut()[..n]
        .par_chunks_mut(block.max(1))
        .enumerate()
        .map(|(i, chunk)| fill(i, chunk))
        .collect();
    // SAFETY: the first `n` values of the capacity were all initialised just above (the blocks
    // cover `..n` and `fill` writes every value of its block, the callers' contract).
    unsafe { v.set_len(n) };
    (v, results)
}

/// Writes `pattern` repeated over all of `dst` (whose length is a multiple of the pattern's)
/// and returns it as initialised values: a bias broadcast over a row of pixels, to which a
/// kernel then adds.
pub(crate) fn init_repeating<'a>(
    dst: &'a mut [MaybeUninit<f32>],
    pattern: &[f32],
) -> &'a mut [f32] {
    assert!(
        !pattern.is_empty() && dst.len().is_multiple_of(pattern.len()),
        "whole repeats"
    );
    for piece in dst.chunks_exact_mut(pattern.len()) {
        for (d, &p) in piece.iter_mut().zip(pattern) {
            d.write(p);
        }
    }
    // SAFETY: every value of `dst` was written just above (whole repeats, asserted), and
    // `MaybeUninit<f32>` has the layout of `f32`.
    unsafe { &mut *(dst as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// `n` zeros, written on the pool when `n` is large.
pub(crate) fn zeroed(n: usize) -> Vec<f32> {
    if n < PARALLEL_MIN {
        return vec![0.0; n];
    }
    filled(n, |_, chunk| chunk.fill(MaybeUninit::new(0.0)))
}

/// A copy of `src`, written on the pool when it is large.
pub(crate) fn copied(src: &[f32]) -> Vec<f32> {
    if src.len() < PARALLEL_MIN {
        return src.to_vec();
    }
    filled(src.len(), |start, chunk| {
        let len = chunk.len();
        for (d, &s) in chunk.iter_mut().zip(&src[start..start + len]) {
            *d = MaybeUninit::new(s);
        }
    })
}

/// The values of a strided view in row-major order: `shape` and `strides` (in values, may be
/// negative) over `data`, whose first value is at `offset`. Rows (the last axis) are gathered
/// on the pool.
///
/// # Panics
/// If the view reaches outside `data`.
pub(crate) fn gathered(
    data: &[f32],
    offset: usize,
    shape: &[usize],
    strides: &[isize],
) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let Some((&row_len, outer)) = shape.split_last() else {
        return vec![data[offset]];
    };
    if n == 0 {
        return Vec::new();
    }
    let step = strides[shape.len() - 1];
    // Where row `r` (row-major over `outer`) starts in `data`.
    let row_start = |mut r: usize| -> isize {
        let mut at = offset as isize;
        for (&len, &stride) in outer.iter().zip(strides).rev() {
            at += (r % len) as isize * stride;
            r /= len;
        }
        at
    };
    let gather_row = |r: usize, dst: &mut [MaybeUninit<f32>]| {
        let start = row_start(r);
        for (j, d) in dst.iter_mut().enumerate() {
            let at = start + j as isize * step;
            *d = MaybeUninit::new(data[usize::try_from(at).expect("a view inside its buffer")]);
        }
    };
    let mut v = Vec::<f32>::with_capacity(n);
    let rows_per_task = (CHUNK / row_len).max(1);
    let spare = &mut v.spare_capacity_mut()[..n];
    let task = |(t, block): (usize, &mut [MaybeUninit<f32>])| {
        for (i, row) in block.chunks_mut(row_len).enumerate() {
            gather_row(t * rows_per_task + i, row);
        }
    };
    if n < PARALLEL_MIN {
        spare
            .chunks_mut(rows_per_task * row_len)
            .enumerate()
            .for_each(task);
    } else {
        spare
            .par_chunks_mut(rows_per_task * row_len)
            .enumerate()
            .for_each(task);
    }
    // SAFETY: the blocks cover `..n` in whole rows and every row writes each of its values.
    unsafe { v.set_len(n) };
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_write_every_value_and_return_their_results_in_order() {
        for (n, block) in [(0, 3), (1, 1), (10, 3), (9, 3), (5 * CHUNK + 7, CHUNK)] {
            let (v, starts) = filled_in_blocks(n, block, |i, chunk| {
                for (j, d) in chunk.iter_mut().enumerate() {
                    d.write((i * block + j) as f32);
                }
                i * block
            });
            let want: Vec<f32> = (0..n).map(|i| i as f32).collect();
            assert_eq!(v, want, "n {n}, block {block}");
            assert_eq!(starts, (0..n).step_by(block).collect::<Vec<_>>());
        }
        let mut row = [MaybeUninit::<f32>::uninit(); 6];
        assert_eq!(
            init_repeating(&mut row, &[1.0, 2.0, 3.0]),
            &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0]
        );
    }

    #[test]
    fn zeroed_and_copied_match_the_serial_forms_at_every_size() {
        for n in [
            0,
            1,
            CHUNK - 1,
            PARALLEL_MIN - 1,
            PARALLEL_MIN,
            5 * CHUNK + 7,
        ] {
            assert_eq!(zeroed(n), vec![0.0f32; n], "zeroed({n})");
            let src: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            assert_eq!(copied(&src), src, "copied of {n}");
        }
    }

    #[test]
    fn gathered_reads_a_view_in_row_major_order() {
        // A 3-d buffer [2, 3, 4] (strides 12, 4, 1); views: itself, permuted, narrowed and
        // reversed, small and above the parallel threshold.
        for scale in [1usize, 200] {
            let (a, b, c) = (2 * scale, 3, 4);
            let data: Vec<f32> = (0..a * b * c).map(|i| i as f32).collect();
            let at = |i: usize, j: usize, k: usize| data[i * b * c + j * c + k];
            assert_eq!(gathered(&data, 0, &[a, b, c], &[12, 4, 1]), data);
            // Permuted to [c, a, b].
            let mut want = Vec::new();
            for k in 0..c {
                for i in 0..a {
                    for j in 0..b {
                        want.push(at(i, j, k));
                    }
                }
            }
            let got = gathered(&data, 0, &[c, a, b], &[1, (b * c) as isize, c as isize]);
            assert_eq!(got, want);
            // The last two values of the last axis, in reverse: offset k = 3, stride −1.
            let mut want = Vec::new();
            for i in 0..a {
                for j in 0..b {
                    want.push(at(i, j, 3));
                    want.push(at(i, j, 2));
                }
            }
            let got = gathered(&data, 3, &[a, b, 2], &[(b * c) as isize, c as isize, -1]);
            assert_eq!(got, want);
        }
        assert_eq!(gathered(&[7.0, 8.0], 1, &[], &[]), vec![8.0]);
    }
}
