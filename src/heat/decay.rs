//! The decay base `exp(-(ωₙ² + ωₘ²))` of one diffusion step.

use burn::prelude::*;

use super::cache::{get_or_build, Kind};

/// `ωₙ² + ωₘ²` on an `h × w` frequency grid, with `ωₙ = πn/h` and `ωₘ = πm/w`: the negated
/// eigenvalues of the Neumann Laplacian for the cosine mode `(n, m)`.
///
/// Computed in `f64` on the host and cached per `(h, w, device)`. The operator raises the
/// decay base to the conductivity `k` as `exp(-(ωₙ² + ωₘ²)·k)`, which equals
/// `decay_base^k` and has the exact derivative in `k`.
pub fn frequency_sq(h: usize, w: usize, device: &Device) -> Tensor<2> {
    get_or_build(Kind::FrequencySq, [h, w], device, |d| {
        let pi = std::f64::consts::PI;
        let mut data = Vec::with_capacity(h * w);
        for n in 0..h {
            let wn = pi * n as f64 / h as f64;
            for m in 0..w {
                let wm = pi * m as f64 / w as f64;
                data.push((wn * wn + wm * wm) as f32);
            }
        }
        Tensor::from_data(TensorData::new(data, [h, w]), d)
    })
}

/// The decay base `exp(-(ωₙ² + ωₘ²))` (`[h, w]`), the reference's `get_decay_map`.
///
/// Every entry is in `(0, 1]`, and `decay[0, 0] = 1`: the mean temperature never decays.
pub fn decay_base(h: usize, w: usize, device: &Device) -> Tensor<2> {
    frequency_sq(h, w, device).neg().exp()
}
