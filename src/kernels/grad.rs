//! The crate's own tensor operations with handwritten backward passes, through Burn's
//! `#[backend_extension]`: GELU, the heat operator's SiLU gate, LayerNorm over the last axis,
//! the channels-last depthwise 3×3 convolution, the projections (`x·W + b`) and a matrix
//! applied along one axis (the DCTs).
//!
//! [`HostKernels`] declares each operation and its backward pass. Its default bodies compose
//! Burn's own backend operators (the reference formulas, valid on any backend); the flex
//! implementation (`super::flex`) replaces them with the host kernels of this module's
//! siblings, and the `Autodiff` implementation here records one graph node per operation whose
//! backward calls the inner backend's backward operation. So on `Autodiff<Flex>` a training
//! step runs the host kernels both ways instead of Burn's chains of generic operators (LayerNorm
//! alone is eight of them), and no permute surrounds the depthwise convolution.
//!
//! Only flex is routed here (see `super::route`); every other backend keeps Burn's operators.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, TensorMetadata};
use burn::tensor::ops::ConvOptions;
use burn::tensor::Shape;

use super::adamw::AdamwStep;

/// Operations with a handwritten backward pass (see the module docs). Tensors are channels-last
/// where it matters: LayerNorm normalises the last axis; the depthwise convolution takes
/// `[B, H, W, C]` maps, a PyTorch-layout weight `[C, 1, 3, 3]` and a bias `[C]`.
#[backend_extension(Flex: cfg(feature = "flex"), Autodiff)]
pub trait HostKernels: Backend {
    /// Exact (erf) GELU.
    fn vheat_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu(x)
    }

    /// `grad · GELU'(x)`.
    fn vheat_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu_backward(x, grad)
    }

    /// `a · z · σ(z)`.
    fn vheat_silu_gate(a: FloatTensor<Self>, z: FloatTensor<Self>) -> FloatTensor<Self> {
        let silu = Self::float_mul(z.clone(), Self::sigmoid(z));
        Self::float_mul(a, silu)
    }

    /// `(∂/∂a, ∂/∂z)` of [`vheat_silu_gate`](Self::vheat_silu_gate) times `grad`.
    fn vheat_silu_gate_backward(
        a: FloatTensor<Self>,
        z: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        silu_gate_backward_reference::<Self>(a, z, grad)
    }

    /// The heat operator's spectral decay `exp(−ReLU(k)·freq)` for `k` `[H, W, C]` and the
    /// frequency grid `freq` (`[H, W]`, `ωₙ² + ωₘ²`), a constant: it gets no gradient.
    fn vheat_heat_decay(k: FloatTensor<Self>, freq: FloatTensor<Self>) -> FloatTensor<Self> {
        heat_decay_reference::<Self>(k, freq)
    }

    /// `grad · ∂/∂k` of [`vheat_heat_decay`](Self::vheat_heat_decay).
    fn vheat_heat_decay_backward(
        k: FloatTensor<Self>,
        freq: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        heat_decay_backward_reference::<Self>(k, freq, grad)
    }

    /// LayerNorm over the last axis: `(x − μ)/√(σ² + ε) · γ + β`.
    fn vheat_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        Self::layer_norm(x, gamma, Some(beta), epsilon)
    }

    /// `(dx, dγ, dβ)` of [`vheat_layer_norm`](Self::vheat_layer_norm) for the output gradient
    /// `grad`.
    fn vheat_layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        layer_norm_backward_reference::<Self>(x, gamma, grad, epsilon)
    }

    /// `x · W + b` over the last axis of `x` (`[…, K]` → `[…, N]`). `weight` is `[K, N]`
    /// (Burn's `Linear`) or, with `out_in`, `[N, K]` (PyTorch's layout, a 1×1 convolution's);
    /// `bias` is `[N]`.
    fn vheat_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        out_in: bool,
    ) -> FloatTensor<Self> {
        linear_reference::<Self>(x, weight, bias, out_in)
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

    /// `y[b, i, j] = Σ_t matrix[i, t] · x[b, t, j]`: `matrix` (`[m, n]`) applied along the
    /// middle axis of `x` (`[before, n, after]`), as the DCTs do.
    fn vheat_mix_along(x: FloatTensor<Self>, matrix: FloatTensor<Self>) -> FloatTensor<Self> {
        mix_along_reference::<Self>(x, matrix)
    }

    /// Depthwise 3×3 convolution, stride 1, zero padding 1, of a channels-last map.
    fn vheat_dwconv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        dwconv3x3_reference::<Self>(x, weight, bias)
    }

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

    /// A dense 3×3 convolution, padding 1, stride `stride`, of a channels-last map `x`
    /// (`[B, H, W, C_in]`) with `weight` in PyTorch's layout `[C_out, C_in, 3, 3]` and `bias`
    /// (`[C_out]`): `[B, H_out, W_out, C_out]`.
    fn vheat_conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
    ) -> FloatTensor<Self> {
        conv3x3_reference::<Self>(x, weight, bias, stride)
    }

    /// `(∂L/∂x, ∂L/∂weight, ∂L/∂bias)` of [`HostKernels::vheat_conv3x3`] from `grad`
    /// (`[B, H_out, W_out, C_out]`).
    fn vheat_conv3x3_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stride: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        conv3x3_backward_reference::<Self>(x, weight, grad, stride)
    }

    /// `IDCT2D(DCT2D(x) ⊙ decay)` for a channels-last map `x` (`[B, H, W, C]`), `decay`
    /// (`[H, W, C]`) and the orthonormal DCT-II matrices `dct_h` (`[H, H]`) and `dct_w`
    /// (`[W, W]`); the inverse transforms are their transposes.
    fn vheat_diffuse(
        x: FloatTensor<Self>,
        decay: FloatTensor<Self>,
        dct_h: FloatTensor<Self>,
        dct_w: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        diffuse_reference::<Self>(x, decay, dct_h, dct_w).0
    }

    /// As [`HostKernels::vheat_diffuse`], also returning the spectrum `DCT2D(x)` that the
    /// backward pass needs.
    fn vheat_diffuse_keeping_spectrum(
        x: FloatTensor<Self>,
        decay: FloatTensor<Self>,
        dct_h: FloatTensor<Self>,
        dct_w: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        diffuse_reference::<Self>(x, decay, dct_h, dct_w)
    }

    /// `(∂L/∂x, ∂L/∂decay)` of [`HostKernels::vheat_diffuse`]: the same diffusion of `grad`,
    /// and `Σ_b spectrum[b] ⊙ DCT2D(grad)[b]`.
    fn vheat_diffuse_backward(
        grad: FloatTensor<Self>,
        decay: FloatTensor<Self>,
        dct_h: FloatTensor<Self>,
        dct_w: FloatTensor<Self>,
        spectrum: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        diffuse_backward_reference::<Self>(grad, decay, dct_h, dct_w, spectrum)
    }

    /// One AdamW step on a parameter: `(param, moment_1, moment_2)` after it, from the
    /// gradient and the moments before it (zeros before the first step), with the step's
    /// scalars `step`. Not differentiable: it runs on the inner backend, as optimisers do.
    fn vheat_adamw_step(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamwStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        adamw_step_reference::<Self>(param, grad, moment_1, moment_2, step)
    }

    /// `Σ x²` over every value of `x`, as a one-value tensor `[1]` (not read back).
    fn vheat_sum_of_squares(x: FloatTensor<Self>) -> FloatTensor<Self> {
        sum_of_squares_reference::<Self>(x)
    }

    /// `x · coef` for a one-value tensor `coef` (`[1]`), broadcast over `x`.
    fn vheat_scale(x: FloatTensor<Self>, coef: FloatTensor<Self>) -> FloatTensor<Self> {
        scale_reference::<Self>(x, coef)
    }

    /// A residual connection `x + branch ⊙ scale` for `x` and `branch` `[B, …, C]` and
    /// `scale` `[B, C]` (one row per sample, broadcast over its pixels): layer scale times the
    /// stochastic-depth factor.
    fn vheat_residual(
        x: FloatTensor<Self>,
        branch: FloatTensor<Self>,
        scale: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        residual_reference::<Self>(x, branch, scale)
    }

    /// `(∂L/∂branch, ∂L/∂scale)` of [`vheat_residual`](Self::vheat_residual) for the output
    /// gradient `grad` (`∂L/∂x` is `grad`); without `want_dscale` the second is zeros.
    fn vheat_residual_backward(
        branch: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        want_dscale: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        residual_backward_reference::<Self>(branch, scale, grad, want_dscale)
    }

    /// A residual connection without scale, `x + branch` (equal shapes).
    fn vheat_residual_sum(x: FloatTensor<Self>, branch: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_add(x, branch)
    }

    /// `(dx, dweight, dbias)` of [`vheat_dwconv3x3`](Self::vheat_dwconv3x3) for the output
    /// gradient `grad` (`[B, H, W, C]`).
    fn vheat_dwconv3x3_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        dwconv3x3_backward_reference::<Self>(x, weight, grad)
    }
}

