//! # vheat — vHeat vision backbones on Burn
//!
//! A native [Burn](https://burn.dev) implementation of **vHeat** ("vHeat: Building Vision
//! Models upon Heat Conduction", Wang et al., CVPR 2025, [arXiv:2405.16555](https://arxiv.org/abs/2405.16555);
//! reference code: <https://github.com/MzeroMiko/vHeat>). vHeat replaces attention by the
//! heat-conduction operator: features diffuse like heat under `∂u/∂t = k·∇²u`, solved exactly
//! with the DCT in `O(N^1.5)` for `N` pixels, with a global receptive field.
//!
//! The crate is layered as the model is:
//! - [`heat`]: the DCT bases, the decay base and the 1-D/2-D transforms;
//! - [`hco`]: the heat-conduction operator and the frequency-value embedding;
//! - [`vheat`]: stem, heat block, stage, head, the whole model and its configuration;
//! - [`weights`]: reference checkpoints (`.pth`, safetensors) and Burn's own format;
//! - [`dense`]: dense prediction on the backbone: an FPN segmentation head, mIoU, synthetic data;
//! - [`data`]: the built-in procedural dataset, image folders, timm's preprocessing, pictures;
//! - [`pretrained`]: the published checkpoints by name, downloaded once into a cache;
//! - [`train`]: training and fine-tuning with burn-train's `Learner` (the reference's recipe);
//! - [`device`]: a backend chosen by name at run time ([`device_from_name`]);
//! - [`cli`]: the `vheat` command-line tool's subcommands (argument structs and `run`).
//!
//! Cargo features (all but the backends on by default): `train` adds [`train`] and the datasets,
//! batchers and augmentation of [`data`]; `image` the image files and transforms of [`data`];
//! `cli` adds [`cli`] and the `vheat` binary; `pretrained` the downloader of [`pretrained`].
//! Without them (`default-features = false, features = ["flex"]`) the crate is the model, its
//! layers, the kernels, checkpoint loading and saving, and dense prediction.
//!
//! Model code has no backend type parameter: a [`burn::prelude::Device`] picks the backend at run
//! time (`flex` CPU by default; `ndarray`, `wgpu`, `cuda` through Cargo features).
//!
//! ```
//! use burn::prelude::*;
//! use vheat::VHeatConfig;
//!
//! let device = vheat::host_device(); // the CPU; Device::default() may pick a GPU
//! let config = VHeatConfig::new(vec![1, 1, 1, 1], vec![8, 16, 32, 64])
//!     .with_num_classes(10)
//!     .with_img_size(64);
//! let model = config.init(&device);
//! let images = Tensor::<4>::zeros([2, 3, 64, 64], &device);
//! let logits = model.try_forward(images).unwrap();
//! assert_eq!(logits.dims(), [2, 10]);
//! ```
#![warn(missing_docs)]

mod error;
mod init;
mod load_report;
mod special_file;

#[cfg(feature = "cli")]
pub mod cli;
pub mod data;
pub mod dense;
pub mod device;
pub mod hco;
pub mod heat;
pub mod kernels;
pub mod pretrained;
#[cfg(feature = "train")]
pub mod train;
pub mod vheat;
pub mod weights;

pub use device::{compiled_backends, device_from_name, host_device, probe_device, KNOWN_BACKENDS};
pub use error::{Error, Result};
pub use hco::{FrequencyEmbedding, FrequencyEmbeddingConfig, HeatConduction, HeatConductionConfig};
pub use load_report::LoadReport;
pub use vheat::{
    Downsample, DropPath, FeatureInfo, Form, Head, HeatBlock, HeatBlockConfig, Indices, MacCount,
    OutputNorm, Stage, Stem, VHeat, VHeatConfig,
};
