//! `hco` — the heat-conduction operator (HCO), vHeat's replacement for attention.
//!
//! # What it computes
//! The operator treats its input feature map as a temperature field `u` on an `H × W` plate
//! with insulated (Neumann) borders and lets heat flow for one unit of time under
//!
//! ```text
//!     ∂u/∂t = k · ∇²u = k · (∂²u/∂x² + ∂²u/∂y²),      ∂u/∂n = 0 on the border.
//! ```
//!
//! The cosine modes diagonalise the Neumann Laplacian, so the solution is exact in the DCT
//! domain (see [`crate::heat`]):
//!
//! ```text
//!     u_t = IDCT2D( DCT2D(u_0) ⊙ exp(-(ωₙ² + ωₘ²))^k ),   ωₙ = πn/H,  ωₘ = πm/W.
//! ```
//!
//! Every output pixel depends on every input pixel (a global receptive field), at
//! `O(N^1.5)` cost for `N` pixels: two `H × H` and two `W × W` matrix multiplies.
//!
//! # What `k` is
//! The thermal diffusivity `k ≥ 0` is not one number: the network predicts one value per
//! frequency `(n, m)` and per channel `c` from a learnable **frequency-value embedding** (FVE),
//! an `[H, W, C]` parameter owned by the stage, through `k = ReLU(Linear(FVE))` (the
//! reference's `to_k`). `k = 0` leaves a mode untouched, large `k` erases it; the DC mode
//! `(0, 0)` has `ω = 0` and is never damped, so the channel mean (the total heat) is conserved.
//!
//! # The whole operator ([`HeatConduction`], the reference's `Heat2D`)
//! ```text
//!     x  ← depthwise conv3×3(u)
//!     x, z ← split(Linear_{C→2C}(x))
//!     x  ← IDCT2D( DCT2D(x) ⊙ decay^k )
//!     y  ← Linear_{C→C}( LayerNorm(x) ⊙ SiLU(z) )
//! ```
//! At inference the decay `decay^k` does not depend on the input, so it can be computed once per
//! block and input size ([`HeatConduction::to_inference`]); `to_k` and the FVE are then no longer
//! needed.
//!
//! # Using one layer on its own
//! ```
//! use burn::prelude::*;
//! use vheat::hco::{FrequencyEmbeddingConfig, HeatConductionConfig};
//!
//! let device = vheat::host_device(); // the CPU; Device::default() may pick a GPU
//! let op = HeatConductionConfig::new(16).init(&device);
//! let fve = FrequencyEmbeddingConfig::new(8, 8, 16).init(&device);
//! let u = Tensor::<4>::random([2, 16, 8, 8], burn::tensor::Distribution::Default, &device);
//! let y = op.forward(u, Some(fve.resized(8, 8)));   // NCHW in, NCHW out
//! assert_eq!(y.dims(), [2, 16, 8, 8]);
//! ```

mod fve;
mod operator;

pub use fve::{resize_bicubic, zero_pad, FrequencyEmbedding, FrequencyEmbeddingConfig};
pub use operator::{HeatConduction, HeatConductionConfig};