/// [`HostKernels::vheat_adamw_step`] in Burn's operators, in the order Burn's `AdamW` applies
/// them (`burn_optim::AdamW::step`), so that the two agree bit for bit.
pub(super) fn adamw_step_reference<B: Backend>(
    param: FloatTensor<B>,
    grad: FloatTensor<B>,
    moment_1: FloatTensor<B>,
    moment_2: FloatTensor<B>,
    s: AdamwStep,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let scaled = |t: FloatTensor<B>, c: f32| B::float_mul_scalar(t, c.into());
    let m = B::float_add(
        scaled(moment_1, s.beta_1),
        scaled(grad.clone(), s.one_minus_beta_1),
    );
    let squares = B::float_mul(grad.clone(), grad);
    let v = B::float_add(
        scaled(moment_2, s.beta_2),
        scaled(squares, s.one_minus_beta_2),
    );
    let m_hat = B::float_div_scalar(m.clone(), s.bias_correction_1.into());
    let v_hat = B::float_div_scalar(v.clone(), s.bias_correction_2.into());
    let root = B::float_add_scalar(B::float_sqrt(v_hat), s.epsilon.into());
    let delta = B::float_div(m_hat, root);
    let param = B::float_sub(scaled(param, s.decay), scaled(delta, s.lr));
    (param, m, v)
}

