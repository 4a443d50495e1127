//! Mixup and CutMix at batch level, as timm's `Mixup` (`timm/data/mixup.py`, mode `batch`):
//! [`MixupConfig`] (the recipe), [`MixDraw`] (one batch's λ and CutMix box), the soft targets
//! ([`mixup_target`]) and the [`MixupBatcher`] that stacks items and mixes them on the host.
//!
//! Per batch, with probability `prob`, one λ is drawn: if both alphas are positive, CutMix is
//! chosen with probability `switch_prob` and λ ~ Beta(`cutmix_alpha`) for CutMix,
//! Beta(`mixup_alpha`) for Mixup. Mixup gives `λ·x + (1−λ)·x.flip(0)`; CutMix pastes a box of
//! the flipped batch ([`cutmix_box`]: side ratio `sqrt(1−λ)`, uniform centre, clipped to the
//! image) and corrects λ to the pasted area. The soft targets are the label-smoothed one-hots
//! mixed the same way.

use std::hash::Hasher;

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::batch::{stack_items, ImageBatch, ImageItem};
use super::rng::SplitMix64;
use crate::error::{Error, Result};

/// The Mixup/CutMix recipe. [`MixupConfig::new`] gives the reference's (DeiT/Swin/vHeat)
/// values: `mixup_alpha` 0.8, `cutmix_alpha` 1.0, `prob` 1.0, `switch_prob` 0.5, label
/// smoothing 0.1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixupConfig {
    /// Beta parameter of Mixup's λ; 0 turns Mixup off.
    pub mixup_alpha: f64,
    /// Beta parameter of CutMix's λ; 0 turns CutMix off.
    pub cutmix_alpha: f64,
    /// Probability that a batch is mixed at all.
    pub prob: f64,
    /// Probability of CutMix instead of Mixup when both are on.
    pub switch_prob: f64,
    /// Label smoothing folded into the soft targets (`off = s/K`, `on = 1 − s + s/K`).
    pub label_smoothing: f64,
    /// Number of classes `K` of the soft targets.
    pub num_classes: usize,
    /// Seed of the draws.
    pub seed: u64,
}

impl MixupConfig {
    /// The reference recipe for `num_classes` classes, seed 0.
    pub fn new(num_classes: usize) -> Self {
        Self {
            mixup_alpha: 0.8,
            cutmix_alpha: 1.0,
            prob: 1.0,
            switch_prob: 0.5,
            label_smoothing: 0.1,
            num_classes,
            seed: 0,
        }
    }

    /// Sets `mixup_alpha`.
    pub fn with_mixup_alpha(mut self, alpha: f64) -> Self {
        self.mixup_alpha = alpha;
        self
    }

    /// Sets `cutmix_alpha`.
    pub fn with_cutmix_alpha(mut self, alpha: f64) -> Self {
        self.cutmix_alpha = alpha;
        self
    }

    /// Sets `prob`.
    pub fn with_prob(mut self, prob: f64) -> Self {
        self.prob = prob;
        self
    }

    /// Sets `switch_prob`.
    pub fn with_switch_prob(mut self, prob: f64) -> Self {
        self.switch_prob = prob;
        self
    }

    /// Sets `label_smoothing`.
    pub fn with_label_smoothing(mut self, smoothing: f64) -> Self {
        self.label_smoothing = smoothing;
        self
    }

    /// Sets `seed`.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks the numbers.
    ///
    /// # Errors
    /// [`Error::InvalidTrainingOption`] naming the value by the `vheat train` flag that sets it
    /// (`--mixup` for `mixup_alpha`, `--cutmix` for `cutmix_alpha`) or by its field where no
    /// flag does: a negative or non-finite alpha, a probability outside `[0, 1]`, label
    /// smoothing outside `[0, 1)`, fewer than 2 classes, or mixing on (`prob > 0`) with both
    /// alphas 0.
    pub fn validate(&self) -> Result<()> {
        let bad = |option: &str, m: String| {
            Err(Error::InvalidTrainingOption {
                option: option.into(),
                reason: format!("mixup: {m}"),
            })
        };
        for (option, name, v) in [
            ("--mixup", "mixup_alpha", self.mixup_alpha),
            ("--cutmix", "cutmix_alpha", self.cutmix_alpha),
        ] {
            if !v.is_finite() || v < 0.0 {
                return bad(option, format!("`{name}` {v} must be a finite number >= 0"));
            }
        }
        for (name, v) in [("prob", self.prob), ("switch_prob", self.switch_prob)] {
            if !(0.0..=1.0).contains(&v) {
                return bad(name, format!("`{name}` {v} is outside [0, 1]"));
            }
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(
                "label_smoothing",
                format!(
                    "`label_smoothing` {} is outside [0, 1)",
                    self.label_smoothing
                ),
            );
        }
        if self.num_classes < 2 {
            return bad(
                "num_classes",
                format!(
                    "`num_classes` is {}; mixing needs at least 2 classes",
                    self.num_classes
                ),
            );
        }
        if self.prob > 0.0 && self.mixup_alpha == 0.0 && self.cutmix_alpha == 0.0 {
            return bad(
                "prob",
                "`prob` > 0 but both `mixup_alpha` and `cutmix_alpha` are 0".into(),
            );
        }
        Ok(())
    }

