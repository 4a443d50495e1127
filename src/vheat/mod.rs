//! `vheat` — the model: [`Stem`], [`HeatBlock`], [`Stage`], [`Head`], [`VHeat`] and
//! [`VHeatConfig`].
//!
//! An image is cut into 4×4 patches by the [`Stem`]; the [`Stage`]s follow, each a stack of
//! [`HeatBlock`]s sharing one frequency-value embedding and ending in a stride-2 [`Downsample`]
//! (except the last); the [`Head`] normalises, pools and classifies. Blocks run on
//! channels-last maps internally; every public map in and out is NCHW, as in the reference.

mod backbone;
mod block;
mod config;
mod downsample;
mod drop_path;
mod head;
mod macs;
mod memory;
mod mlp;
mod model;
mod pointwise;
mod precision;
mod stage;
mod stem;

pub use backbone::{FeatureInfo, Indices, OutputNorm, OUTPUT_NORM_EPS};
pub use block::{HeatBlock, HeatBlockConfig};
pub use config::VHeatConfig;
pub use downsample::Downsample;
pub use drop_path::{drop_path_schedule, DropPath};
pub use head::Head;
pub use macs::{Form, MacCount};
pub use memory::{memory_limit, parse_bytes, MemoryEstimate, MEMORY_LIMIT_ENV};
pub use mlp::Mlp;
pub use model::{TrainableParts, VHeat};
pub use pointwise::PointwiseConv;
pub use stage::Stage;
pub use stem::{Stem, STEM_NORM_EPS};
