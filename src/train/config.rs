//! [`TrainingConfig`]: the optimisation recipe [`super::fit`] runs, with its validation.

use serde::{Deserialize, Serialize};

use crate::data::{AugmentConfig, MixupConfig};
use crate::error::{Error, Result};

/// The optimisation recipe. The defaults are the reference's ImageNet recipe
/// (`classification/utils/config.py` and `configs/vHeat/*.yaml`) scaled to a short run:
/// AdamW (β 0.9/0.999, ε 1e-8), weight decay 0.05 on weights only, linear warm-up then cosine,
/// label smoothing 0.1, gradient clipping at global norm 5.
///
/// Fields are added as the recipe grows, each with a default: build it from
/// [`TrainingConfig::default`] (struct update syntax or assignments), which keeps compiling
/// when fields are added.
///
/// ```
/// use vheat::train::TrainingConfig;
/// let recipe = TrainingConfig { epochs: 3, batch_size: 16, ..TrainingConfig::default() };
/// assert!(recipe.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingConfig {
    /// Number of passes over the training set.
    pub epochs: usize,
    /// Images per optimizer step (split across devices in multi-device training).
    pub batch_size: usize,
    /// Peak learning rate, reached at the end of the warm-up (reference: 5e-4 per 512 images).
    pub lr: f64,
    /// Learning rate at the end of the cosine (reference: 5e-6).
    pub min_lr: f64,
    /// Learning rate at the first step of the warm-up (reference: 5e-7).
    pub warmup_lr: f64,
    /// Length of the warm-up in epochs (may be fractional; reference: 20 of 300).
    pub warmup_epochs: f64,
    /// Decoupled weight decay of the decayed group (reference: 0.05; vHeat-T: 0.08).
    pub weight_decay: f64,
    /// Also decay the frequency-value embeddings (see [`super::DecayGroups`]).
    pub decay_fve: bool,
    /// Label smoothing of the training loss (reference: 0.1).
    pub label_smoothing: f64,
    /// Global gradient-norm bound; `None` for no clipping (reference: 5.0).
    pub clip_grad: Option<f64>,
    /// Background threads that decode and augment images (0 = in the training thread).
    pub num_workers: usize,
    /// Seed of the data order and of the stochastic-depth masks.
    pub seed: u64,
    /// Batches whose gradients are summed before each optimizer step (1 = every batch): an
    /// effective batch of `batch_size × grad_accumulation` on a machine that holds only
    /// `batch_size` images at once. The schedule counts optimizer steps.
    #[serde(default = "one")]
    pub grad_accumulation: usize,
    /// The training augmentation, for whoever builds the training dataset from an image folder
    /// ([`crate::data::ImageFolder::augmented_dataset`]; the `vheat train` command does).
    /// [`fit`] itself takes ready datasets and does not read it.
    #[serde(default)]
    pub augment: AugmentConfig,
    /// Centre-crop fraction of the evaluation transform for folder validation sets
    /// (1.0 = the whole image resized; the reference's ImageNet value is 0.875).
    #[serde(default = "reference_crop")]
    pub eval_crop_pct: f64,
    /// Mixup/CutMix on every training batch (timm's `Mixup`, mode `batch`; its label smoothing
    /// replaces `label_smoothing` on mixed batches). `None`: off (the default; the reference
    /// recipe turns it on).
    #[serde(default)]
    pub mixup: Option<MixupConfig>,
    /// Decay of a model EMA updated after every optimizer step (reference 0.9999); `None`: no
    /// EMA. It is validated beside the model after every epoch
    /// ([`EpochRecord::ema_valid_accuracy`], [`FitReport::ema_accuracy`]).
    #[serde(default)]
    pub ema_decay: Option<f64>,
    /// Warm the EMA's decay up as `min(decay, (1 + t) / (10 + t))` after `t` updates.
    #[serde(default)]
    pub ema_warmup: bool,
}

fn reference_crop() -> f64 {
    0.875
}

fn one() -> usize {
    1
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 64,
            lr: 1e-3,
            min_lr: 1e-5,
            warmup_lr: 1e-6,
            warmup_epochs: 1.0,
            weight_decay: 0.05,
            decay_fve: false,
            label_smoothing: 0.1,
            clip_grad: Some(5.0),
            num_workers: 1,
            seed: 0,
            grad_accumulation: 1,
            augment: AugmentConfig::default(),
            eval_crop_pct: 0.875,
            mixup: None,
            ema_decay: None,
            ema_warmup: false,
        }
    }
}

impl TrainingConfig {
    /// Checks the numbers.
    ///
    /// # Errors
    /// [`Error::InvalidTrainingOption`] naming the bad value by the `vheat train` flag that
    /// sets it (`--epochs`, `--batch` for `batch_size`, `--accum` for `grad_accumulation`,
    /// `--lr`, `--warmup-epochs`, `--weight-decay`, `--ema` for `ema_decay`), or by its field
    /// where no flag does (`min_lr`, `warmup_lr`, `label_smoothing`, `eval_crop_pct`,
    /// `clip_grad`); the augmentation's and Mixup's errors likewise.
    pub fn validate(&self) -> Result<()> {
        let bad = |option: &str, reason: String| {
            Err(Error::InvalidTrainingOption {
                option: option.into(),
                reason,
            })
        };
        if self.epochs == 0 {
            return bad(
                "--epochs",
                "0 passes over the training set; at least 1".into(),
            );
        }
        if self.batch_size == 0 {
            return bad("--batch", "0 images per batch; at least 1".into());
        }
        if self.grad_accumulation == 0 {
            return bad(
                "--accum",
                "0 batches per optimizer step; at least 1 (1 steps after every batch)".into(),
            );
        }
        for (option, v) in [
            ("--lr", self.lr),
            ("min_lr", self.min_lr),
            ("warmup_lr", self.warmup_lr),
            ("--weight-decay", self.weight_decay),
            ("--warmup-epochs", self.warmup_epochs),
        ] {
            if !v.is_finite() || v < 0.0 {
                return bad(option, format!("{v} must be a finite number >= 0"));
            }
        }
        if self.lr <= 0.0 {
            return bad("--lr", format!("{} must be > 0", self.lr));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(
                "label_smoothing",
                format!("{} is outside [0, 1)", self.label_smoothing),
            );
        }
        if !(self.eval_crop_pct > 0.0 && self.eval_crop_pct <= 1.0) {
            return bad(
                "eval_crop_pct",
                format!("{} is outside (0, 1]", self.eval_crop_pct),
            );
        }
        self.augment.validate()?;
        if let Some(m) = &self.mixup {
            m.validate()?;
        }
        if let Some(d) = self.ema_decay {
            if !(0.0..=1.0).contains(&d) {
                return bad("--ema", format!("EMA decay {d} is outside [0, 1]"));
            }
        }
        if let Some(c) = self.clip_grad {
            if !c.is_finite() || c <= 0.0 {
                return bad("clip_grad", format!("{c} must be > 0 (or absent)"));
            }
        }
        Ok(())
    }
}
