//! [`FpnHead`]: a light feature-pyramid segmentation head (Semantic-FPN style).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::error::Error;
pub use crate::heat::bilinear_matrix;
use crate::heat::{apply_along, bilinear_matrix_cached};

/// Builds an [`FpnHead`].
#[derive(Config, Debug)]
pub struct FpnHeadConfig {
    /// Channels of each input level, shallow to deep (a backbone's `feature_info` `num_chs`).
    pub in_channels: Vec<usize>,
    /// Number of classes the head predicts.
    pub num_classes: usize,
    /// Width of the pyramid.
    #[config(default = 64)]
    pub dim: usize,
}

impl FpnHeadConfig {
    /// Creates the head on `device`, or says why the configuration cannot be built.
    pub fn try_init(&self, device: &Device) -> crate::Result<FpnHead> {
        let bad = |m: String| Err(Error::InvalidConfig(format!("FPN head: {m}")));
        if self.in_channels.is_empty() {
            return bad("`in_channels` is empty: the head needs at least one level".into());
        }
        if let Some(i) = self.in_channels.iter().position(|&c| c == 0) {
            return bad(format!("`in_channels[{i}]` is 0"));
        }
        if self.num_classes == 0 {
            return bad("`num_classes` is 0".into());
        }
        if self.dim == 0 {
            return bad("`dim` is 0".into());
        }
        let conv = |i: usize, o: usize, k: usize| {
            Conv2dConfig::new([i, o], [k, k])
                .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
                .init(device)
        };
        Ok(FpnHead {
            lateral: self
                .in_channels
                .iter()
                .map(|&c| conv(c, self.dim, 1))
                .collect(),
            smooth: self
                .in_channels
                .iter()
                .map(|_| conv(self.dim, self.dim, 3))
                .collect(),
            classifier: conv(self.dim, self.num_classes, 1),
        })
    }
}

/// A light FPN head: per level a 1×1 lateral convolution to `dim` channels; a top-down pathway
/// adding each deeper level, upsampled, to the one above; a 3×3 convolution + ReLU per level;
/// every level upsampled to the finest and summed; a 1×1 classifier. The logits come out at the
/// finest level's resolution (stride 4 on a vHeat backbone).
///
/// Upsampling is bilinear (`align_corners = false`, [`resize_bilinear`]) to each target's exact
/// size, so maps of odd sizes (`⌈H/r⌉` on non-multiple inputs) line up.
#[derive(Module, Debug)]
#[non_exhaustive]
pub struct FpnHead {
    /// 1×1 convolutions, level `i`'s channels → `dim`.
    pub lateral: Vec<Conv2d>,
    /// 3×3 convolutions `dim → dim` after the top-down pathway, one per level.
    pub smooth: Vec<Conv2d>,
    /// 1×1 convolution `dim → num_classes`.
    pub classifier: Conv2d,
}

/// Bilinear resize of an NCHW map to `[h, w]` (`align_corners = false`), as two matrix
/// products ([`bilinear_matrix`] along each axis): the same values as Burn's `interpolate`, and
/// differentiable on every backend — Burn's GPU backends have no bilinear backward pass.
pub fn resize_bilinear(x: Tensor<4>, h: usize, w: usize) -> Tensor<4> {
    let [_, _, xh, xw] = x.dims();
    let device = x.device();
    let x = if xw == w {
        x
    } else {
        apply_along(x, 3, bilinear_matrix_cached(w, xw, &device))
    };
    if xh == h {
        x
    } else {
        apply_along(x, 2, bilinear_matrix_cached(h, xh, &device))
    }
}

impl FpnHead {
    /// Channels each input level must have.
    pub fn in_channels(&self) -> Vec<usize> {
        self.lateral.iter().map(|c| c.weight.dims()[1]).collect()
    }

    /// Number of classes predicted.
    pub fn num_classes(&self) -> usize {
        self.classifier.weight.dims()[0]
    }

    /// Per-level maps (NCHW, shallow to deep, same batch) → logits `[B, num_classes, H₀, W₀]`
    /// at the first level's size.
    ///
    /// Returns [`Error::InvalidInput`] when the number of levels, their channels or their batch
    /// sizes do not fit the head.
    pub fn forward(&self, features: Vec<Tensor<4>>) -> crate::Result<Tensor<4>> {
        let found: Vec<[usize; 4]> = features.iter().map(|f| f.dims()).collect();
        let expected = self.in_channels();
        let fits = found.len() == expected.len()
            && found
                .iter()
                .zip(&expected)
                .all(|(d, &c)| d[1] == c && d[0] == found[0][0]);
        if !fits {
            return Err(Error::InvalidInput {
                what: "FpnHead features".into(),
                expected: format!(
                    "{} NCHW maps with channels {expected:?} and one batch size",
                    expected.len()
                ),
                found: format!("{found:?}"),
            });
        }
        let mut lat: Vec<Tensor<4>> = self
            .lateral
            .iter()
            .zip(features)
            .map(|(conv, f)| conv.forward(f))
            .collect();
        for i in (0..lat.len().saturating_sub(1)).rev() {
            let [_, _, h, w] = lat[i].dims();
            let up = resize_bilinear(lat[i + 1].clone(), h, w);
            lat[i] = lat[i].clone() + up;
        }
        let [_, _, h0, w0] = lat[0].dims();
        let fused = lat
            .into_iter()
            .zip(&self.smooth)
            .map(|(x, conv)| resize_bilinear(relu(conv.forward(x)), h0, w0))
            .reduce(|a, b| a + b)
            .expect("at least one level, checked above");
        Ok(self.classifier.forward(fused))
    }
}
