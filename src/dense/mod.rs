//! `dense` — dense prediction on a vHeat backbone: a light FPN segmentation head, the
//! segmentation model that joins them, its loss and metric (mIoU), and a procedurally generated
//! shapes data set to train and test them without downloads.
//!
//! The backbone side is [`VHeat::forward_intermediates`](crate::VHeat::forward_intermediates)
//! (per-stage maps, through the output norms of a dense-prediction backbone) and
//! [`VHeat::feature_info`](crate::VHeat::feature_info); this module only adds what sits on top.
//!
//! ```no_run
//! // (Compiled, not run here: `tests/segmentation.rs` runs these steps on every backend.)
//! use burn::prelude::*;
//! use vheat::dense::{SegmentationModel, ShapeMasks, ShapeMasksConfig};
//! use vheat::{Indices, VHeatConfig};
//!
//! let device = vheat::host_device(); // the CPU; Device::default() may pick a GPU
//! let backbone = VHeatConfig::new(vec![1, 1, 1, 1], vec![8, 16, 32, 64])
//!     .with_num_classes(0)
//!     .with_img_size(32)
//!     .init(&device)
//!     .with_output_norms(Indices::All)
//!     .unwrap();
//! let model = SegmentationModel::new(backbone, 4, 16).unwrap();
//! let (images, masks) = ShapeMasks::new(ShapeMasksConfig::new(32, 48), 7).batch(2, &device);
//! let logits = model.forward(images.clone()).unwrap();       // [2, 4, 32, 48]
//! assert_eq!(logits.dims(), [2, 4, 32, 48]);
//! let loss = model.loss(images, masks).unwrap();             // mean per-pixel cross-entropy
//! assert!(loss.into_scalar::<f32>().is_finite());
//! ```

mod fpn;
mod metrics;
mod segmentation;
mod shapes;

pub use fpn::{bilinear_matrix, resize_bilinear, FpnHead, FpnHeadConfig};
pub use metrics::ConfusionMatrix;
pub use segmentation::{pixel_cross_entropy, SegmentationModel};
pub use shapes::{ShapeMasks, ShapeMasksConfig, MASK_CLASSES};
