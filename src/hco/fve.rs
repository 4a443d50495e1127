//! The frequency-value embedding (FVE): the learnable `[H, W, C]` map from which `k` is predicted.

use burn::module::Param;
use burn::prelude::*;

use crate::heat::{apply_along, bicubic_matrix};

/// Builds a [`FrequencyEmbedding`].
#[derive(Config, Debug)]
pub struct FrequencyEmbeddingConfig {
    /// Frequency rows (the feature-map height it was trained for).
    pub height: usize,
    /// Frequency columns (the feature-map width it was trained for).
    pub width: usize,
    /// Channels.
    pub channels: usize,
    /// Standard deviation of the (truncated at ±2σ) normal initialisation; the reference uses 0.02.
    #[config(default = 0.02)]
    pub init_std: f64,
}

impl FrequencyEmbeddingConfig {
    /// Creates the embedding on `device`, drawn from N(0, init_std²) truncated to ±2σ.
    pub fn init(&self, device: &Device) -> FrequencyEmbedding {
        let t = Tensor::<3>::random(
            [self.height, self.width, self.channels],
            burn::tensor::Distribution::Normal(0.0, self.init_std),
            device,
        )
        .clamp(-2.0 * self.init_std, 2.0 * self.init_std);
        FrequencyEmbedding {
            weight: Param::from_tensor(t),
        }
    }
}

/// The frequency-value embedding: one learnable vector per frequency `(n, m)`, `[H, W, C]`.
///
/// A stage owns one and every heat block of the stage predicts its own `k` from it.
#[derive(Module, Debug)]
#[non_exhaustive]
pub struct FrequencyEmbedding {
    /// The embedding, `[H, W, C]` (the reference's `freq_embed.{i}`).
    pub weight: Param<Tensor<3>>,
}

impl FrequencyEmbedding {
    /// `[H, W, C]` of the stored embedding.
    pub fn dims(&self) -> [usize; 3] {
        self.weight.dims()
    }

    /// The embedding at an `h × w` frequency grid: itself when the size matches, otherwise
    /// resized by [`resize_bicubic`] (the reference's dense-prediction policy).
    pub fn resized(&self, h: usize, w: usize) -> Tensor<3> {
        let [eh, ew, _] = self.dims();
        if (eh, ew) == (h, w) {
            self.weight.val()
        } else {
            resize_bicubic(self.weight.val(), h, w)
        }
    }
}

/// Resizes an `[H, W, C]` embedding to `[h, w, C]` by bicubic interpolation, exactly as
/// PyTorch's `F.interpolate(fve.permute(2,0,1)[None], size=(h, w), mode="bicubic",
/// align_corners=False)` does it (the reference's dense-prediction backbone).
///
/// Computed as two resampling products (see [`crate::heat::bicubic_matrix`]), so it is
/// differentiable on every backend: Burn's GPU backends have no bicubic backward pass.
pub fn resize_bicubic(fve: Tensor<3>, h: usize, w: usize) -> Tensor<3> {
    let [eh, ew, _] = fve.dims();
    let device = fve.device();
    let rows = apply_along(fve, 0, bicubic_matrix(h, eh, &device));
    apply_along(rows, 1, bicubic_matrix(w, ew, &device))
}

/// Enlarges an `[H, W, C]` embedding to `[h, w, C]` (`h ≥ H`, `w ≥ W`) by placing it in the
/// top-left corner of zeros: the alternative of the reference's `interpolate4downstream.py`.
///
/// The low frequencies keep their learned values and the new high frequencies start at zero.
/// Returns `None` when the target is smaller than the embedding.
pub fn zero_pad(fve: Tensor<3>, h: usize, w: usize) -> Option<Tensor<3>> {
    let [eh, ew, c] = fve.dims();
    if h < eh || w < ew {
        return None;
    }
    let out = Tensor::<3>::zeros([h, w, c], &fve.device());
    Some(out.slice_assign([0..eh, 0..ew, 0..c], fve))
}
