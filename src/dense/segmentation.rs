//! [`SegmentationModel`]: a vHeat backbone and an [`FpnHead`], with the per-pixel loss.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use super::fpn::{resize_bilinear, FpnHead, FpnHeadConfig};
use crate::error::{Error, Result};
use crate::vheat::{Indices, VHeat};

/// Semantic segmentation: the backbone's per-stage maps
/// ([`VHeat::forward_intermediates`], through its output norms where it has them) → an
/// [`FpnHead`] → logits upsampled bilinearly to the image.
#[derive(Module, Debug)]
#[non_exhaustive]
pub struct SegmentationModel {
    /// The backbone (its classifier is not used).
    pub backbone: VHeat,
    /// The segmentation head, fed every stage.
    pub head: FpnHead,
}

impl SegmentationModel {
    /// A fresh `dim`-wide [`FpnHead`] for `num_classes` classes on every stage of `backbone`,
    /// on the backbone's device.
    pub fn new(backbone: VHeat, num_classes: usize, dim: usize) -> Result<Self> {
        let in_channels = backbone.feature_info().iter().map(|f| f.num_chs).collect();
        let head = FpnHeadConfig::new(in_channels, num_classes)
            .with_dim(dim)
            .try_init(&backbone.device())?;
        Ok(Self { backbone, head })
    }

    /// Number of classes predicted.
    pub fn num_classes(&self) -> usize {
        self.head.num_classes()
    }

    /// Images `[B, C, H, W]` → logits `[B, num_classes, H, W]`.
    ///
    /// Errors: the backbone's input errors ([`VHeat::check_input`]).
    pub fn forward(&self, images: Tensor<4>) -> Result<Tensor<4>> {
        let [_, _, h, w] = images.dims();
        let features = self.backbone.forward_intermediates(images, Indices::All)?;
        Ok(resize_bilinear(self.head.forward(features)?, h, w))
    }

    /// Mean per-pixel cross-entropy of the logits for `images` against `masks` `[B, H, W]`
    /// (class ids). See [`pixel_cross_entropy`].
    pub fn loss(&self, images: Tensor<4>, masks: Tensor<3, Int>) -> Result<Tensor<1>> {
        pixel_cross_entropy(self.forward(images)?, masks)
    }

    /// The predicted class of every pixel, `[B, H, W]`.
    pub fn predict(&self, images: Tensor<4>) -> Result<Tensor<3, Int>> {
        Ok(self.forward(images)?.argmax(1).squeeze_dim(1))
    }
}

/// Mean cross-entropy over all pixels of logits `[B, K, H, W]` against class ids `[B, H, W]`,
/// as a one-element tensor (PyTorch's `F.cross_entropy(logits, masks)`).
///
/// Returns [`Error::InvalidInput`] when the shapes disagree or a class id is outside `0..K`
/// (this reads the masks' extremes back to the host).
pub fn pixel_cross_entropy(logits: Tensor<4>, masks: Tensor<3, Int>) -> Result<Tensor<1>> {
    let [b, k, h, w] = logits.dims();
    let invalid = |expected: String, found: String| Error::InvalidInput {
        what: "segmentation masks".into(),
        expected,
        found,
    };
    if masks.dims() != [b, h, w] {
        return Err(invalid(
            format!(
                "shape [{b}, {h}, {w}] to match the logits {:?}",
                [b, k, h, w]
            ),
            format!("{:?}", masks.dims()),
        ));
    }
    let lo: i64 = masks.clone().min().into_scalar();
    let hi: i64 = masks.clone().max().into_scalar();
    if lo < 0 || hi >= k as i64 {
        return Err(invalid(
            format!("class ids in 0..{k}"),
            format!("ids from {lo} to {hi}"),
        ));
    }
    let picked = log_softmax(logits, 1).gather(1, masks.unsqueeze_dim(1));
    Ok(picked.mean().neg())
}
