//! `train` — training and fine-tuning with burn-train's `Learner`.
//!
//! The pieces follow the reference's ImageNet recipe (`classification/` of the official code):
//!
//! | reference | here |
//! |---|---|
//! | AdamW, ε 1e-8, weight decay 0.05, none on norms/biases | [`adamw_for`] ([`FusedAdamW`]: Burn's AdamW in one pass per parameter), [`DecayGroups`] (FVEs excluded too by default) |
//! | timm `CosineLRScheduler`, warm-up prefix, per-iteration | [`WarmupCosineLr`] |
//! | `LabelSmoothingCrossEntropy(0.1)` | [`smoothed_cross_entropy`] |
//! | timm `Mixup`/`SoftTargetCrossEntropy` | [`crate::data::MixupBatcher`], [`soft_cross_entropy`] |
//! | timm `ModelEmaV2`/`V3`, validated every epoch | [`ModelEma`] inside [`ImageClassifier`], [`EmaAccuracyMetric`]/[`EmaLossMetric`] on [`ValidationOutput`], [`evaluate_accuracy`] |
//! | `clip_grad_norm_(…, 5.0)` | [`clip_grad_norm`] (global norm) |
//! | `DropPath` (stochastic depth) | [`crate::DropPath`]: active only on an autodiff device in training mode |
//! | checkpoint save / auto-resume | burn-train's checkpointers, [`FitOptions::resume`] |
//!
//! [`fit`] puts them together: it wraps the model in an [`ImageClassifier`] (the model plus
//! its loss, which implements burn-train's `TrainStep`/`InferenceStep`), builds the data
//! loaders, and runs `SupervisedTraining` on one device or data-parallel on several, printing
//! progress with a [`ProgressPrinter`]. [`save_checkpoint`]/[`load_checkpoint`] keep a trained
//! model with its class names and preprocessing.
//!
//! ```no_run
//! use burn::prelude::*;
//! use vheat::data::{ShapesConfig, SyntheticShapes};
//! use vheat::train::{fit, FitOptions, TrainingConfig};
//! use vheat::VHeatConfig;
//!
//! let device = vheat::device_from_name("flex")?;
//! let model = VHeatConfig::new(vec![1, 1, 2, 1], vec![16, 32, 64, 128])
//!     .with_num_classes(SyntheticShapes::num_classes())
//!     .with_img_size(32)
//!     .init(&device);
//! let train = SyntheticShapes::new(ShapesConfig::new(32, 4096, 1))?;
//! let valid = SyntheticShapes::new(ShapesConfig::new(32, 512, 2))?;
//! let config = TrainingConfig { epochs: 3, ..TrainingConfig::default() };
//! let report = fit(model, train, valid, &config, &FitOptions::new("artifacts/run", device))?;
//! println!("validation accuracy {:?} %", report.final_accuracy());
//! # Ok::<(), vheat::Error>(())
//! ```

mod checkpoint;
mod checkpointer;
mod classifier;
pub mod distributed;
mod ema;
mod ema_metric;
mod evaluate;
mod fit;
mod fused_adamw;
mod optim;
mod progress;
mod recipe;
mod schedule;
mod validation_output;

pub use checkpoint::{
    load_checkpoint, load_checkpoint_meta, meta_path, pretrained_for_fine_tuning, save_checkpoint,
    CheckpointMeta, Pretrained,
};
pub use checkpointer::{
    complete_checkpoints, resumable_checkpoint, AtomicFileCheckpointer, CHECKPOINT_KINDS,
};
pub use classifier::{smoothed_cross_entropy, soft_cross_entropy, ImageClassifier};
pub use ema::{ema_update, ModelEma};
pub use ema_metric::{
    EmaAccuracyMetric, EmaInput, EmaLossMetric, EmaMetric, EMA_ACCURACY, EMA_LOSS,
};
pub use evaluate::evaluate_accuracy;
pub use fit::{fit, latest_checkpoint, FitOptions, FitReport, ModelChoice, TrainingConfig};
pub use fused_adamw::FusedAdamW;
pub use optim::{adamw_for, clip_grad_norm, DecayGroups};
pub use progress::{EpochRecord, ProgressPrinter};
pub use recipe::{ChosenRecipe, RecipeKind, SMALL_IMAGE_SIDE};
pub use schedule::WarmupCosineLr;
pub use validation_output::ValidationOutput;