/// `scale` (`[B, C]`) as `[B, 1, …, 1, C]` for a tensor of `like`'s rank.
fn per_sample_rows<B: Backend>(scale: FloatTensor<B>, like: &FloatTensor<B>) -> FloatTensor<B> {
    let (ss, rank) = (scale.shape(), like.shape().num_dims());
    let mut dims = vec![1usize; rank];
    dims[0] = ss[0];
    dims[rank - 1] = ss[1];
    B::float_reshape(scale, Shape::from(dims))
}

/// [`HostKernels::vheat_residual`] in Burn's operators: a broadcast product and a sum.
pub(super) fn residual_reference<B: Backend>(
    x: FloatTensor<B>,
    branch: FloatTensor<B>,
    scale: FloatTensor<B>,
) -> FloatTensor<B> {
    let scale = per_sample_rows::<B>(scale, &branch);
    B::float_add(x, B::float_mul(branch, scale))
}

/// [`HostKernels::vheat_residual_backward`] in Burn's operators.
pub(super) fn residual_backward_reference<B: Backend>(
    branch: FloatTensor<B>,
    scale: FloatTensor<B>,
    grad: FloatTensor<B>,
    want_dscale: bool,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let scale_shape = scale.shape();
    let scale_of_shape = scale.clone();
    let dbranch = B::float_mul(grad.clone(), per_sample_rows::<B>(scale, &branch));
    let dscale = if want_dscale {
        let gs = grad.shape();
        let (batch, c) = (gs[0], gs[gs.num_dims() - 1]);
        let terms = B::float_reshape(
            B::float_mul(grad, branch),
            Shape::new([batch, gs.num_elements() / (batch * c).max(1), c]),
        );
        B::float_reshape(B::float_sum_dim(terms, 1), scale_shape)
    } else {
        // Zeros of the scale's shape, made from the scale itself (no device handle needed).
        B::float_mul_scalar(scale_of_shape, 0.0.into())
    };
    (dbranch, dscale)
}

/// [`HostKernels::vheat_sum_of_squares`] in Burn's operators: `(x·x).sum()`, shaped `[1]`.
pub(super) fn sum_of_squares_reference<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let squares = B::float_mul(x.clone(), x);
    B::float_reshape(B::float_sum(squares), Shape::new([1]))
}

/// [`HostKernels::vheat_scale`] in Burn's operators: a broadcast product.
pub(super) fn scale_reference<B: Backend>(
    x: FloatTensor<B>,
    coef: FloatTensor<B>,
) -> FloatTensor<B> {
    let ones = Shape::from(vec![1usize; x.shape().num_dims()]);
    B::float_mul(x, B::float_reshape(coef, ones))
}

/// Registers `values[i]` as the gradient of parent `i`, for the parents that need one.
fn register<B: Backend, const N: usize>(
    grads: &mut Gradients,
    parents: [Option<NodeId>; N],
    values: [FloatTensor<B>; N],
) {
    for (parent, value) in parents.into_iter().zip(values) {
        if let Some(id) = parent {
            grads.register::<B>(id, value);
        }
    }
}

