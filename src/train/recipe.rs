//! Recipes: the paper's full ImageNet recipe ([`TrainingConfig::reference`]) and the defaults
//! the trainer picks when a user names only a data folder: training from scratch
//! ([`TrainingConfig::from_scratch`]) or fine-tuning a checkpoint ([`TrainingConfig::fine_tune`]).
//! Each of the last two also says what it chose and why ([`ChosenRecipe::reasons`]), so the
//! trainer can print it.

use serde::{Deserialize, Serialize};

use super::fit::TrainingConfig;
use crate::data::{AugmentConfig, AugmentPolicy, MixupConfig};
use crate::vheat::VHeatConfig;

/// Images of this side or smaller are "small": trained from scratch with the `light`
/// augmentation (no crop to 8 % of the area, no flip), which keeps digits, glyphs and small
/// textures recognisable.
pub const SMALL_IMAGE_SIDE: usize = 64;

/// Which situation a recipe was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecipeKind {
    /// The paper's ImageNet recipe.
    Reference,
    /// A network trained from random weights on a user's folder.
    FromScratch,
    /// A pretrained network adapted to a user's folder.
    FineTune,
}

/// A recipe together with the reasons for its choices, one line each.
#[derive(Debug, Clone, PartialEq)]
pub struct ChosenRecipe {
    /// What it is for.
    pub kind: RecipeKind,
    /// The recipe.
    pub config: TrainingConfig,
    /// One line per choice that depends on the situation (learning rate, epochs, augmentation,
    /// evaluation crop), saying what was chosen and why.
    pub reasons: Vec<String>,
}

impl TrainingConfig {
    /// The paper's recipe for vHeat-T/S/B on ImageNet-1k (reference `classification/configs/vHeat/*.yaml`
    /// and `config.py`): 300 epochs, 20 of linear warm-up then cosine, AdamW (β 0.9/0.999,
    /// ε 1e-8) with base learning rate 5e-4 per 512 images (warm-up start 5e-7 and minimum
    /// 5e-6 scaled alike, `lr × total_batch / 512`), weight decay 0.08, label smoothing 0.1,
    /// Mixup 0.8 / CutMix 1.0 (switch 0.5), RandAugment `rand-m9-mstd0.5-inc1`, RandomErasing 0.25,
    /// model EMA 0.9999 and gradient clipping at global norm 5; the drop-path rate is the
    /// model configuration's own (0.1 / 0.3 / 0.5 in `VHeatConfig::tiny/small/base`). `total_batch` is the number of images
    /// per optimizer step (batch × gradient-accumulation steps × devices); it is also used as
    /// this config's `batch_size`.
    ///
    /// Deliberate differences from the reference (all settable): the frequency-value embeddings
    /// are not decayed (the reference's skip list names only norms and biases; see
    /// [`super::DecayGroups`]); float32 instead of AMP (Burn's CPU backend gains nothing from
    /// f16); data order and augmentation draws come from this crate's seeded generator, not
    /// PyTorch's.
    pub fn reference(model: &VHeatConfig, total_batch: usize) -> TrainingConfig {
        let scale = total_batch.max(1) as f64 / 512.0;
        TrainingConfig {
            epochs: 300,
            batch_size: total_batch.max(1),
            lr: 5e-4 * scale,
            min_lr: 5e-6 * scale,
            warmup_lr: 5e-7 * scale,
            warmup_epochs: 20.0,
            weight_decay: 0.08,
            decay_fve: false,
            label_smoothing: 0.1,
            clip_grad: Some(5.0),
            num_workers: 2,
            seed: 0,
            grad_accumulation: 1,
            augment: AugmentPolicy::Reference.config(),
            mixup: Some(MixupConfig::new(model.num_classes)),
            ema_decay: Some(0.9999),
            ema_warmup: false,
            eval_crop_pct: 0.875,
        }
    }

