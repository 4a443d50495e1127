//! The projections `x·W + b` over the last axis (`[…, K]` → `[…, N]`): the heat operator's
//! linears and the MLP's 1×1 convolutions, forward and backward, with the weight stored
//! `[K, N]` (Burn's `Linear`) or `[N, K]` (PyTorch's layout, `out_in`).
//!
//! The reference ([`linear_reference`], the fallback on every other backend and with the
//! kernels off) is Burn's `linear` (what `burn::tensor::module::linear` runs), and the backward
//! reference ([`linear_backward_reference`]) Burn's products. On flex the forward pass and the
//! input gradient run through the crate's matrix product (`gemm/`) with the weight packed once
//! per buffer (`gemm/packed_cache.rs`); the weight gradient is the weight-gradient product
//! (`gemm/transposed_product.rs`) computed in the stored orientation, and the bias gradient a
//! column sum on the pool.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, TensorMetadata};
use burn::tensor::{Shape, Tensor};

use crate::kernels::autodiff::record_weighted;
use crate::kernels::on_host;

/// The projection as a backend operation, with its backward pass.
#[backend_extension(Flex: cfg(feature = "flex"), Autodiff)]
pub trait LinearOps: Backend {
    /// `x · W + b` over the last axis of `x` (`[…, K]` → `[…, N]`). `weight` is `[K, N]`
    /// (Burn's `Linear`) or, with `out_in`, `[N, K]` (PyTorch's layout, a 1×1 convolution's);
    /// `bias` is `[N]`.
    fn vheat_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        out_in: bool,
    ) -> FloatTensor<Self> {
        linear_reference::<Self>(x, weight, Some(bias), out_in)
    }

    /// `(dx, dweight, dbias)` of [`vheat_linear`](Self::vheat_linear) for the output gradient
    /// `grad`.
    fn vheat_linear_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        out_in: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        linear_backward_reference::<Self>(x, weight, grad, out_in)
    }
}

/// `x · weight + bias` over the last axis (`[…, K]` → `[…, N]`) with `weight` `[K, N]`, as
/// `burn::tensor::module::linear`; through the host product on the fast path (forward and
/// backward), [`linear_reference`] (Burn's `linear`) elsewhere.
pub fn linear<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Tensor<D> {
    projection(x, weight, bias, false)
}

/// As [`linear`] with the weight in PyTorch's `[N, K]` layout (a `Linear`'s or a 1×1
/// convolution's `[out, in]`).
pub fn linear_out_in<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Tensor<D> {
    projection(x, weight, bias, true)
}

/// The projection through the host kernel where it applies, else [`linear_reference`].
fn projection<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
    out_in: bool,
) -> Tensor<D> {
    let [rows, cols] = weight.dims();
    let (k, n) = if out_in { (cols, rows) } else { (rows, cols) };
    let fast = on_host(&x)
        && on_host(&weight)
        && bias.as_ref().is_none_or(|b| on_host(b) && b.dims() == [n])
        && x.dims()[D - 1] == k;
    if !fast {
        let bias = bias.map(Tensor::into_dispatch);
        let (x, weight) = (x.into_dispatch(), weight.into_dispatch());
        return Tensor::from_dispatch(linear_reference::<Dispatch>(x, weight, bias, out_in));
    }
    let bias = bias.unwrap_or_else(|| Tensor::zeros([n], &x.device()));
    Tensor::from_dispatch(<Dispatch as LinearOps>::vheat_linear(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        out_in,
    ))
}

/// The projection in Burn's operator, as `burn::tensor::module::linear` runs it: `linear`
/// with the weight as `[K, N]` (transposed when `out_in`), a rank-1 `x` as one row.
pub(crate) fn linear_reference<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    out_in: bool,
) -> FloatTensor<B> {
    let weight = if out_in {
        B::float_transpose(weight)
    } else {
        weight
    };
    let shape = x.shape();
    if shape.num_dims() > 1 {
        return B::linear(x, weight, bias);
    }
    let row = B::float_reshape(x, Shape::new([1, shape[0]]));
    let y = B::linear(row, weight, bias);
    let n = y.shape()[1];
    B::float_reshape(y, Shape::new([n]))
}

/// `x` as `[M, K]` and the weight as `[K, N]`.
fn linear_operands<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    out_in: bool,
) -> (FloatTensor<B>, FloatTensor<B>, Shape) {
    let shape = x.shape();
    let k = shape[shape.num_dims() - 1];
    let m = shape.num_elements() / k.max(1);
    let x2 = B::float_reshape(x, Shape::new([m, k]));
    let w = if out_in {
        B::float_transpose(weight)
    } else {
        weight
    };
    (x2, w, shape)
}

