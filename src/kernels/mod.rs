//! `kernels` — host fast paths for the CPU backend (flex), for inference and training.
//!
//! Burn's flex backend runs element-wise functions such as GELU and SiLU one element at a time
//! on one thread (`libm::erff`, `expf`), runs convolutions on NCHW maps only (a channels-last
//! depthwise convolution costs two full permute copies), and under autodiff decomposes
//! LayerNorm into eight generic operators, each a graph node with its own pass over memory.
//! These kernels do the same arithmetic on the tensor's own buffer, vectorised for the machine
//! they run on (AVX-512 where present, AVX2 otherwise, chosen at run time: [`isa`]) and split
//! over the rayon pool, forward **and backward**:
//!
//! - [`gelu`]: exact (erf) GELU, through an erfc approximation fitted here (relative error below
//!   1e-7 in exact arithmetic, 3.4e-7 measured in float32, against libm's 1 ulp);
//! - [`silu_gate`]: `a · z · σ(z)`, the heat operator's gate, in one pass;
//! - [`heat_decay`]: the heat operator's spectral decay `exp(−ReLU(k)·(ωₙ² + ωₘ²))` from the
//!   conductivity predictor's output, in one pass;
//! - [`layer_norm`]: LayerNorm over the last (channel) axis;
//! - [`depthwise_conv3x3_nhwc`]: the heat operator's depthwise 3×3 on a channels-last map;
//! - [`conv3x3_nhwc`]: the stem's and downsamplings' dense strided 3×3 on a channels-last map,
//!   patches built per task straight into the crate's matrix product, forward and backward;
//! - [`linear`] and [`linear_out_in`]: the projections `x·W + b` (the heat operator's
//!   linears, the MLP's 1×1 convolutions), through a matrix product written for their short
//!   inner dimension (see `gemm.rs`);
//! - [`mlp_out_in`]: the block's MLP `fc2(GELU(fc1(x)))` in one pass over row chunks
//!   (inference), its hidden activations never written to memory;
//! - [`mix_along`]: a matrix applied along one axis, which is how the heat operator's DCTs run;
//! - [`diffuse`]: the heat operator's whole diffusion `IDCT2D(DCT2D(x) ⊙ decay)` in one pass
//!   per axis, whose backward is the same diffusion of the gradient plus `∂/∂decay`.
//! - [`residual`]: a block's residual connection `x + branch ⊙ scale` (layer scale and
//!   stochastic depth folded into one per-sample row), in one pass each way;
//! - [`adamw_step`]: one AdamW step per parameter in one in-place pass (the optimiser
//!   `train::FusedAdamW` is built on it), and [`sum_of_squares`] and [`scale`] for global-norm
//!   gradient clipping;
//! - [`on_pool`]: a whole model call (forward pass, training step) run on a worker of the
//!   rayon pool, so that the kernels' parallel loops inside start there instead of each
//!   handing work over from the caller's thread and waking it back up.
//!
//! The products, the norms, the depthwise convolution, the gate's gradients and the
//! diffusion's transforms write their outputs once, into memory not cleared first; the few
//! outputs that are accumulated into are zeroed, and copies and gathers from strided views
//! run on the pool (`buffer.rs`), as do the bias gradients' sums (`reduce.rs`): done by one
//! thread, those left the pool idle for about a quarter of a vHeat-T training step.
//!
//! Each is a Burn backend extension ([`HostKernels`]) with a handwritten backward pass, so on
//! `Autodiff<Flex>` a training step records one graph node per call and its backward runs the
//! host kernels too. The fast path is taken when every input is float32 on the flex device,
//! with or without autodiff. Everywhere else (GPU backends, other dtypes), and everywhere when
//! `VHEAT_HOST_KERNELS=off` is set or [`set_enabled`]`(false)` was called, each function calls
//! Burn's own operators, so results are the same up to float32 rounding. The parity tests run
//! the model on plain flex, so they check these kernels against the PyTorch fixtures;
//! `tests/kernels.rs` checks values and gradients against float64 and Burn's operators on the
//! detected ISA and on the forced portable path.

