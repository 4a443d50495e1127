//! A matrix applied along the middle axis of a tensor, `y[b, i, j] = Σ_t matrix[i, t]·x[b, t, j]`
//! (`[before, n, after]` → `[before, m, after]`): how the heat operator's DCTs and the
//! resampling matrices run, forward and backward.
//!
//! The reference ([`mix_along_reference`], the fallback on every other backend and with the
//! kernels off) is one broadcast batched product in Burn's operators. On flex, for axes up to
//! `MIX_MAX_AXIS` long, the crate's product reads `x` in place (`gemm/mix.rs`). The backward
//! pass applies `matrixᵀ` along the same axis (for the orthonormal DCTs, the inverse
//! transform) and gives `∂/∂matrix = Σ_b g[b]·x[b]ᵀ` in Burn's operators.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, TensorMetadata};
use burn::tensor::{Shape, Tensor};

use crate::kernels::autodiff::{record, Gradient};
use crate::kernels::on_host;

/// A matrix applied along the middle axis, as a backend operation.
#[backend_extension(Flex: cfg(feature = "flex"), Autodiff)]
pub trait MixAlongOps: Backend {
    /// `y[b, i, j] = Σ_t matrix[i, t] · x[b, t, j]`: `matrix` (`[m, n]`) applied along the
    /// middle axis of `x` (`[before, n, after]`), as the DCTs do.
    fn vheat_mix_along(x: FloatTensor<Self>, matrix: FloatTensor<Self>) -> FloatTensor<Self> {
        mix_along_reference::<Self>(x, matrix)
    }
}

/// `y[b, i, j] = Σ_t matrix[i, t] · x[b, t, j]`: `matrix` (`[m, n]`) applied along the middle
/// axis of `x` (`[before, n, after]` → `[before, m, after]`), as one broadcast batched
/// `matmul`. On the host fast path (`n ≤ 256`) it reads `x` in place with the crate's matrix
/// product, and its backward pass applies `matrixᵀ` the same way; elsewhere it is
/// [`mix_along_reference`], Burn's `matrix.unsqueeze().matmul(x)`.
pub fn mix_along(x: Tensor<3>, matrix: Tensor<2>) -> Tensor<3> {
    let [_, n, _] = x.dims();
    let host = on_host(&x) && on_host(&matrix) && matrix.dims()[1] == n;
    let (x, matrix) = (x.into_dispatch(), matrix.into_dispatch());
    Tensor::from_dispatch(if host {
        <Dispatch as MixAlongOps>::vheat_mix_along(x, matrix)
    } else {
        mix_along_reference::<Dispatch>(x, matrix)
    })
}

/// [`MixAlongOps::vheat_mix_along`] in Burn's operators: one broadcast batched product.
pub(crate) fn mix_along_reference<B: Backend>(
    x: FloatTensor<B>,
    matrix: FloatTensor<B>,
) -> FloatTensor<B> {
    let s = matrix.shape();
    B::float_matmul(B::float_reshape(matrix, Shape::new([1, s[0], s[1]])), x)
}

/// `∂/∂matrix` of [`MixAlongOps::vheat_mix_along`]: `Σ_b g[b] · x[b]ᵀ`.
fn mix_along_matrix_grad<B: Backend>(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
    let per_item = B::float_matmul(grad, B::float_transpose(x));
    let s = per_item.shape();
    B::float_reshape(B::float_sum_dim(per_item, 0), Shape::new([s[1], s[2]]))
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Flex, TensorMetadata};

    use super::*;
    use crate::kernels::flex::{is_f32, tensor, values};
    use crate::kernels::gemm::{mix_along, MIX_MAX_AXIS};

    impl MixAlongOps for Flex {
        fn vheat_mix_along(x: FloatTensor<Self>, matrix: FloatTensor<Self>) -> FloatTensor<Self> {
            let (xs, ms) = (x.shape(), matrix.shape());
            if !is_f32(&[&x, &matrix])
                || xs.num_dims() != 3
                || xs[1] != ms[1]
                || xs[1] > MIX_MAX_AXIS
            {
                return mix_along_reference::<Self>(x, matrix);
            }
            let [before, n, after] = [xs[0], xs[1], xs[2]];
            let m = ms[0];
            let y = mix_along(&values(&x), [before, n, after], &values(&matrix), m);
            tensor(y, [before, m, after])
        }
    }
}

/// The product's node: keeps `x` and the matrix.
#[derive(Debug)]
struct MixAlongGradient;

impl<B: MixAlongOps> Gradient<B, 2> for MixAlongGradient {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(
        (x, matrix): Self::State,
        grad: FloatTensor<B>,
        [want_x, want_matrix]: [bool; 2],
    ) -> [Option<FloatTensor<B>>; 2] {
        let dmatrix = want_matrix.then(|| mix_along_matrix_grad::<B>(x, grad.clone()));
        // The transpose applied along the same axis (for the orthonormal DCTs, the inverse
        // transform).
        let dx = want_x.then(|| B::vheat_mix_along(grad, B::float_transpose(matrix)));
        [dx, dmatrix]
    }
}

impl<B: MixAlongOps, C: CheckpointStrategy> MixAlongOps for Autodiff<B, C> {
    fn vheat_mix_along(x: FloatTensor<Self>, matrix: FloatTensor<Self>) -> FloatTensor<Self> {
        let inputs = [x.node(), matrix.node()];
        record::<B, C, MixAlongGradient, 2>(inputs, |keep| {
            let (x, matrix) = (x.into_primitive(), matrix.into_primitive());
            let kept = keep.then(|| (x.clone(), matrix.clone()));
            (B::vheat_mix_along(x, matrix), kept)
        })
    }
}
