//! `heat` — the transforms that solve the heat equation in closed form.
//!
//! # The physics
//! vHeat treats a feature map as a temperature field `u(x, y, t)` on a rectangle and lets it
//! evolve by the heat equation
//!
//! ```text
//!     ∂u/∂t = k · (∂²u/∂x² + ∂²u/∂y²)
//! ```
//!
//! with Neumann (insulated) borders, `∂u/∂x = 0` at `x = 0, a` and `∂u/∂y = 0` at `y = 0, b`:
//! no heat leaves the map. The cosines `cos(nπx/a)·cos(mπy/b)` are the eigenfunctions of the
//! Laplacian under those borders, with eigenvalues `-((nπ/a)² + (mπ/b)²)`, so the solution is
//!
//! ```text
//!     u(x, y, t) = Σₙ Σₘ Ã(n, m) · cos(nπx/a) · cos(mπy/b) · exp(-((nπ/a)² + (mπ/b)²)·k·t)
//! ```
//!
//! where `Ã(n, m)` are the cosine coefficients of the initial field `u(x, y, 0)`.
//!
//! # The discrete form
//! On an `H × W` grid sampled at the pixel centres `x + ½`, the cosine coefficients are the
//! orthonormal DCT-II. Its `N × N` matrix (row `n` = frequency, column `x` = position) is
//!
//! ```text
//!     D[n, x] = sqrt(2/N) · cos(π · n · (x + ½) / N),    row n = 0 scaled by 1/√2
//! ```
//!
//! It is orthogonal, so the inverse (the DCT-III) is its transpose `Dᵀ`. A 2-D transform of an
//! `H × W` map is `D_H · U · D_Wᵀ`: two matrix multiplies, `O(H·W·(H + W))` = `O(N^1.5)` in the
//! pixel count `N = H·W` for a square map, instead of attention's `O(N²)`.
//!
//! With `a = H`, `b = W` and `k·t` folded into one learned `k`, one diffusion step is
//!
//! ```text
//!     u_t = Dᵀ_H · ( (D_H · u_0 · Dᵀ_W) ⊙ decay^k ) · D_W,
//!     decay[n, m] = exp(-(ωₙ² + ωₘ²)),  ωₙ = πn/H,  ωₘ = πm/W
//! ```
//!
//! This module provides the DCT bases ([`dct_basis`]), the decay base ([`decay_base`]) and its
//! exponent ([`frequency_sq`]), and the transforms along any axis ([`dct_along`],
//! [`idct_along`]) and over the two spatial axes of a channels-last map ([`dct2d`], [`idct2d`]),
//! and the whole diffusion `IDCT2D(DCT2D(x) ⊙ decay)` ([`diffuse`], one fused kernel on the CPU).
//! Bases are built once per (size, device) and cached. Every transform is a plain tensor matmul,
//! so autodiff flows through it.

mod basis;
mod cache;
mod decay;
mod resample;
mod transform;

pub use basis::{dct_basis, dct_basis_host, idct_basis};
pub use decay::{decay_base, frequency_sq};
pub use resample::{bicubic_matrix, bicubic_matrix_host, bilinear_matrix, bilinear_matrix_cached};
pub use transform::{apply_along, dct2d, dct_along, diffuse, idct2d, idct_along};
