//! The kernels' operations, one file each: its backend extension trait (whose default bodies
//! are its reference), the public function the model calls, the reference in Burn's
//! operators, the flex implementation, the autodiff node with its handwritten backward pass,
//! the host loops and their unit tests. See the [`kernels`](super) docs for the list.

pub(crate) mod adamw;
pub(crate) mod clip;
pub(crate) mod conv3x3;
pub(crate) mod depthwise;
pub(crate) mod diffuse;
pub(crate) mod gelu;
pub(crate) mod heat_decay;
pub(crate) mod layer_norm;
pub(crate) mod linear;
pub(crate) mod mix_along;
pub(crate) mod mlp;
pub(crate) mod residual;
pub(crate) mod silu_gate;