/// Stride 1, padding 1, dilation 1, `c` groups.
fn depthwise_options(c: usize) -> ConvOptions<2> {
    ConvOptions::new([1, 1], [1, 1], [1, 1], c)
}

/// `freq` (`[H, W]`) as `[H, W, 1]` expanded to `k`'s shape `[H, W, C]`.
fn frequencies_like<B: Backend>(freq: FloatTensor<B>, k: &FloatTensor<B>) -> FloatTensor<B> {
    let ks = k.shape();
    let column = B::float_reshape(freq, Shape::new([ks[0], ks[1], 1]));
    B::float_expand(column, ks)
}

/// [`HostKernels::vheat_heat_decay`] in Burn's operators: ReLU, the broadcast product,
/// negation, `exp`.
pub(super) fn heat_decay_reference<B: Backend>(
    k: FloatTensor<B>,
    freq: FloatTensor<B>,
) -> FloatTensor<B> {
    let freq = frequencies_like::<B>(freq, &k);
    B::float_exp(B::float_neg(B::float_mul(B::relu(k), freq)))
}

/// [`HostKernels::vheat_heat_decay_backward`] in Burn's operators: `grad · (−freq · decay)`
/// through ReLU's backward (0 where `k ≤ 0`).
pub(super) fn heat_decay_backward_reference<B: Backend>(
    k: FloatTensor<B>,
    freq: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let freq = frequencies_like::<B>(freq, &k);
    let relu = B::relu(k);
    let decay = B::float_exp(B::float_neg(B::float_mul(relu.clone(), freq.clone())));
    let slope = B::float_neg(B::float_mul(freq, decay));
    B::relu_backward(relu, B::float_mul(grad, slope))
}

/// [`HostKernels::vheat_mix_along`] in Burn's operators: one broadcast batched product.
pub(super) fn mix_along_reference<B: Backend>(
    x: FloatTensor<B>,
    matrix: FloatTensor<B>,
) -> FloatTensor<B> {
    let s = matrix.shape();
    B::float_matmul(B::float_reshape(matrix, Shape::new([1, s[0], s[1]])), x)
}

/// `∂/∂matrix` of [`HostKernels::vheat_mix_along`]: `Σ_b g[b] · x[b]ᵀ`.
fn mix_along_matrix_grad<B: Backend>(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
    let per_item = B::float_matmul(grad, B::float_transpose(x));
    let s = per_item.shape();
    B::float_reshape(B::float_sum_dim(per_item, 0), Shape::new([s[1], s[2]]))
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

/// The projection in Burn's operators.
pub(super) fn linear_reference<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
    out_in: bool,
) -> FloatTensor<B> {
    let (x2, w, shape) = linear_operands::<B>(x, weight, out_in);
    let n = w.shape()[1];
    let y = B::float_add(
        B::float_matmul(x2, w),
        B::float_reshape(bias, Shape::new([1, n])),
    );
    let mut dims = shape.to_vec();
    *dims.last_mut().expect("rank ≥ 1") = n;
    B::float_reshape(y, Shape::from(dims))
}

