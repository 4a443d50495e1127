//! `kernels` — host fast paths for the CPU backend (flex), for inference and training.
//!
//! Burn's flex backend runs element-wise functions such as GELU and SiLU one element at a time
//! on one thread (`libm::erff`, `expf`), runs convolutions on NCHW maps only (a channels-last
//! depthwise convolution costs two full permute copies), and under autodiff decomposes
//! LayerNorm into eight generic operators, each a graph node with its own pass over memory.
//! These kernels do the same arithmetic on the tensor's own buffer, vectorised for the machine
//! they run on (AVX-512 where present, AVX2 otherwise, chosen at run time: [`isa`]) and split
//! over the rayon pool, forward **and backward**.
//!
//! # The operations
//! Each lives whole in one file under `ops/`: its backend extension trait, the public function
//! below, its reference, the flex implementation, the autodiff node with its handwritten
//! backward pass, the host loops and their unit tests. The reference is the one fallback for
//! every other backend (and for everything when the kernels are off): the trait's default
//! bodies and the public function's off-host path both call it.
//!
//! | function | what | file | reference |
//! |---|---|---|---|
//! | [`gelu`] | exact (erf) GELU, through an erfc approximation fitted here (relative error below 1e-7 in exact arithmetic, 3.4e-7 measured in float32) | `ops/gelu.rs` | Burn's `gelu`, `gelu_backward` |
//! | [`silu_gate`] | `a · z · σ(z)`, the heat operator's gate, in one pass | `ops/silu_gate.rs` | `silu_gate_reference`, `silu_gate_backward_reference` |
//! | [`heat_decay`] | the heat operator's spectral decay `exp(−ReLU(k)·(ωₙ² + ωₘ²))` in one pass | `ops/heat_decay.rs` | `heat_decay_reference`, `heat_decay_backward_reference` |
//! | [`layer_norm_with_epsilon`] | LayerNorm over the last (channel) axis | `ops/layer_norm.rs` | Burn's `layer_norm` (off the host, Burn's `LayerNorm::forward`); `layer_norm_backward_reference` |
//! | [`depthwise_conv3x3_nhwc`] | the heat operator's depthwise 3×3 on a channels-last map | `ops/depthwise.rs` | `conv_nhwc_reference` (in `ops/conv3x3.rs`) with one group per channel |
//! | [`conv3x3_nhwc`] | the stem's and downsamplings' dense strided 3×3 on a channels-last map, patches built per task into the crate's product | `ops/conv3x3.rs` | `conv_nhwc_reference`, `conv_nhwc_backward_reference` |
//! | [`linear`], [`linear_out_in`] | the projections `x·W + b` (the heat operator's linears, the MLP's 1×1 convolutions) through a product written for their short inner dimension | `ops/linear.rs` | `linear_reference` (Burn's `linear`), `linear_backward_reference` |
//! | [`mlp_out_in`] | the block's MLP `fc2(GELU(fc1(x)))` in one pass over row chunks (inference), its hidden activations never written to memory | `ops/mlp.rs` | the composition of [`linear_out_in`] and [`gelu`] |
//! | [`mix_along`] | a matrix applied along one axis: how the heat operator's DCTs run | `ops/mix_along.rs` | `mix_along_reference` |
//! | [`diffuse`] | the heat operator's whole diffusion `IDCT2D(DCT2D(x) ⊙ decay)` in one pass per axis; its backward is the same diffusion of the gradient plus `∂/∂decay` | `ops/diffuse.rs` | `diffuse_reference`, `diffuse_backward_reference` (also what `heat::diffuse` runs off the host) |
//! | [`residual`] | a block's residual connection `x + branch ⊙ scale` (layer scale and stochastic depth folded into one per-sample row) in one pass each way | `ops/residual.rs` | `residual_reference`, `residual_sum_reference`, `residual_backward_reference` |
//! | [`adamw_step`] | one AdamW step per parameter in one in-place pass (`train::FusedAdamW`) | `ops/adamw.rs` | `adamw_step_reference` (Burn's `AdamW`, in its order) |
//! | [`sum_of_squares`], [`scale`] | global-norm gradient clipping | `ops/clip.rs` | `sum_of_squares_reference`, `scale_reference` |
//!
//! Besides them: [`on_pool`] runs a whole model call (forward pass, training step) on a worker
//! of the rayon pool, so that the kernels' parallel loops inside start there instead of each
//! handing work over from the caller's thread and waking it back up.
//!
//! # The rooms
//! - `ops/` — the operations above;
//! - `autodiff.rs` — the autodiff glue every operation shares (one graph node per call);
//! - `flex.rs` — reading and making flex tensors;
//! - `gemm/` — the matrix product: packing, driver, one file per instruction family's tile,
//!   the DCTs' product along an axis, the weight-gradient product, the cache of packed weights;
//! - `runtime/` — instruction-family dispatch ([`isa`]), the pool, buffers made on the pool,
//!   `exp` and `erfc`, and reductions in a fixed order.
//!
//! The products, the norms, the depthwise convolution, the gate's gradients and the
//! diffusion's transforms write their outputs once, into memory not cleared first; the few
//! outputs that are accumulated into are zeroed, and copies and gathers from strided views
//! run on the pool (`runtime/buffer.rs`), as do the bias gradients' sums (`runtime/reduce.rs`):
//! done by one thread, those would leave the pool idle.
//!
//! Each operation is a Burn backend extension with a handwritten backward pass ([`HostKernels`]
//! gathers them), so on `Autodiff<Flex>` a training step records one graph node per call and
//! its backward runs the host kernels too. The fast path is taken when every input is float32
//! on the flex device, with or without autodiff. Everywhere else (GPU backends, other dtypes),
//! and everywhere when `VHEAT_HOST_KERNELS=off` is set or [`set_enabled`]`(false)` was called,
//! each function runs its reference, so results are the same up to float32 rounding. The
//! parity tests run the model on plain flex, so they check these kernels against the PyTorch
//! fixtures; `tests/kernels.rs` and `tests/kernel_grads.rs` check values and gradients against
//! float64 and Burn's operators on the detected ISA and on the forced portable path.