/// The projection's backward pass in Burn's operators: `dx = g·Wᵀ`, `dW = xᵀ·g`, `db = Σ_rows g`.
pub(crate) fn linear_backward_reference<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    grad: FloatTensor<B>,
    out_in: bool,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let (x2, w, shape) = linear_operands::<B>(x.clone(), weight, out_in);
    let n = w.shape()[1];
    let g2 = B::float_reshape(grad.clone(), Shape::new([x2.shape()[0], n]));
    let dx = B::float_reshape(B::float_matmul(g2, B::float_transpose(w)), shape);
    let (dw, db) = linear_weight_grads::<B>(x, grad, out_in);
    (dx, dw, db)
}

/// The projection's `(dW, db)` in Burn's operators: `dW = xᵀ·g` (transposed back to `[N, K]`
/// with `out_in`) and `db = Σ_rows g`.
fn linear_weight_grads<B: Backend>(
    x: FloatTensor<B>,
    grad: FloatTensor<B>,
    out_in: bool,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let xs = x.shape();
    let k = xs[xs.num_dims() - 1];
    let m = xs.num_elements() / k.max(1);
    let gs = grad.shape();
    let n = gs[gs.num_dims() - 1];
    let x2 = B::float_reshape(x, Shape::new([m, k]));
    let g2 = B::float_reshape(grad, Shape::new([m, n]));
    let dw = B::float_matmul(B::float_transpose(x2), g2.clone());
    let dw = if out_in { B::float_transpose(dw) } else { dw };
    let db = B::float_reshape(B::float_sum_dim(g2, 0), Shape::new([n]));
    (dw, db)
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::flex::FlexTensor;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Flex, TensorMetadata};

    use super::*;
    use crate::kernels::flex::{is_f32, rows_and_inner, tensor, values};
    use crate::kernels::gemm::packed_cache::{packed, packed_weight, Orientation};
    use crate::kernels::gemm::transposed_product::transposed_product;
    use crate::kernels::gemm::{gemm, PackedB};
    use crate::kernels::runtime::reduce::column_sums;

    /// `(dW, db)` of a projection `x·W + b` (`W` stored `[out, in]` when `out_in`, else
    /// `[in, out]`) for the output gradient `grad`. dW is [`transposed_product`] (the product Burn
    /// uses, without its output copy), computed directly in the stored orientation so that no
    /// transposed view reaches the optimiser; db is summed on the pool.
    fn weight_grads(x: FlexTensor, grad: &FlexTensor, out_in: bool) -> (FlexTensor, FlexTensor) {
        let (m, k) = rows_and_inner(&x);
        let (_, n) = rows_and_inner(grad);
        let (x, g) = (values(&x), values(grad));
        let db = column_sums(&g, m, n);
        let dw = if out_in {
            tensor(transposed_product(&g, &x, m, n, k), [n, k])
        } else {
            tensor(transposed_product(&x, &g, m, k, n), [k, n])
        };
        (dw, tensor(db, [n]))
    }

    impl LinearOps for Flex {
        fn vheat_linear(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            out_in: bool,
        ) -> FloatTensor<Self> {
            if !is_f32(&[&x, &weight, &bias]) {
                return linear_reference::<Self>(x, weight, Some(bias), out_in);
            }
            let (m, k) = rows_and_inner(&x);
            let (n, packed) = packed_weight(&weight, k, out_in);
            let out = gemm(&values(&x), m, &packed, Some(&values(&bias)));
            let mut dims = x.shape().to_vec();
            *dims.last_mut().expect("rank ≥ 1") = n;
            tensor(out, dims)
        }

        fn vheat_linear_backward(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            out_in: bool,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            if !is_f32(&[&x, &weight, &grad]) {
                return linear_backward_reference::<Self>(x, weight, grad, out_in);
            }
            let (m, k) = rows_and_inner(&x);
            let n = weight.shape()[if out_in { 0 } else { 1 }];
            // dx = g · Wᵀ, with Wᵀ (n × k) packed from the weight as it is stored.
            let wt = if out_in {
                packed(&weight, Orientation::AsIs, || {
                    PackedB::from_row_major(&values(&weight), n, k)
                })
            } else {
                packed(&weight, Orientation::Transposed, || {
                    PackedB::from_transposed(&values(&weight), n, k)
                })
            };
            let dx = gemm(&values(&grad), m, &wt, None);
            let dx = tensor(dx, x.shape());
            let (dw, db) = weight_grads(x, &grad, out_in);
            (dx, dw, db)
        }
    }
}

impl<B: LinearOps, C: CheckpointStrategy> LinearOps for Autodiff<B, C> {
    fn vheat_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        out_in: bool,
    ) -> FloatTensor<Self> {
        let (forward, backward) = (B::vheat_linear, B::vheat_linear_backward);
        record_weighted::<B, C, _>([x, weight, bias], out_in, forward, backward)
    }
}