    /// Draws one batch's mixing for `height × width` images from `rng`, in timm's order:
    /// `U < prob`; then (both alphas on) `U < switch_prob`; the Beta draw; for CutMix the box
    /// centre row then column ([`cutmix_box`]).
    pub fn draw(&self, height: usize, width: usize, rng: &mut SplitMix64) -> MixDraw {
        let none = MixDraw {
            lam: 1.0,
            cutmix: None,
        };
        if rng.unit() >= self.prob {
            return none;
        }
        let use_cutmix = match (self.mixup_alpha > 0.0, self.cutmix_alpha > 0.0) {
            (true, true) => rng.unit() < self.switch_prob,
            (true, false) => false,
            (false, true) => true,
            (false, false) => return none,
        };
        let alpha = if use_cutmix {
            self.cutmix_alpha
        } else {
            self.mixup_alpha
        };
        let lam = rng.beta(alpha, alpha);
        if !use_cutmix {
            return MixDraw { lam, cutmix: None };
        }
        let cy = rng.below(height);
        let cx = rng.below(width);
        let (cut, lam) = cutmix_box(height, width, lam, cy, cx);
        MixDraw {
            lam,
            cutmix: Some(cut),
        }
    }
}

/// A CutMix box: rows `y0..y1`, columns `x0..x1` of the image (half-open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutBox {
    /// First row.
    pub y0: usize,
    /// One past the last row.
    pub y1: usize,
    /// First column.
    pub x0: usize,
    /// One past the last column.
    pub x1: usize,
}

impl CutBox {
    /// Number of pixels in the box.
    pub fn area(&self) -> usize {
        (self.y1 - self.y0) * (self.x1 - self.x0)
    }
}

/// One batch's mixing: the weight `lam` of the original image (1 = unmixed) and, for
/// CutMix, the box pasted from the flipped batch (then `lam` is already area-corrected).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixDraw {
    /// Weight of each image itself; `1 − lam` is that of its partner `B − 1 − i`.
    pub lam: f64,
    /// The CutMix box, or `None` for Mixup (or no mixing).
    pub cutmix: Option<CutBox>,
}

impl MixDraw {
    /// Mixes the stacked `[N, C, H, W]` `pixels` in place with the batch flipped along `N`
    /// (image `i` with image `N − 1 − i`; for odd `N` the middle image is its own partner,
    /// where timm refuses odd batches).
    ///
    /// # Panics
    /// If `pixels.len()` is not the product of `shape` or the box does not fit the image.
    pub fn apply(&self, pixels: &mut [f32], shape: [usize; 4]) {
        let [n, c, h, w] = shape;
        assert_eq!(pixels.len(), n * c * h * w, "pixels do not match the shape");
        let per = c * h * w;
        if let Some(b) = self.cutmix {
            assert!(b.y1 <= h && b.x1 <= w, "CutMix box outside the image");
            for i in 0..n / 2 {
                let j = n - 1 - i;
                for ch in 0..c {
                    for y in b.y0..b.y1 {
                        let row = ch * h * w + y * w;
                        for x in b.x0..b.x1 {
                            pixels.swap(i * per + row + x, j * per + row + x);
                        }
                    }
                }
            }
        } else if self.lam != 1.0 {
            let lam = self.lam as f32;
            let rest = (1.0 - self.lam) as f32;
            for i in 0..n.div_ceil(2) {
                let j = n - 1 - i;
                for k in 0..per {
                    let a = pixels[i * per + k];
                    let b = pixels[j * per + k];
                    pixels[i * per + k] = a * lam + b * rest;
                    pixels[j * per + k] = b * lam + a * rest;
                }
            }
        }
    }
}