mod activation;
mod adamw;
mod buffer;
mod conv;
mod decay;
mod depthwise;
mod diffusion;
#[cfg(feature = "flex")]
mod flex;
mod gemm;
mod grad;
pub mod isa;
mod layer_norm;
mod math;
mod mlp;
#[cfg(feature = "flex")]
mod packed_cache;
mod pool;
mod reduce;
mod residual;
mod transposed_product;

pub use adamw::AdamwStep;
pub use grad::HostKernels;
pub use pool::{on_pool, pays_on_pool, ON_POOL_MAX_PIXELS};

use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::Dispatch;
use burn::nn::LayerNorm;
use burn::prelude::*;
use burn::tensor::DType;

/// Elements per parallel task: large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 1 << 14;

/// The environment variable that turns the host kernels off (`off`, `0` or `false`).
pub const HOST_KERNELS_ENV: &str = "VHEAT_HOST_KERNELS";

static DISABLED: AtomicBool = AtomicBool::new(false);

/// Turns the host kernels on (the default) or off for the whole process; off, every function
/// of this module calls Burn's operators. For measuring what the kernels gain.
pub fn set_enabled(on: bool) {
    DISABLED.store(!on, Ordering::Relaxed);
}

/// Whether the host kernels are on: not switched off by [`set_enabled`] or `VHEAT_HOST_KERNELS`.
pub fn enabled() -> bool {
    static ENV_OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let env_off = *ENV_OFF.get_or_init(|| {
        matches!(
            std::env::var(HOST_KERNELS_ENV).as_deref(),
            Ok("off" | "0" | "false")
        )
    });
    !env_off && !DISABLED.load(Ordering::Relaxed)
}

/// True when `x` takes the host fast path: float32 on the flex device, with or without
/// autodiff, and the kernels [`enabled`].
pub fn on_host<const D: usize>(x: &Tensor<D>) -> bool {
    #[cfg(feature = "flex")]
    {
        let device = x.device();
        enabled() && x.dtype() == DType::F32 && device.without_autodiff() == Device::flex()
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = x;
        false
    }
}

/// Exact GELU, `x · Φ(x) = ½·x·(1 + erf(x/√2))`, element-wise.
///
/// On the host fast path the result is within 1.1e-7·max(1, |x|) of the float64 value
/// (measured over [−12, 12]) and its gradient within 2e-7·max(1, |x|). Elsewhere it is Burn's
/// `activation::gelu`.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if on_host(&x) {
        Tensor::from_dispatch(<Dispatch as HostKernels>::vheat_gelu(x.into_dispatch()))
    } else {
        burn::tensor::activation::gelu(x)
    }
}

/// `a · SiLU(z) = a · z · σ(z)`, element-wise over two tensors of the same shape.
///
/// One pass on the host fast path (σ through a vectorised `exp`), with a one-pass backward;
/// elsewhere Burn's `a * activation::silu(z)`.
///
/// # Panics
/// If the shapes differ (callers pass the two halves of one projection).
pub fn silu_gate<const D: usize>(a: Tensor<D>, z: Tensor<D>) -> Tensor<D> {
    assert_eq!(a.dims(), z.dims(), "silu_gate needs equal shapes");
    if on_host(&a) && on_host(&z) {
        Tensor::from_dispatch(<Dispatch as HostKernels>::vheat_silu_gate(
            a.into_dispatch(),
            z.into_dispatch(),
        ))
    } else {
        a * burn::tensor::activation::silu(z)
    }
}

