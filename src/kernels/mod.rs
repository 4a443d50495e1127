//! `kernels` — host fast paths for the CPU backend (flex) at inference.
//!
//! Burn's flex backend runs element-wise functions such as GELU and SiLU one element at a time
//! on one thread (`libm::erff`, `expf`), and runs convolutions on NCHW maps only, so a
//! channels-last depthwise convolution costs two full permute copies. These kernels do the same
//! arithmetic on the tensor's own buffer, vectorised (AVX2 where the CPU has it, chosen at run
//! time) and split over the rayon pool:
//!
//! - [`gelu`]: exact (erf) GELU, through an erfc approximation fitted here (relative error below
//!   1e-7 in exact arithmetic, 3.4e-7 measured in float32, against libm's 1 ulp);
//! - [`silu_gate`]: `a · z · σ(z)`, the heat operator's gate, in one pass;
//! - [`depthwise_conv3x3_nhwc`]: the heat operator's depthwise 3×3 on a channels-last map.
//!
//! Each function takes the fast path only when it is valid: the tensor is float32 on the flex
//! device **without autodiff** (inference). Everywhere else (autodiff, GPU backends, other
//! dtypes) it calls Burn's own operators, so training and gradients are unchanged. The parity
//! tests run the model on plain flex, so they check these kernels against the PyTorch fixtures.

mod activation;
mod depthwise;
mod math;

pub use activation::{gelu, silu_gate};
pub use depthwise::depthwise_conv3x3_nhwc;

use burn::prelude::*;
use burn::tensor::DType;

/// True when `x` can take a host fast path: float32 on the plain (non-autodiff) flex device.
pub fn on_host<const D: usize>(x: &Tensor<D>) -> bool {
    #[cfg(feature = "flex")]
    {
        let device = x.device();
        x.dtype() == DType::F32 && !device.is_autodiff() && device == Device::flex()
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = x;
        false
    }
}

/// Elements per parallel task: large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 1 << 14;

/// Runs `f` over `x`'s elements in place, in parallel chunks, and gives the tensor back.
/// `x` must satisfy [`on_host`]. The buffer is reused when `x` is its only owner.
fn map_in_place<const D: usize>(x: Tensor<D>, f: fn(&mut [f32])) -> Tensor<D> {
    use rayon::prelude::*;
    let device = x.device();
    let mut data = x.into_data();
    let values: &mut [f32] = data
        .as_mut_slice()
        .expect("on_host guarantees a float32 tensor");
    values.par_chunks_mut(CHUNK).for_each(f);
    Tensor::from_data(data, (&device, DType::F32))
}
