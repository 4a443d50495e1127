//! The two operations of global-norm gradient clipping: `Σ x²` over a tensor
//! ([`sum_of_squares`]) and `x · coef` for a one-value `coef` ([`scale`]).
//!
//! The references ([`sum_of_squares_reference`], [`scale_reference`]: the fallback on every
//! other backend and with the kernels off) are Burn's `(x·x).sum()` and broadcast product. On
//! flex the sum is one parallel pass accumulating in float64 in a fixed order
//! (`runtime/reduce.rs`), and the product one parallel pass, in place when `x` is not shared.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, TensorMetadata};
use burn::tensor::{Shape, Tensor};

use crate::kernels::on_host;

/// The clipping helpers as backend operations.
#[backend_extension(Flex: cfg(feature = "flex"), Autodiff)]
pub trait ClipOps: Backend {
    /// `Σ x²` over every value of `x`, as a one-value tensor `[1]` (not read back).
    fn vheat_sum_of_squares(x: FloatTensor<Self>) -> FloatTensor<Self> {
        sum_of_squares_reference::<Self>(x)
    }

    /// `x · coef` for a one-value tensor `coef` (`[1]`), broadcast over `x`.
    fn vheat_scale(x: FloatTensor<Self>, coef: FloatTensor<Self>) -> FloatTensor<Self> {
        scale_reference::<Self>(x, coef)
    }
}

/// `Σ x²` over all of `x`, as a one-value tensor (not read back). On the host fast path one
/// parallel pass accumulating in float64, in a fixed order; elsewhere `(x·x).sum()`.
pub fn sum_of_squares<const D: usize>(x: Tensor<D>) -> Tensor<1> {
    let host = on_host(&x);
    let x = x.into_dispatch();
    Tensor::from_dispatch(if host {
        <Dispatch as ClipOps>::vheat_sum_of_squares(x)
    } else {
        sum_of_squares_reference::<Dispatch>(x)
    })
}

/// `x · coef` for a one-value `coef`: one parallel pass on the host fast path, in place when
/// `x` is not shared; elsewhere a broadcast product.
pub fn scale<const D: usize>(x: Tensor<D>, coef: Tensor<1>) -> Tensor<D> {
    let host = on_host(&x) && on_host(&coef);
    let (x, coef) = (x.into_dispatch(), coef.into_dispatch());
    Tensor::from_dispatch(if host {
        <Dispatch as ClipOps>::vheat_scale(x, coef)
    } else {
        scale_reference::<Dispatch>(x, coef)
    })
}

/// [`ClipOps::vheat_sum_of_squares`] in Burn's operators: `(x·x).sum()`, shaped `[1]`.
pub(crate) fn sum_of_squares_reference<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let squares = B::float_mul(x.clone(), x);
    B::float_reshape(B::float_sum(squares), Shape::new([1]))
}

/// [`ClipOps::vheat_scale`] in Burn's operators: a broadcast product.
pub(crate) fn scale_reference<B: Backend>(
    x: FloatTensor<B>,
    coef: FloatTensor<B>,
) -> FloatTensor<B> {
    let ones = Shape::from(vec![1usize; x.shape().num_dims()]);
    B::float_mul(x, B::float_reshape(coef, ones))
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Flex, TensorMetadata};
    use rayon::prelude::*;

    use super::*;
    use crate::kernels::flex::{is_f32, owned, tensor, values};
    use crate::kernels::runtime::reduce::sum_of_squares;
    use crate::kernels::runtime::CHUNK;

    impl ClipOps for Flex {
        fn vheat_sum_of_squares(x: FloatTensor<Self>) -> FloatTensor<Self> {
            if !is_f32(&[&x]) {
                return sum_of_squares_reference::<Self>(x);
            }
            tensor(vec![sum_of_squares(&values(&x)) as f32], [1])
        }

        fn vheat_scale(x: FloatTensor<Self>, coef: FloatTensor<Self>) -> FloatTensor<Self> {
            if !is_f32(&[&x, &coef]) || coef.shape().num_elements() != 1 {
                return scale_reference::<Self>(x, coef);
            }
            let c = values(&coef)[0];
            let mut x = owned(x);
            x.storage_mut::<f32>()
                .par_chunks_mut(CHUNK)
                .for_each(|chunk| chunk.iter_mut().for_each(|v| *v *= c));
            x
        }
    }
}

/// On autodiff tensors the helpers are the references in the tracked operators.
impl<B: ClipOps, C: CheckpointStrategy> ClipOps for Autodiff<B, C> {}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::prelude::*;

    use super::*;
    use crate::kernels::{isa, set_enabled};

    #[test]
    fn clipping_helpers_match_burns_operators_and_float64() {
        let _lock = isa::tests_lock(); // set_enabled is process-wide
        let device = Device::flex();
        let n = 5 * 39_323; // above the parallel thresholds, not a multiple of a block
        let v: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let x = Tensor::<2>::from_data(TensorData::new(v.clone(), [5, n / 5]), &device);
        let host = sum_of_squares(x.clone()).into_scalar::<f32>();
        set_enabled(false);
        let burn = sum_of_squares(x.clone()).into_scalar::<f32>();
        let coef = Tensor::<1>::from_floats([0.37], &device);
        let burn_scaled = scale(x.clone(), coef.clone()).into_data();
        set_enabled(true);
        let exact: f64 = v.iter().map(|&e| f64::from(e) * f64::from(e)).sum();
        // The host sum accumulates in float64 (one rounding at the end); Burn's in float32
        // over 2·10⁵ terms (relative error up to ~1e-4 on this sum).
        assert!(
            (f64::from(host) - exact).abs() <= 1e-7 * exact,
            "{host} vs {exact}"
        );
        assert!(
            (f64::from(burn) - exact).abs() <= 1e-4 * exact,
            "{burn} vs {exact}"
        );
        // One float32 product per value on both sides: the same bits.
        scale(x, coef).into_data().assert_eq(&burn_scaled, true);
    }
}
