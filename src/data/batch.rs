//! One labelled image ([`ImageItem`]), a batch of them on a device ([`ImageBatch`]), and the
//! [`ImageBatcher`] that turns the first into the second for Burn's data loaders.
//! (The mixing batcher for Mixup/CutMix is [`super::MixupBatcher`].)

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;

/// One labelled image, ready for the network: `channels × height × width` values (already
/// normalised), row-major per channel, and its class index.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ImageItem {
    /// The pixel values, `[C, H, W]` flattened.
    pub pixels: Vec<f32>,
    /// `[C, H, W]`.
    pub shape: [usize; 3],
    /// The class index.
    pub label: usize,
}

impl ImageItem {
    /// An item of `shape` `[C, H, W]` with its `pixels` (`C·H·W` normalised values, row-major
    /// per channel) and class index `label`.
    pub fn new(pixels: Vec<f32>, shape: [usize; 3], label: usize) -> Self {
        Self {
            pixels,
            shape,
            label,
        }
    }

    /// The image as a `[1, C, H, W]` tensor on `device`.
    pub fn to_tensor(&self, device: &Device) -> Tensor<4> {
        let [c, h, w] = self.shape;
        Tensor::from_data(TensorData::new(self.pixels.clone(), [1, c, h, w]), device)
    }
}

/// A batch of images `[B, C, H, W]` and their class indices `[B]`, plus soft targets when the
/// batch was mixed (Mixup/CutMix).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ImageBatch {
    /// The images, NCHW.
    pub images: Tensor<4>,
    /// The class index of every image (for a mixed batch: the class of the image that was
    /// mixed into, i.e. before mixing; the accuracy metric uses these).
    pub targets: Tensor<1, Int>,
    /// `[B, K]` target distributions of a mixed batch (label smoothing folded in), which the
    /// training loss then uses instead of `targets`; `None` for an ordinary batch.
    pub soft_targets: Option<Tensor<2>>,
}

/// The items' pixels stacked `[N, C, H, W]` (flattened), their labels, and that shape.
///
/// # Panics
/// If two items differ in shape (see [`ImageBatcher`]).
pub(crate) fn stack_items(items: &[ImageItem]) -> (Vec<f32>, Vec<usize>, [usize; 4]) {
    let shape = items.first().map_or([3, 1, 1], |i| i.shape);
    let [c, h, w] = shape;
    let mut pixels = Vec::with_capacity(items.len() * c * h * w);
    let mut labels = Vec::with_capacity(items.len());
    for item in items {
        assert_eq!(
            item.shape, shape,
            "ImageBatcher: one batch holds images of two shapes"
        );
        pixels.extend_from_slice(&item.pixels);
        labels.push(item.label);
    }
    (pixels, labels, [items.len(), c, h, w])
}

impl ImageBatch {
    /// An ordinary batch: `images` `[B, C, H, W]` and their class indices `targets` `[B]`, no
    /// soft targets.
    pub fn new(images: Tensor<4>, targets: Tensor<1, Int>) -> Self {
        Self {
            images,
            targets,
            soft_targets: None,
        }
    }

    /// The batch with `[B, K]` target distributions for the loss (a mixed batch; `targets` stay
    /// the classes the accuracy is measured on).
    pub fn with_soft_targets(mut self, soft_targets: Tensor<2>) -> Self {
        self.soft_targets = Some(soft_targets);
        self
    }
}

/// Stacks [`ImageItem`]s of one shape into an [`ImageBatch`] on the loader's device.
///
/// # Panics
/// If the items of one batch differ in shape: every dataset of this crate gives items of one
/// shape (the transforms crop and resize to a fixed size).
#[derive(Debug, Clone, Copy, Default)]
pub struct ImageBatcher;

impl Batcher<ImageItem, ImageBatch> for ImageBatcher {
    fn batch(&self, items: Vec<ImageItem>, device: &Device) -> ImageBatch {
        let (pixels, labels, shape) = stack_items(&items);
        let labels: Vec<i64> = labels.into_iter().map(|l| l as i64).collect();
        ImageBatch::new(
            Tensor::from_data(TensorData::new(pixels, shape), device),
            Tensor::from_data(TensorData::new(labels, [shape[0]]), device),
        )
    }
}