/// Its backward pass in Burn's operators: `dx = g·Wᵀ`, `dW = xᵀ·g`, `db = Σ_rows g`.
pub(super) fn linear_backward_reference<B: Backend>(
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
pub(super) fn linear_weight_grads<B: Backend>(
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

/// The SiLU gate's backward pass in Burn's operators.
pub(super) fn silu_gate_backward_reference<B: Backend>(
    a: FloatTensor<B>,
    z: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let s = B::sigmoid(z.clone());
    let silu = B::float_mul(z.clone(), s.clone());
    let da = B::float_mul(grad.clone(), silu);
    // σ(z)·(1 + z·(1 − σ(z)))
    let one_minus = B::float_add_scalar(B::float_neg(s.clone()), 1.0.into());
    let inner = B::float_add_scalar(B::float_mul(z, one_minus), 1.0.into());
    let dz = B::float_mul(B::float_mul(grad, a), B::float_mul(s, inner));
    (da, dz)
}

/// The channels-last depthwise convolution in Burn's operators: NCHW `conv2d` between permutes.
/// `matrix` (`[n, n]`) applied along axis `axis` (1 or 2) of a `[B, H, W, C]` map, in Burn's
/// operators: the axes before it flattened into a batch, one broadcast batched product.
fn along_axis<B: Backend>(
    x: FloatTensor<B>,
    axis: usize,
    matrix: FloatTensor<B>,
) -> FloatTensor<B> {
    let shape = x.shape();
    let n = shape[axis];
    let before: usize = (0..axis).map(|i| shape[i]).product();
    let after: usize = (axis + 1..4).map(|i| shape[i]).product();
    let view = B::float_reshape(x, Shape::new([before, n, after]));
    let y = mix_along_reference::<B>(view, matrix);
    B::float_reshape(y, shape)
}

/// `DCT2D` of a `[B, H, W, C]` map (`dct_h` along H, then `dct_w` along W).
fn dct2d_reference<B: Backend>(
    x: FloatTensor<B>,
    dct_h: FloatTensor<B>,
    dct_w: FloatTensor<B>,
) -> FloatTensor<B> {
    along_axis::<B>(along_axis::<B>(x, 1, dct_h), 2, dct_w)
}

/// The decay `[H, W, C]` times a `[B, H, W, C]` map, broadcast over the batch.
fn times_decay<B: Backend>(x: FloatTensor<B>, decay: FloatTensor<B>) -> FloatTensor<B> {
    let s = decay.shape();
    B::float_mul(
        x,
        B::float_reshape(decay, Shape::new([1, s[0], s[1], s[2]])),
    )
}

/// [`HostKernels::vheat_diffuse_keeping_spectrum`] in Burn's operators: `(y, DCT2D(x))`.
pub(super) fn diffuse_reference<B: Backend>(
    x: FloatTensor<B>,
    decay: FloatTensor<B>,
    dct_h: FloatTensor<B>,
    dct_w: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let spectrum = dct2d_reference::<B>(x, dct_h.clone(), dct_w.clone());
    let scaled = times_decay::<B>(spectrum.clone(), decay);
    let y = dct2d_reference::<B>(scaled, B::float_transpose(dct_h), B::float_transpose(dct_w));
    (y, spectrum)
}

/// [`HostKernels::vheat_diffuse_backward`] in Burn's operators.
pub(super) fn diffuse_backward_reference<B: Backend>(
    grad: FloatTensor<B>,
    decay: FloatTensor<B>,
    dct_h: FloatTensor<B>,
    dct_w: FloatTensor<B>,
    spectrum: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let s = decay.shape();
    let g_hat = dct2d_reference::<B>(grad, dct_h.clone(), dct_w.clone());
    let ddecay = B::float_reshape(
        B::float_sum_dim(B::float_mul(g_hat.clone(), spectrum), 0),
        Shape::new([s[0], s[1], s[2]]),
    );
    let scaled = times_decay::<B>(g_hat, decay);
    let dx = dct2d_reference::<B>(scaled, B::float_transpose(dct_h), B::float_transpose(dct_w));
    (dx, ddecay)
}

/// A 3×3 convolution (padding 1, dilation 1) of a channels-last map in Burn's operators:
/// `conv2d` between permutes.
fn conv_nhwc_reference<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
    options: ConvOptions<2>,
) -> FloatTensor<B> {
    let nchw = B::float_permute(x, &[0, 3, 1, 2]);
    let y = B::conv2d(nchw, weight, Some(bias), options);
    B::float_permute(y, &[0, 2, 3, 1])
}

/// Its backward pass in Burn's operators (`conv2d`'s own backward functions).
fn conv_nhwc_backward_reference<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    grad: FloatTensor<B>,
    options: ConvOptions<2>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let c = weight.shape()[0];
    let x = B::float_permute(x, &[0, 3, 1, 2]);
    let g = B::float_permute(grad, &[0, 3, 1, 2]);
    let dx = B::conv2d_x_backward(x.clone(), weight.clone(), g.clone(), options.clone());
    let dw = B::conv2d_weight_backward(x, weight, g.clone(), options);
    let db = B::float_reshape(B::float_sum_dims(g, &[0, 2, 3]), Shape::new([c]));
    (B::float_permute(dx, &[0, 2, 3, 1]), dw, db)
}

/// Stride `stride`, padding 1, one group: the dense convolution's options.
fn dense_options(stride: usize) -> ConvOptions<2> {
    ConvOptions::new([stride, stride], [1, 1], [1, 1], 1)
}

/// [`HostKernels::vheat_conv3x3`] in Burn's operators.
pub(super) fn conv3x3_reference<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
    stride: usize,
) -> FloatTensor<B> {
    conv_nhwc_reference::<B>(x, weight, bias, dense_options(stride))
}

/// [`HostKernels::vheat_conv3x3_backward`] in Burn's operators.
pub(super) fn conv3x3_backward_reference<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    grad: FloatTensor<B>,
    stride: usize,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    conv_nhwc_backward_reference::<B>(x, weight, grad, dense_options(stride))
}