/// The heat operator's spectral decay `exp(−ReLU(k)·freq)`: `k` `[H, W, C]` is the
/// conductivity predictor's raw output and `freq` `[H, W]` the frequency grid `ωₙ² + ωₘ²`
/// (`heat::frequency_sq`), a constant that gets no gradient.
///
/// One vectorised pass (forward and backward) on the host fast path; elsewhere Burn's
/// `(relu(k) · freq).neg().exp()`.
///
/// # Panics
/// If `freq` is not `[H, W]` for `k`'s `[H, W, C]`.
pub fn heat_decay(k: Tensor<3>, freq: Tensor<2>) -> Tensor<3> {
    let [h, w, _] = k.dims();
    assert_eq!(
        freq.dims(),
        [h, w],
        "heat_decay needs freq [H, W] for k [H, W, C]"
    );
    if on_host(&k) && on_host(&freq) {
        Tensor::from_dispatch(<Dispatch as HostKernels>::vheat_heat_decay(
            k.into_dispatch(),
            freq.into_dispatch(),
        ))
    } else {
        (burn::tensor::activation::relu(k) * freq.unsqueeze_dim(2))
            .neg()
            .exp()
    }
}

/// `norm.forward(x)` — LayerNorm over the last axis — through the host kernel where it applies.
///
/// The kernel needs the norm's epsilon, which Burn's `LayerNorm` keeps private; it is read
/// from the module's display (`epsilon: …`, printed in Rust's shortest round-trip form, so
/// exact). A norm without bias, or one whose display cannot be read, runs Burn's `forward`.
pub fn layer_norm<const D: usize>(x: Tensor<D>, norm: &LayerNorm) -> Tensor<D> {
    let (Some(beta), Some(epsilon)) = (norm.beta.as_ref(), layer_norm_epsilon(norm)) else {
        return norm.forward(x);
    };
    let gamma = norm.gamma.val();
    let beta = beta.val();
    if !(on_host(&x) && on_host(&gamma) && on_host(&beta)) || x.dims()[D - 1] != gamma.dims()[0] {
        return norm.forward(x);
    }
    Tensor::from_dispatch(<Dispatch as HostKernels>::vheat_layer_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
    ))
}

/// One AdamW step on a parameter (`(param, moment_1, moment_2)` after it; see [`AdamwStep`]
/// for the arithmetic): on the host fast path one pass over the four tensors, in place where
/// they are not shared, bit-identical to Burn's `AdamW`; elsewhere the same operators Burn's
/// `AdamW` runs, in its order.
///
/// # Panics
/// If the four shapes differ.
pub fn adamw_step<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moment_1: Tensor<D>,
    moment_2: Tensor<D>,
    step: AdamwStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let shape = param.dims();
    assert!(
        [grad.dims(), moment_1.dims(), moment_2.dims()] == [shape; 3],
        "adamw_step needs equal shapes"
    );
    let host = [&param, &grad, &moment_1, &moment_2]
        .iter()
        .all(|t| on_host(t));
    let (param, grad) = (param.into_dispatch(), grad.into_dispatch());
    let (m, v) = (moment_1.into_dispatch(), moment_2.into_dispatch());
    let (p, m, v) = if host {
        <Dispatch as HostKernels>::vheat_adamw_step(param, grad, m, v, step)
    } else {
        grad::adamw_step_reference::<Dispatch>(param, grad, m, v, step)
    };
    (
        Tensor::from_dispatch(p),
        Tensor::from_dispatch(m),
        Tensor::from_dispatch(v),
    )
}

/// `Σ x²` over all of `x`, as a one-value tensor (not read back). On the host fast path one
/// parallel pass accumulating in float64, in a fixed order; elsewhere `(x·x).sum()`.
pub fn sum_of_squares<const D: usize>(x: Tensor<D>) -> Tensor<1> {
    let host = on_host(&x);
    let x = x.into_dispatch();
    Tensor::from_dispatch(if host {
        <Dispatch as HostKernels>::vheat_sum_of_squares(x)
    } else {
        grad::sum_of_squares_reference::<Dispatch>(x)
    })
}