    /// Defaults for training a freshly initialised network on a user's folder of `num_images`
    /// training images of side `image_size`.
    ///
    /// Small images (side ≤ [`SMALL_IMAGE_SIDE`]): `light` augmentation, peak learning rate
    /// 2e-3 at batch 64, 30 epochs, 2 of warm-up, the whole image at evaluation (crop 1.0).
    /// Larger images: random resized crop (0.08–1) and flip, 1e-3, 50 epochs, 5 of warm-up,
    /// crop 0.875. No Mixup or EMA (they pay off only over long runs); weight decay 0.05.
    pub fn from_scratch(image_size: usize, num_images: usize) -> ChosenRecipe {
        let small = image_size <= SMALL_IMAGE_SIDE;
        let mut reasons = vec![format!(
            "from scratch (no --from): lr {} (a fresh network needs a larger step than \
             fine-tuning's 2e-4), weight decay 0.05, label smoothing 0.1, clip 5",
            if small { "2e-3" } else { "1e-3" }
        )];
        let (epochs, warmup, lr, augment, crop) = if small {
            reasons.push(format!(
                "images of {image_size} px (<= {SMALL_IMAGE_SIDE}): `light` augmentation (small \
                 shifts, scale and rotation, no flip: crops down to 8 % of the area and mirror \
                 images would destroy digits and glyphs); evaluation on the whole image"
            ));
            (30, 2.0, 2e-3, AugmentPolicy::Light.config(), 1.0)
        } else {
            reasons.push(format!(
                "images of {image_size} px (> {SMALL_IMAGE_SIDE}): random resized crop and \
                 horizontal flip; evaluation resizes to size / 0.875 and centre-crops"
            ));
            (50, 5.0, 1e-3, crop_flip(), 0.875)
        };
        reasons.push(format!(
            "{epochs} epochs ({warmup} of warm-up) over {num_images} training images"
        ));
        ChosenRecipe {
            kind: RecipeKind::FromScratch,
            config: TrainingConfig {
                epochs,
                batch_size: 64,
                lr,
                min_lr: 1e-5,
                warmup_lr: 1e-6,
                warmup_epochs: warmup,
                augment,
                eval_crop_pct: crop,
                ..TrainingConfig::default()
            },
            reasons,
        }
    }

    /// Defaults for fine-tuning a pretrained network on a user's folder: peak learning rate
    /// 2e-4 at batch 64 (a tenth of from-scratch: the pretrained features should move little),
    /// 10 epochs with 1 of warm-up; small images (≤ [`SMALL_IMAGE_SIDE`]) get `light`
    /// augmentation and the whole image at evaluation, larger ones random resized crop and flip
    /// with the checkpoint's 0.875 crop.
    pub fn fine_tune(image_size: usize, num_images: usize) -> ChosenRecipe {
        let small = image_size <= SMALL_IMAGE_SIDE;
        let mut reasons = vec![
            "fine-tuning (--from): lr 2e-4 (pretrained features should move little), 10 epochs, \
             1 of warm-up"
                .to_string(),
        ];
        let (augment, crop) = if small {
            reasons.push(format!(
                "images of {image_size} px (<= {SMALL_IMAGE_SIDE}): `light` augmentation; \
                 evaluation on the whole image"
            ));
            (AugmentPolicy::Light.config(), 1.0)
        } else {
            reasons.push(format!(
                "images of {image_size} px: random resized crop and flip; evaluation crop 0.875"
            ));
            (crop_flip(), 0.875)
        };
        reasons.push(format!("{num_images} training images"));
        ChosenRecipe {
            kind: RecipeKind::FineTune,
            config: TrainingConfig {
                epochs: 10,
                batch_size: 64,
                lr: 2e-4,
                warmup_epochs: 1.0,
                augment,
                eval_crop_pct: crop,
                ..TrainingConfig::default()
            },
            reasons,
        }
    }
}

impl TrainingConfig {
    /// This recipe for `ranks` data-parallel processes of `batch_size` images each: the peak,
    /// warm-up and minimum learning rates multiplied by `ranks` (linear scaling with the global
    /// batch, as the reference's `lr × total batch / 512` does: the reference recipe, made for
    /// one process's batch, then becomes the one for the global batch; the from-scratch and
    /// fine-tune defaults, chosen for a batch of 64, follow a global batch of `64 × ranks`
    /// alike). One rank: unchanged.
    pub fn for_ranks(&self, ranks: usize) -> TrainingConfig {
        let k = ranks.max(1) as f64;
        TrainingConfig {
            lr: self.lr * k,
            min_lr: self.min_lr * k,
            warmup_lr: self.warmup_lr * k,
            ..self.clone()
        }
    }
}

/// Random resized crop (0.08–1) and horizontal flip, without RandAugment or erasing: the
/// standard augmentation for larger images when the full reference recipe is not asked for.
fn crop_flip() -> AugmentConfig {
    AugmentConfig {
        rand_augment: None,
        reprob: 0.0,
        ..AugmentPolicy::Reference.config()
    }
}
