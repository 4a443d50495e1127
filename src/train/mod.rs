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
//! model with its class names and preprocessing. The decisions a trainer makes before and after
//! [`fit`] are library functions too: the recipe with a user's [`RecipeOverrides`] on top
//! (validated), the model a run starts from ([`starting_model`]), the best epoch and the better
//! of the raw model and its EMA ([`FitReport::best_epoch`], [`FitReport::best_of_raw_and_ema`]).
//! A run owns its folder ([`RunLock`], [`RunIdentity`]): another run's checkpoints are never
//! resumed or mixed with its own, and a diverging loss stops it ([`crate::Error::Diverged`]).
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
mod config;
pub mod distributed;
mod ema;
mod ema_metric;
mod evaluate;
mod fit;
mod fused_adamw;
mod optim;
mod progress;
mod recipe;
mod run;
mod schedule;
mod start;
mod validation_output;

pub use checkpoint::{
    load_checkpoint, load_checkpoint_meta, meta_path, pretrained_for_fine_tuning,
    refuse_overwriting_inputs, save_checkpoint, CheckpointMeta, Pretrained,
};
pub use checkpointer::{
    complete_checkpoints, resumable_checkpoint, AtomicFileCheckpointer, CHECKPOINT_KINDS,
};
pub use classifier::{smoothed_cross_entropy, soft_cross_entropy, ImageClassifier};
pub use config::TrainingConfig;
pub use ema::{ema_update, ModelEma};
pub use ema_metric::{
    EmaAccuracyMetric, EmaInput, EmaLossMetric, EmaMetric, EMA_ACCURACY, EMA_LOSS,
};
pub use evaluate::evaluate_accuracy;
pub use fit::{fit, latest_checkpoint, FitOptions, FitReport, ModelChoice};
pub use fused_adamw::FusedAdamW;
pub use optim::{adamw_for, clip_grad_norm, DecayGroups};
pub use progress::{Divergence, EpochRecord, ProgressPrinter};
pub use recipe::{
    describe_mixing_and_ema, ChosenRecipe, RecipeChoice, RecipeKind, RecipeOverrides,
    SMALL_IMAGE_SIDE,
};
pub use run::{
    prepare_checkpoints, temporary_path, write_atomically, RunIdentity, RunLock, IDENTITY_FILE,
    LOCK_FILE,
};
pub use schedule::WarmupCosineLr;
pub use start::{native_side, small_config, starting_model, StartingModel};
pub use validation_output::ValidationOutput;