/// [`HostKernels::vheat_dwconv3x3`] in Burn's operators.
pub(super) fn dwconv3x3_reference<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
) -> FloatTensor<B> {
    let c = weight.shape()[0];
    conv_nhwc_reference::<B>(x, weight, bias, depthwise_options(c))
}

/// [`HostKernels::vheat_dwconv3x3_backward`] in Burn's operators.
pub(super) fn dwconv3x3_backward_reference<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let c = weight.shape()[0];
    conv_nhwc_backward_reference::<B>(x, weight, grad, depthwise_options(c))
}

/// LayerNorm's backward pass in Burn's operators (see `super::layer_norm` for the formulas).
pub(super) fn layer_norm_backward_reference<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    grad: FloatTensor<B>,
    epsilon: f64,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let shape = x.shape();
    let last = shape.num_dims() - 1;
    let c = shape[last];
    let rows = shape.num_elements() / c.max(1);
    let mut bcast = vec![1; shape.num_dims()];
    bcast[last] = c;
    let gamma = B::float_reshape(gamma, Shape::from(bcast));
    let mean = B::float_mean_dim(x.clone(), last);
    let centred = B::float_sub(x, mean);
    let var = B::float_mean_dim(B::float_mul(centred.clone(), centred.clone()), last);
    let rstd = B::float_powf_scalar(B::float_add_scalar(var, epsilon.into()), (-0.5).into());
    let xhat = B::float_mul(centred, rstd.clone());
    let gg = B::float_mul(grad.clone(), gamma);
    let m1 = B::float_mean_dim(gg.clone(), last);
    let m2 = B::float_mean_dim(B::float_mul(gg.clone(), xhat.clone()), last);
    let inner = B::float_sub(B::float_sub(gg, m1), B::float_mul(xhat.clone(), m2));
    let dx = B::float_mul(rstd, inner);
    let flat = |t: FloatTensor<B>| {
        let t = B::float_reshape(t, Shape::new([rows, c]));
        B::float_reshape(B::float_sum_dim(t, 0), Shape::new([c]))
    };
    let dgamma = flat(B::float_mul(grad.clone(), xhat));
    let dbeta = flat(grad);
    (dx, dgamma, dbeta)
}

impl<B: Backend + HostKernels, C: CheckpointStrategy> HostKernels for Autodiff<B, C> {
    fn vheat_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct GeluBackward;

