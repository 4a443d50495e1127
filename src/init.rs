//! The reference's parameter initialisation, shared by every layer.

use burn::module::Param;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;

/// A Linear `d_in → d_out` initialised as the reference's `_init_weights` does it:
/// weights from N(0, 0.02²), bias zero.
pub(crate) fn reference_linear(d_in: usize, d_out: usize, device: &Device) -> Linear {
    let mut l = LinearConfig::new(d_in, d_out)
        .with_initializer(Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        })
        .init(device);
    l.bias = Some(Param::from_tensor(Tensor::zeros([d_out], device)));
    l
}