mod autodiff;
#[cfg(feature = "flex")]
mod flex;
mod gemm;
mod ops;
mod runtime;

pub use ops::adamw::{adamw_step, AdamwOps, AdamwStep};
pub use ops::clip::{scale, sum_of_squares, ClipOps};
pub use ops::conv3x3::{conv3x3_nhwc, Conv3x3Ops};
pub use ops::depthwise::{depthwise_conv3x3_nhwc, DepthwiseOps};
pub use ops::diffuse::{diffuse, DiffuseOps};
pub use ops::gelu::{gelu, GeluOps};
pub use ops::heat_decay::{heat_decay, HeatDecayOps};
pub use ops::layer_norm::{layer_norm_with_epsilon, LayerNormOps};
pub use ops::linear::{linear, linear_out_in, LinearOps};
pub use ops::mix_along::{mix_along, MixAlongOps};
pub use ops::mlp::{mlp_out_in, MlpOps};
pub use ops::residual::{residual, ResidualOps};
pub use ops::silu_gate::{silu_gate, SiluGateOps};
pub use runtime::isa;
pub use runtime::pool::{on_pool, pays_on_pool, ON_POOL_MAX_PIXELS};

use std::sync::atomic::{AtomicBool, Ordering};

use burn::prelude::*;
#[cfg(feature = "flex")]
use burn::tensor::DType;

/// Every operation of the kernels as backend extensions: implemented by flex, by `Autodiff`
/// over a backend that has them, and (through Burn's routing) by `Dispatch`.
pub trait HostKernels:
    AdamwOps
    + ClipOps
    + Conv3x3Ops
    + DepthwiseOps
    + DiffuseOps
    + GeluOps
    + HeatDecayOps
    + LayerNormOps
    + LinearOps
    + MixAlongOps
    + MlpOps
    + ResidualOps
    + SiluGateOps
{
}

impl<B> HostKernels for B where
    B: AdamwOps
        + ClipOps
        + Conv3x3Ops
        + DepthwiseOps
        + DiffuseOps
        + GeluOps
        + HeatDecayOps
        + LayerNormOps
        + LinearOps
        + MixAlongOps
        + MlpOps
        + ResidualOps
        + SiluGateOps
{
}

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
}