/// timm's `rand_bbox` + `cutmix_bbox_and_lam(correct_lam=True)` for a given centre: side
/// ratio `r = sqrt(1 − lam)`, `cut = (⌊H·r⌋, ⌊W·r⌋)`, box `centre ± cut/2` (integer half)
/// clipped to the image, and `lam` corrected to `1 − area / (H·W)`.
pub fn cutmix_box(height: usize, width: usize, lam: f64, cy: usize, cx: usize) -> (CutBox, f64) {
    let ratio = (1.0 - lam).max(0.0).sqrt();
    let cut_h = (height as f64 * ratio) as usize;
    let cut_w = (width as f64 * ratio) as usize;
    let b = CutBox {
        y0: cy.saturating_sub(cut_h / 2),
        y1: (cy + cut_h / 2).min(height),
        x0: cx.saturating_sub(cut_w / 2),
        x1: (cx + cut_w / 2).min(width),
    };
    let lam = 1.0 - b.area() as f64 / (height * width) as f64;
    (b, lam)
}

/// timm's `mixup_target`: `[N, K]` row-major soft targets `lam·y + (1 − lam)·y.flip(0)` where
/// `y` is the one-hot of `labels` smoothed to `off = s/K`, `on = 1 − s + off`.
pub fn mixup_target(labels: &[usize], num_classes: usize, lam: f64, smoothing: f64) -> Vec<f32> {
    let n = labels.len();
    let off = smoothing / num_classes as f64;
    let on = 1.0 - smoothing + off;
    let mut out = vec![0f32; n * num_classes];
    for (i, row) in out.chunks_mut(num_classes).enumerate() {
        let (a, b) = (labels[i], labels[n - 1 - i]);
        for (k, v) in row.iter_mut().enumerate() {
            let ya = if k == a { on } else { off };
            let yb = if k == b { on } else { off };
            *v = (lam * ya + (1.0 - lam) * yb) as f32;
        }
    }
    out
}

/// A [`Batcher`] that stacks [`ImageItem`]s like [`super::ImageBatcher`], then mixes the batch
/// on the host ([`MixupConfig::draw`], [`MixDraw::apply`]) and sets
/// [`ImageBatch::soft_targets`]. Use it for the training loader only.
///
/// The draw of a batch comes from a generator seeded by `seed` and a hash of the batch's
/// labels and a sample of its pixels, so it is the same whichever loader worker thread builds
/// the batch and in whatever order; the workers share nothing.
#[derive(Debug, Clone)]
pub struct MixupBatcher {
    config: MixupConfig,
}

impl MixupBatcher {
    /// A batcher with this recipe.
    ///
    /// # Errors
    /// As [`MixupConfig::validate`].
    pub fn new(config: MixupConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The recipe.
    pub fn config(&self) -> &MixupConfig {
        &self.config
    }

    /// The generator of a batch with these labels and pixels.
    pub fn rng_for(&self, labels: &[usize], pixels: &[f32]) -> SplitMix64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        h.write_usize(labels.len());
        for &l in labels {
            h.write_usize(l);
        }
        let stride = (pixels.len() / 4096).max(1);
        for v in pixels.iter().step_by(stride) {
            h.write_u32(v.to_bits());
        }
        SplitMix64::for_item(self.config.seed, h.finish())
    }

    /// Stacks and mixes `items`; also returns the draw. The host-side half of
    /// [`Batcher::batch`].
    pub fn mix_items(&self, items: &[ImageItem]) -> (Vec<f32>, Vec<usize>, [usize; 4], MixDraw) {
        let (mut pixels, labels, shape) = stack_items(items);
        let mut rng = self.rng_for(&labels, &pixels);
        let draw = self.config.draw(shape[2], shape[3], &mut rng);
        draw.apply(&mut pixels, shape);
        (pixels, labels, shape, draw)
    }
}

impl Batcher<ImageItem, ImageBatch> for MixupBatcher {
    fn batch(&self, items: Vec<ImageItem>, device: &Device) -> ImageBatch {
        let (pixels, labels, shape, draw) = self.mix_items(&items);
        let k = self.config.num_classes;
        let soft = mixup_target(&labels, k, draw.lam, self.config.label_smoothing);
        let n = shape[0];
        let labels: Vec<i64> = labels.into_iter().map(|l| l as i64).collect();
        ImageBatch {
            images: Tensor::from_data(TensorData::new(pixels, shape), device),
            targets: Tensor::from_data(TensorData::new(labels, [n]), device),
            soft_targets: Some(Tensor::from_data(TensorData::new(soft, [n, k]), device)),
        }
    }
}