/// `x · coef` for a one-value `coef`: one parallel pass on the host fast path, in place when
/// `x` is not shared; elsewhere a broadcast product.
pub fn scale<const D: usize>(x: Tensor<D>, coef: Tensor<1>) -> Tensor<D> {
    let host = on_host(&x) && on_host(&coef);
    let (x, coef) = (x.into_dispatch(), coef.into_dispatch());
    Tensor::from_dispatch(if host {
        <Dispatch as HostKernels>::vheat_scale(x, coef)
    } else {
        grad::scale_reference::<Dispatch>(x, coef)
    })
}

/// A residual connection `x + branch ⊙ scale`, for `x` and `branch` of one shape `[B, …, C]`
/// and `scale` `[B, C]`: one row per sample, broadcast over its pixels (a block's layer scale
/// times the sample's stochastic-depth factor); without `scale`, `x + branch`.
///
/// On the host fast path it is one parallel pass, forward and backward (`∂/∂x` is the
/// incoming gradient itself, `∂/∂branch` one scaled pass, `∂/∂scale` summed per sample only
/// when `scale` needs a gradient); elsewhere Burn's broadcast product and sum.
///
/// # Panics
/// If `branch`'s shape is not `x`'s, or `scale` is not `[B, C]` for it.
pub fn residual<const D: usize>(
    x: Tensor<D>,
    branch: Tensor<D>,
    scale: Option<Tensor<2>>,
) -> Tensor<D> {
    let dims = x.dims();
    assert_eq!(branch.dims(), dims, "residual needs equal shapes");
    let host = on_host(&x) && on_host(&branch) && D >= 2;
    let Some(scale) = scale else {
        if !host {
            return x + branch;
        }
        return Tensor::from_dispatch(<Dispatch as HostKernels>::vheat_residual_sum(
            x.into_dispatch(),
            branch.into_dispatch(),
        ));
    };
    assert!(
        D >= 2 && scale.dims() == [dims[0], dims[D - 1]],
        "residual scale must be [B, C]"
    );
    if !(host && on_host(&scale)) {
        let mut rows = [1usize; D];
        rows[0] = dims[0];
        rows[D - 1] = dims[D - 1];
        return x + branch * scale.reshape(rows);
    }
    Tensor::from_dispatch(<Dispatch as HostKernels>::vheat_residual(
        x.into_dispatch(),
        branch.into_dispatch(),
        scale.into_dispatch(),
    ))
}

