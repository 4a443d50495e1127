//! Recipes: the paper's full ImageNet recipe ([`TrainingConfig::reference`]) and the defaults
//! the trainer picks when a user names only a data folder: training from scratch
//! ([`TrainingConfig::from_scratch`]) or fine-tuning a checkpoint ([`TrainingConfig::fine_tune`]).
//! Each of the last two also says what it chose and why ([`ChosenRecipe::reasons`]), so the
//! trainer can print it. [`RecipeOverrides`] lays what a user asked for on top of any of them,
//! validated.

use serde::{Deserialize, Serialize};

use super::config::TrainingConfig;
use crate::data::{AugmentConfig, AugmentPolicy, MixupConfig};
use crate::error::{Error, Result};
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
#[non_exhaustive]
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

/// What a user asked to change in a recipe: every field `None` (or `false`) keeps the recipe's
/// own value. The `vheat train` flags fill it; a library user builds one with
/// [`Default::default`] and sets what they need.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecipeOverrides {
    /// Passes over the training set.
    pub epochs: Option<usize>,
    /// Images per batch.
    pub batch: Option<usize>,
    /// Batches whose gradients are summed before each optimizer step.
    pub accum: Option<usize>,
    /// Peak learning rate.
    pub lr: Option<f64>,
    /// Warm-up length in epochs.
    pub warmup_epochs: Option<f64>,
    /// Weight decay of the decayed parameter group.
    pub weight_decay: Option<f64>,
    /// Image-loading threads.
    pub workers: Option<usize>,
    /// Seed of the data order and the augmentation draws.
    pub seed: Option<u64>,
    /// Augmentation policy by name (`none`, `light`, `reference`).
    pub aug: Option<String>,
    /// Random-resized-crop area range, as the two numbers LO, HI.
    pub scale: Option<Vec<f64>>,
    /// Probability of a horizontal flip.
    pub hflip: Option<f64>,
    /// RandAugment as timm spells it, or `none`.
    pub rand_augment: Option<String>,
    /// RandomErasing probability.
    pub reprob: Option<f64>,
    /// Mixup alpha (0 turns Mixup off).
    pub mixup: Option<f64>,
    /// CutMix alpha (0 turns CutMix off).
    pub cutmix: Option<f64>,
    /// Decay of a model EMA (0 or less turns it off).
    pub ema: Option<f64>,
    /// Warm the EMA decay up.
    pub ema_warmup: bool,
}

/// Which recipe an image-folder run starts from before [`RecipeOverrides`] are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipeChoice {
    /// The paper's recipe ([`TrainingConfig::reference`]).
    Reference,
    /// [`TrainingConfig::fine_tune`] when fine-tuning, else [`TrainingConfig::from_scratch`].
    Auto,
}

impl RecipeOverrides {
    /// The recipe for an image folder of `num_images` training images at side `size` for a
    /// model of configuration `model`: the [`RecipeChoice`] (its reasons kept), then every
    /// override on top, validated.
    ///
    /// # Errors
    /// [`Error::InvalidTrainingOption`] naming a contradictory or out-of-range override by its
    /// flag.
    pub fn folder_recipe(
        &self,
        choice: RecipeChoice,
        fine_tuning: bool,
        model: &VHeatConfig,
        size: usize,
        num_images: usize,
    ) -> Result<ChosenRecipe> {
        let mut chosen = match choice {
            RecipeChoice::Reference => {
                let accum = self.accum.unwrap_or(1);
                let batch = self.batch.unwrap_or(512usize.div_ceil(accum.max(1)));
                let total = batch.saturating_mul(accum);
                let mut config = TrainingConfig::reference(model, total);
                config.batch_size = batch;
                ChosenRecipe {
                    kind: RecipeKind::Reference,
                    config,
                    reasons: vec![format!(
                        "the paper's reference recipe for this configuration at {total} images per step"
                    )],
                }
            }
            RecipeChoice::Auto if fine_tuning => TrainingConfig::fine_tune(size, num_images),
            RecipeChoice::Auto => TrainingConfig::from_scratch(size, num_images),
        };
        self.apply(&mut chosen.config, model.num_classes)?;
        chosen.config.validate()?;
        Ok(chosen)
    }

