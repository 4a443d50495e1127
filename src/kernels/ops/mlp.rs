//! The block's MLP, `fc2(GELU(fc1(x)))` with both weights in PyTorch's `[out, in]` layout, as
//! one pass over row chunks for inference.
//!
//! The reference (the fallback on every other backend, under autodiff, with few rows and with
//! the kernels off) is the composition of the two operations it is made of, [`super::linear`]
//! and [`super::gelu`], each through its own reference off the host; it has no backward pass
//! of its own.
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

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Dispatch};
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::gelu::gelu_slice;
use super::gelu::{gelu, GeluOps};
use super::linear::{linear_out_in, LinearOps};
use crate::kernels::gemm::{gemm_serial, gemm_serial_uninit, PackedB};
use crate::kernels::on_host;

/// The block's MLP as a backend operation (forward only).
#[backend_extension(Flex: cfg(feature = "flex"), Autodiff)]
pub trait MlpOps: GeluOps + LinearOps {
    /// The block's MLP, `GELU(x·fc1ᵀ + b1)·fc2ᵀ + b2`, with both weights in PyTorch's
    /// `[out, in]` layout. No handwritten backward: under autodiff this default (the two
    /// projections and GELU as separate operations) records their graph nodes.
    fn vheat_mlp(
        x: FloatTensor<Self>,
        fc1: FloatTensor<Self>,
        b1: FloatTensor<Self>,
        fc2: FloatTensor<Self>,
        b2: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let hidden = Self::vheat_gelu(Self::vheat_linear(x, fc1, b1, true));
        Self::vheat_linear(hidden, fc2, b2, true)
    }
}

/// The block's MLP, `linear_out_in(gelu(linear_out_in(x, fc1, b1)), fc2, b2)`, with both
/// weights in PyTorch's `[out, in]` layout.
///
/// On plain flex (inference) with enough rows it is one pass over chunks of rows: each chunk's
/// hidden activations live in a reused per-thread buffer, never in a tensor (see the module docs);
/// the result is the same as the composition, bit for bit. Under autodiff, with few rows and on
/// other backends it is the composition.
///
/// # Panics
/// If the shapes do not chain (`fc1` `[H, C]`, `b1` `[H]`, `fc2` `[N, H]`, `b2` `[N]`).
pub fn mlp_out_in<const D: usize>(
    x: Tensor<D>,
    fc1: Tensor<2>,
    b1: Tensor<1>,
    fc2: Tensor<2>,
    b2: Tensor<1>,
) -> Tensor<D> {
    let ([h, c], [n, h2]) = (fc1.dims(), fc2.dims());
    assert!(x.dims()[D - 1] == c && h2 == h, "MLP shapes");
    assert!(b1.dims() == [h] && b2.dims() == [n], "MLP biases");
    let plain = x.device().without_autodiff() == x.device();
    let host = [
        on_host(&x),
        on_host(&fc1),
        on_host(&b1),
        on_host(&fc2),
        on_host(&b2),
    ];
    if !(plain && host.iter().all(|&on| on)) {
        return linear_out_in(gelu(linear_out_in(x, fc1, Some(b1))), fc2, Some(b2));
    }
    Tensor::from_dispatch(<Dispatch as MlpOps>::vheat_mlp(
        x.into_dispatch(),
        fc1.into_dispatch(),
        b1.into_dispatch(),
        fc2.into_dispatch(),
        b2.into_dispatch(),
    ))
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Flex, TensorMetadata};

    use super::*;
    use crate::kernels::flex::{is_f32, rows_and_inner, tensor, values};
    use crate::kernels::gemm::packed_cache::packed_weight;

    impl MlpOps for Flex {
        fn vheat_mlp(
            x: FloatTensor<Self>,
            fc1: FloatTensor<Self>,
            b1: FloatTensor<Self>,
            fc2: FloatTensor<Self>,
            b2: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            let (m, c) = rows_and_inner(&x);
            let (s1, s2) = (fc1.shape(), fc2.shape());
            let fits = is_f32(&[&x, &fc1, &b1, &fc2, &b2])
                && s1.num_dims() == 2
                && s2.num_dims() == 2
                && s1[1] == c
                && s2[1] == s1[0]
                && b1.shape().to_vec() == [s1[0]]
                && b2.shape().to_vec() == [s2[0]];
            if !fits || !worth_fusing(m, c, rayon::current_num_threads()) {
                let hidden = Self::vheat_gelu(Self::vheat_linear(x, fc1, b1, true));
                return Self::vheat_linear(hidden, fc2, b2, true);
            }
            let (hidden, w1) = packed_weight(&fc1, c, true);
            let (n, w2) = packed_weight(&fc2, hidden, true);
            let y = mlp(&values(&x), m, &w1, &values(&b1), &w2, &values(&b2));
            let mut dims = x.shape().to_vec();
            *dims.last_mut().expect("rank ≥ 1") = n;
            tensor(y, dims)
        }
    }
}

impl<B: MlpOps, C: CheckpointStrategy> MlpOps for Autodiff<B, C> {}

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