/// The epsilon of a Burn `LayerNorm`, read from its display
/// (`LayerNorm {d_model: 6, epsilon: 0.00001, …}`); `None` if the display has no readable one.
pub fn layer_norm_epsilon(norm: &LayerNorm) -> Option<f64> {
    let shown = norm.to_string();
    let rest = &shown[shown.find("epsilon: ")? + "epsilon: ".len()..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// `y[b, i, j, c] = bias[c] + Σ_{di,dj ∈ {-1,0,1}} w[c, 0, 1+di, 1+dj] · x[b, i+di, j+dj, c]`,
/// with `x` zero outside the map: a depthwise 3×3 convolution, stride 1, padding 1, of a
/// channels-last map `[B, H, W, C]`, with `weight` in PyTorch's layout `[C, 1, 3, 3]`.
///
/// On the host fast path it runs on the map as it is, one output row per task, vectorised over
/// channels, and so does its backward pass; elsewhere it permutes to NCHW, calls Burn's
/// `conv2d` and permutes back.
///
/// # Panics
/// If `weight` is not `[C, 1, 3, 3]` or `bias` not `[C]` for the map's `C`.
pub fn depthwise_conv3x3_nhwc(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
) -> Tensor<4> {
    let [_, _, _, c] = x.dims();
    assert_eq!(weight.dims(), [c, 1, 3, 3], "depthwise 3×3 weight");
    if let Some(bias) = &bias {
        assert_eq!(bias.dims(), [c], "depthwise bias");
    }
    if !(on_host(&x) && on_host(&weight) && bias.as_ref().is_none_or(on_host)) {
        return burn_conv3x3_nhwc(x, weight, bias, 1, c);
    }
    let bias = bias.unwrap_or_else(|| Tensor::zeros([c], &x.device()));
    Tensor::from_dispatch(<Dispatch as HostKernels>::vheat_dwconv3x3(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
    ))
}

/// Burn's `conv2d` (3×3, padding 1) of a channels-last map, between permutes: the path of
/// [`depthwise_conv3x3_nhwc`] and [`conv3x3_nhwc`] off the host.
fn burn_conv3x3_nhwc(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    stride: usize,
    groups: usize,
) -> Tensor<4> {
    let options = burn::tensor::ops::ConvOptions::new([stride, stride], [1, 1], [1, 1], groups);
    burn::tensor::module::conv2d(x.permute([0, 3, 1, 2]), weight, bias, options)
        .permute([0, 2, 3, 1])
}

/// A dense 3×3 convolution with padding 1 and stride `stride` of a channels-last map `x`
/// (`[B, H, W, C_in]`), with `weight` in PyTorch's layout `[C_out, C_in, 3, 3]`: the
/// channels-last `[B, H_out, W_out, C_out]` result, `H_out = (H − 1) / stride + 1`.
///
/// On flex it runs through the crate's matrix product with the patches built from the map as
/// it is, with a handwritten backward under autodiff (the input gradient gathered from the
/// patch gradients in a fixed order; the weight gradient from the patch matrix through Burn's
/// product); on every other backend it is Burn's `conv2d` between permutes.
///
/// # Panics
/// If `weight` is not `[C_out, C_in, 3, 3]` for the map's `C_in`, `bias` not `[C_out]`, or
/// `stride` is 0.
pub fn conv3x3_nhwc(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    stride: usize,
) -> Tensor<4> {
    let [_, _, _, c_in] = x.dims();
    let [c_out, w_in, kh, kw] = weight.dims();
    assert!(stride > 0, "convolution stride 0");
    assert_eq!([w_in, kh, kw], [c_in, 3, 3], "3×3 convolution weight");
    if let Some(bias) = &bias {
        assert_eq!(bias.dims(), [c_out], "convolution bias");
    }
    if !(on_host(&x) && on_host(&weight) && bias.as_ref().is_none_or(on_host)) {
        return burn_conv3x3_nhwc(x, weight, bias, stride, 1);
    }
    let bias = bias.unwrap_or_else(|| Tensor::zeros([c_out], &x.device()));
    Tensor::from_dispatch(<Dispatch as HostKernels>::vheat_conv3x3(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        stride,
    ))
}

/// `x · weight + bias` over the last axis (`[…, K]` → `[…, N]`) with `weight` `[K, N]`, as
/// `burn::tensor::module::linear`; through the host product on the fast path (forward and
/// backward), Burn's elsewhere.
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
        let weight = if out_in { weight.transpose() } else { weight };
        return burn::tensor::module::linear(x, weight, bias);
    }
    let bias = bias.unwrap_or_else(|| Tensor::zeros([n], &x.device()));
    Tensor::from_dispatch(<Dispatch as HostKernels>::vheat_linear(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        out_in,
    ))
}

/// The block's MLP, `linear_out_in(gelu(linear_out_in(x, fc1, b1)), fc2, b2)`, with both
/// weights in PyTorch's `[out, in]` layout.
///
/// On plain flex (inference) with enough rows it is one pass over chunks of rows: each chunk's
/// hidden activations live in a reused per-thread buffer, never in a tensor (see `mlp.rs`);
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
    Tensor::from_dispatch(<Dispatch as HostKernels>::vheat_mlp(
        x.into_dispatch(),
        fc1.into_dispatch(),
        b1.into_dispatch(),
        fc2.into_dispatch(),
        b2.into_dispatch(),
    ))
}