    /// Every override on top of `recipe` (for a model of `num_classes` classes, which Mixup's
    /// soft targets need).
    ///
    /// # Errors
    /// [`Error::InvalidTrainingOption`] naming the flag: an unknown augmentation policy
    /// (`--aug`), a `--scale` that is not two numbers, or a `--mixup`/`--cutmix` alpha that is
    /// not a finite number ≥ 0.
    pub fn apply(&self, recipe: &mut TrainingConfig, num_classes: usize) -> Result<()> {
        if let Some(e) = self.epochs {
            recipe.epochs = e;
        }
        if let Some(b) = self.batch {
            recipe.batch_size = b;
        }
        if let Some(lr) = self.lr {
            recipe.lr = lr;
        }
        if let Some(w) = self.warmup_epochs {
            recipe.warmup_epochs = w;
        }
        if let Some(w) = self.weight_decay {
            recipe.weight_decay = w;
        }
        if let Some(a) = self.accum {
            recipe.grad_accumulation = a;
        }
        if let Some(w) = self.workers {
            recipe.num_workers = w;
        }
        if let Some(s) = self.seed {
            recipe.seed = s;
        }
        if let Some(policy) = &self.aug {
            recipe.augment = policy
                .parse::<AugmentPolicy>()
                .map_err(|e| Error::InvalidTrainingOption {
                    option: "--aug".into(),
                    reason: match e {
                        Error::InvalidConfig(reason) => reason,
                        other => other.to_string(),
                    },
                })?
                .config();
        }
        if let Some(scale) = &self.scale {
            let [lo, hi] = scale[..] else {
                return Err(Error::InvalidTrainingOption {
                    option: "--scale".into(),
                    reason: format!("takes two numbers LO,HI, got {scale:?}"),
                });
            };
            recipe.augment.scale = (lo, hi);
        }
        if let Some(p) = self.hflip {
            recipe.augment.hflip = p;
        }
        if let Some(spec) = &self.rand_augment {
            recipe.augment.rand_augment = (spec != "none").then(|| spec.clone());
        }
        if let Some(p) = self.reprob {
            recipe.augment.reprob = p;
        }
        self.apply_mixup(recipe, num_classes)?;
        if let Some(d) = self.ema {
            recipe.ema_decay = (d > 0.0).then_some(d);
        }
        recipe.ema_warmup |= self.ema_warmup;
        Ok(())
    }

    /// `--mixup` / `--cutmix` on top of the recipe's Mixup (or a fresh one with both alphas 0):
    /// batch mixing is on when either alpha is above 0.
    fn apply_mixup(&self, recipe: &mut TrainingConfig, num_classes: usize) -> Result<()> {
        for (flag, v) in [("--mixup", self.mixup), ("--cutmix", self.cutmix)] {
            if let Some(a) = v.filter(|a| !(a.is_finite() && *a >= 0.0)) {
                return Err(Error::InvalidTrainingOption {
                    option: flag.into(),
                    reason: format!("{a}: the alpha must be a finite number >= 0 (0 turns it off)"),
                });
            }
        }
        if self.mixup.is_none() && self.cutmix.is_none() {
            return Ok(());
        }
        let mut m = recipe
            .mixup
            .clone()
            .unwrap_or_else(|| {
                MixupConfig::new(num_classes)
                    .with_mixup_alpha(0.0)
                    .with_cutmix_alpha(0.0)
            })
            .with_label_smoothing(recipe.label_smoothing);
        if let Some(a) = self.mixup {
            m = m.with_mixup_alpha(a);
        }
        if let Some(a) = self.cutmix {
            m = m.with_cutmix_alpha(a);
        }
        recipe.mixup = (m.mixup_alpha > 0.0 || m.cutmix_alpha > 0.0).then_some(m);
        Ok(())
    }

    /// The recipe of a run on the built-in synthetic shapes (`num_classes` classes): the
    /// library defaults with one epoch of warm-up, batch 64, `default_epochs` and `default_lr`,
    /// then every override on top, validated like a folder's.
    ///
    /// # Errors
    /// As [`folder_recipe`](Self::folder_recipe).
    pub fn synthetic_recipe(
        &self,
        default_epochs: usize,
        default_lr: f64,
        num_classes: usize,
    ) -> Result<TrainingConfig> {
        let mut recipe = TrainingConfig {
            epochs: default_epochs,
            lr: default_lr,
            warmup_epochs: 1.0,
            num_workers: 1,
            ..TrainingConfig::default()
        };
        self.apply(&mut recipe, num_classes)?;
        recipe.validate()?;
        Ok(recipe)
    }

    /// True when an augmentation override is given (they shape image-folder training only:
    /// the synthetic shapes are drawn fresh and not augmented).
    pub fn sets_augmentation(&self) -> bool {
        self.aug.is_some()
            || self.scale.is_some()
            || self.hflip.is_some()
            || self.rand_augment.is_some()
            || self.reprob.is_some()
    }
}

/// One line each for the batch mixing and the model EMA of `recipe`, when they are on: what a
/// trainer prints so that the user sees them.
pub fn describe_mixing_and_ema(recipe: &TrainingConfig) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(m) = &recipe.mixup {
        lines.push(format!(
            "mixup: alpha {} / cutmix alpha {}, switch {}, prob {}, smoothing {} in the soft targets",
            m.mixup_alpha, m.cutmix_alpha, m.switch_prob, m.prob, m.label_smoothing
        ));
    }
    if let Some(d) = recipe.ema_decay {
        lines.push(format!(
            "model EMA: decay {d}{}",
            if recipe.ema_warmup {
                " with warm-up"
            } else {
                ""
            }
        ));
    }
    lines
}