        impl<B: Backend + HostKernels> Backward<B, 1> for GeluBackward {
            type State = FloatTensor<B>;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let ids = ops.parents.map(|p| p.map(|node| node.id));
                let grad = grads.consume::<B>(&ops.node);
                if ids[0].is_some() {
                    register::<B, 1>(grads, ids, [B::vheat_gelu_backward(ops.state, grad)]);
                }
            }
        }

        let node = x.node();
        let x = x.into_primitive();
        match GeluBackward.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(x.clone(), B::vheat_gelu(x)),
            OpsKind::UnTracked(prep) => prep.finish(B::vheat_gelu(x)),
        }
    }

    fn vheat_silu_gate(a: FloatTensor<Self>, z: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct GateBackward;

        impl<B: Backend + HostKernels> Backward<B, 2> for GateBackward {
            type State = (FloatTensor<B>, FloatTensor<B>);

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let ids = ops.parents.map(|p| p.map(|node| node.id));
                let grad = grads.consume::<B>(&ops.node);
                let (a, z) = ops.state;
                let (da, dz) = B::vheat_silu_gate_backward(a, z, grad);
                register::<B, 2>(grads, ids, [da, dz]);
            }
        }

        let nodes = [a.node(), z.node()];
        let (a, z) = (a.into_primitive(), z.into_primitive());
        match GateBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = B::vheat_silu_gate(a.clone(), z.clone());
                prep.finish((a, z), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::vheat_silu_gate(a, z)),
        }
    }

    fn vheat_heat_decay(k: FloatTensor<Self>, freq: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct DecayBackward;

        impl<B: Backend + HostKernels> Backward<B, 1> for DecayBackward {
            type State = (FloatTensor<B>, FloatTensor<B>);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let ids = ops.parents.map(|p| p.map(|node| node.id));
                let grad = grads.consume::<B>(&ops.node);
                if ids[0].is_some() {
                    let (k, freq) = ops.state;
                    let dk = B::vheat_heat_decay_backward(k, freq, grad);
                    register::<B, 1>(grads, ids, [dk]);
                }
            }
        }

        // `freq` is a constant (the cached frequency grid): only `k` is a parent.
        let node = k.node();
        let (k, freq) = (k.into_primitive(), freq.into_primitive());
        match DecayBackward
            .prepare::<C>([node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::vheat_heat_decay(k.clone(), freq.clone());
                prep.finish((k, freq), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::vheat_heat_decay(k, freq)),
        }
    }

    fn vheat_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct LayerNormBackward;

        impl<B: Backend + HostKernels> Backward<B, 3> for LayerNormBackward {
            type State = (FloatTensor<B>, FloatTensor<B>, f64);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let ids = ops.parents.map(|p| p.map(|node| node.id));
                let grad = grads.consume::<B>(&ops.node);
                let (x, gamma, epsilon) = ops.state;
                let (dx, dgamma, dbeta) = B::vheat_layer_norm_backward(x, gamma, grad, epsilon);
                register::<B, 3>(grads, ids, [dx, dgamma, dbeta]);
            }
        }

        let nodes = [x.node(), gamma.node(), beta.node()];
        let (x, gamma, beta) = (
            x.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
        );
        match LayerNormBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::vheat_layer_norm(x.clone(), gamma.clone(), beta, epsilon);
                prep.finish((x, gamma, epsilon), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::vheat_layer_norm(x, gamma, beta, epsilon)),
        }
    }

    fn vheat_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        out_in: bool,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct LinearBackward;

        impl<B: Backend + HostKernels> Backward<B, 3> for LinearBackward {
            type State = (FloatTensor<B>, FloatTensor<B>, bool);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let ids = ops.parents.map(|p| p.map(|node| node.id));
                let grad = grads.consume::<B>(&ops.node);
                let (x, weight, out_in) = ops.state;
                let (dx, dw, db) = B::vheat_linear_backward(x, weight, grad, out_in);
                register::<B, 3>(grads, ids, [dx, dw, db]);
            }
        }

        let nodes = [x.node(), weight.node(), bias.node()];
        let (x, weight, bias) = (
            x.into_primitive(),
            weight.into_primitive(),
            bias.into_primitive(),
        );
        match LinearBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::vheat_linear(x.clone(), weight.clone(), bias, out_in);
                prep.finish((x, weight, out_in), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::vheat_linear(x, weight, bias, out_in)),
        }
    }

    fn vheat_mix_along(x: FloatTensor<Self>, matrix: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct MixBackward;

        impl<B: Backend + HostKernels> Backward<B, 2> for MixBackward {
            type State = (FloatTensor<B>, FloatTensor<B>);

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let [node_x, node_matrix] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x, matrix) = ops.state;
                if let Some(node) = node_matrix {
                    grads.register::<B>(node.id, mix_along_matrix_grad::<B>(x, grad.clone()));
                }
                if let Some(node) = node_x {
                    // The transpose applied along the same axis (for the orthonormal DCTs,
                    // the inverse transform).
                    let dx = B::vheat_mix_along(grad, B::float_transpose(matrix));
                    grads.register::<B>(node.id, dx);
                }
            }
        }

        let nodes = [x.node(), matrix.node()];
        let (x, matrix) = (x.into_primitive(), matrix.into_primitive());
        match MixBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = B::vheat_mix_along(x.clone(), matrix.clone());
                prep.finish((x, matrix), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::vheat_mix_along(x, matrix)),
        }
    }

    fn vheat_dwconv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct DepthwiseBackward;

        impl<B: Backend + HostKernels> Backward<B, 3> for DepthwiseBackward {
            type State = (FloatTensor<B>, FloatTensor<B>);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let ids = ops.parents.map(|p| p.map(|node| node.id));
                let grad = grads.consume::<B>(&ops.node);
                let (x, weight) = ops.state;
                let (dx, dw, db) = B::vheat_dwconv3x3_backward(x, weight, grad);
                register::<B, 3>(grads, ids, [dx, dw, db]);
            }
        }

        let nodes = [x.node(), weight.node(), bias.node()];
        let (x, weight, bias) = (
            x.into_primitive(),
            weight.into_primitive(),
            bias.into_primitive(),
        );
        match DepthwiseBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::vheat_dwconv3x3(x.clone(), weight.clone(), bias);
                prep.finish((x, weight), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::vheat_dwconv3x3(x, weight, bias)),
        }
    }

    fn vheat_diffuse(
        x: FloatTensor<Self>,
        decay: FloatTensor<Self>,
        dct_h: FloatTensor<Self>,
        dct_w: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct DiffuseBackward;

        impl<B: Backend + HostKernels> Backward<B, 2> for DiffuseBackward {
            /// The decay, the two bases and the forward pass's spectrum.
            type State = (
                FloatTensor<B>,
                FloatTensor<B>,
                FloatTensor<B>,
                FloatTensor<B>,
            );

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let ids = ops.parents.map(|p| p.map(|node| node.id));
                let grad = grads.consume::<B>(&ops.node);
                let (decay, dct_h, dct_w, spectrum) = ops.state;
                let (dx, ddecay) = B::vheat_diffuse_backward(grad, decay, dct_h, dct_w, spectrum);
                register::<B, 2>(grads, ids, [dx, ddecay]);
            }
        }

        // The bases are constants: only `x` and `decay` are graph inputs.
        let nodes = [x.node(), decay.node()];
        let (x, decay) = (x.into_primitive(), decay.into_primitive());
        let (dct_h, dct_w) = (dct_h.into_primitive(), dct_w.into_primitive());
        match DiffuseBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (y, spectrum) = B::vheat_diffuse_keeping_spectrum(
                    x,
                    decay.clone(),
                    dct_h.clone(),
                    dct_w.clone(),
                );
                prep.finish((decay, dct_h, dct_w, spectrum), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::vheat_diffuse(x, decay, dct_h, dct_w)),
        }
    }

    fn vheat_residual(
        x: FloatTensor<Self>,
        branch: FloatTensor<Self>,
        scale: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct ResidualBackward;

        impl<B: Backend + HostKernels> Backward<B, 3> for ResidualBackward {
            /// The branch, only when the scale needs a gradient (else it is not kept), and the
            /// scale.
            type State = (Option<FloatTensor<B>>, FloatTensor<B>);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let ids = ops.parents.map(|p| p.map(|node| node.id));
                let grad = grads.consume::<B>(&ops.node);
                let (branch, scale) = ops.state;
                let want_dscale = ids[2].is_some() && branch.is_some();
                if let Some(id) = ids[0] {
                    grads.register::<B>(id, grad.clone());
                }
                if ids[1].is_none() && !want_dscale {
                    return;
                }
                // Without a kept branch (the scale needs no gradient) `grad` stands in for
                // it: only `∂/∂branch` is computed then, which does not read it.
                let branch = branch.unwrap_or_else(|| grad.clone());
                let (dbranch, dscale) =
                    B::vheat_residual_backward(branch, scale, grad, want_dscale);
                register::<B, 2>(
                    grads,
                    [ids[1], ids[2].filter(|_| want_dscale)],
                    [dbranch, dscale],
                );
            }
        }

        let keep_branch = scale.is_tracked();
        let nodes = [x.node(), branch.node(), scale.node()];
        let (x, branch, scale) = (
            x.into_primitive(),
            branch.into_primitive(),
            scale.into_primitive(),
        );
        match ResidualBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::vheat_residual(x, branch.clone(), scale.clone());
                prep.finish((keep_branch.then_some(branch), scale), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::vheat_residual(x, branch, scale)),
        }
    }

    fn vheat_residual_sum(x: FloatTensor<Self>, branch: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct SumBackward;

        impl<B: Backend + HostKernels> Backward<B, 2> for SumBackward {
            type State = ();

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let ids = ops.parents.map(|p| p.map(|node| node.id));
                let grad = grads.consume::<B>(&ops.node);
                // Both parents get the gradient itself (shared, not copied).
                register::<B, 2>(grads, ids, [grad.clone(), grad]);
            }
        }

        let nodes = [x.node(), branch.node()];
        let (x, branch) = (x.into_primitive(), branch.into_primitive());
        SumBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateless(B::vheat_residual_sum(x, branch))
    }

    fn vheat_conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Conv3x3Backward;

        impl<B: Backend + HostKernels> Backward<B, 3> for Conv3x3Backward {
            type State = (FloatTensor<B>, FloatTensor<B>, usize);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let ids = ops.parents.map(|p| p.map(|node| node.id));
                let grad = grads.consume::<B>(&ops.node);
                let (x, weight, stride) = ops.state;
                let (dx, dw, db) = B::vheat_conv3x3_backward(x, weight, grad, stride);
                register::<B, 3>(grads, ids, [dx, dw, db]);
            }
        }

        let nodes = [x.node(), weight.node(), bias.node()];
        let (x, weight, bias) = (
            x.into_primitive(),
            weight.into_primitive(),
            bias.into_primitive(),
        );
        match Conv3x3Backward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::vheat_conv3x3(x.clone(), weight.clone(), bias, stride);
                prep.finish((x, weight, stride), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::vheat_conv3x3(x, weight, bias, stride)),
        }
    }
}