/// `y[b, i, j] = Σ_t matrix[i, t] · x[b, t, j]`: `matrix` (`[m, n]`) applied along the middle
/// axis of `x` (`[before, n, after]` → `[before, m, after]`), as one broadcast batched
/// `matmul`. On the host fast path (`n ≤ 256`) it reads `x` in place with the crate's matrix
/// product, and its backward pass applies `matrixᵀ` the same way; elsewhere it is Burn's
/// `matrix.unsqueeze().matmul(x)`.
pub fn mix_along(x: Tensor<3>, matrix: Tensor<2>) -> Tensor<3> {
    let [_, n, _] = x.dims();
    if !(on_host(&x) && on_host(&matrix)) || matrix.dims()[1] != n {
        let m: Tensor<3> = matrix.unsqueeze();
        return m.matmul(x);
    }
    Tensor::from_dispatch(<Dispatch as HostKernels>::vheat_mix_along(
        x.into_dispatch(),
        matrix.into_dispatch(),
    ))
}

/// `IDCT2D(DCT2D(x) ⊙ decay)`: the heat operator's diffusion of a channels-last map `x`
/// (`[B, H, W, C]`) with `decay` (`[H, W, C]`, broadcast over the batch), given the orthonormal
/// DCT-II matrices `dct_h` (`[H, H]`) and `dct_w` (`[W, W]`); the inverse transforms are their
/// transposes.
///
/// On the host fast path (both axes at most 256 long) the transforms along W and the decay
/// between them run on one row of the map at a time (see `diffusion.rs`), and under autodiff
/// the whole diffusion is one graph node whose backward is the same diffusion of the gradient,
/// plus `∂L/∂decay = Σ_b DCT2D(x)[b] ⊙ DCT2D(∂L/∂y)[b]`. Elsewhere it is four batched matrix
/// products and a broadcast product in Burn's operators.
///
/// # Panics
/// If the shapes do not agree as above.
pub fn diffuse(x: Tensor<4>, decay: Tensor<3>, dct_h: Tensor<2>, dct_w: Tensor<2>) -> Tensor<4> {
    let [_, h, w, c] = x.dims();
    assert_eq!(decay.dims(), [h, w, c], "diffusion decay");
    assert_eq!(dct_h.dims(), [h, h], "diffusion basis along H");
    assert_eq!(dct_w.dims(), [w, w], "diffusion basis along W");
    let host = [
        on_host(&x),
        on_host(&decay),
        on_host(&dct_h),
        on_host(&dct_w),
    ];
    if host.iter().all(|&on| on) && diffusion::fits(x.dims()) {
        return Tensor::from_dispatch(<Dispatch as HostKernels>::vheat_diffuse(
            x.into_dispatch(),
            decay.into_dispatch(),
            dct_h.into_dispatch(),
            dct_w.into_dispatch(),
        ));
    }
    let along = |x: Tensor<4>, axis: usize, matrix: Tensor<2>| {
        let dims = x.dims();
        let before: usize = dims[..axis].iter().product();
        let after: usize = dims[axis + 1..].iter().product();
        let m: Tensor<3> = matrix.unsqueeze();
        m.matmul(x.reshape([before, dims[axis], after]))
            .reshape(dims)
    };
    let spectrum = along(along(x, 1, dct_h.clone()), 2, dct_w.clone());
    let scaled = spectrum * decay.unsqueeze::<4>();
    along(along(scaled, 1, dct_h.transpose()), 2, dct_w.transpose())
}

/// A small linear congruential sequence in [−1, 1): deterministic test operands for the
/// kernels' unit tests, without a dependency.
#[cfg(test)]
pub(crate) fn test_values(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;

    #[test]
    fn switching_the_kernels_off_hands_every_call_to_burn() {
        let _lock = isa::tests_lock(); // set_enabled is process-wide
        let x = Tensor::<1>::from_floats([-2.0, -0.5, 0.0, 0.5, 3.0], &Device::flex());
        assert!(on_host(&x));
        set_enabled(false);
        let off = on_host(&x);
        let burn_gelu = gelu(x.clone()).into_data();
        set_enabled(true);
        assert!(!off, "switched off, nothing takes the host path");
        // Off, `gelu` is Burn's operator itself.
        burn_gelu.assert_eq(&burn::tensor::activation::gelu(x.clone()).into_data(), true);
        assert!(on_host(&x), "switched on again");
    }

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
