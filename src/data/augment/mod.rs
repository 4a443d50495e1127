//! Training augmentation as a policy the user picks: [`AugmentPolicy`] names a preset
//! (`none`, `light`, `reference`), [`AugmentConfig`] holds every piece of it, each settable
//! alone, and [`Augment`] is a validated config ready to turn a decoded image into the
//! network's normalised input.
//!
//! The pipeline, in order (a piece that is off is skipped):
//! 1. geometry — `none`: Pillow-exact bicubic resize to `size × size`; `light`: the same resize,
//!    then one small random warp ([`LightWarp`]); `reference`: random resized crop
//!    ([`TrainTransform`]'s sampling, bicubic);
//! 2. horizontal flip with probability `hflip`;
//! 3. RandAugment ([`RandAugment`], timm's spec string);
//! 4. ImageNet normalisation;
//! 5. random erasing ([`RandomErasing`], probability `reprob`).
//!
//! `reference` is timm's `create_transform(is_training=True)` as the vHeat reference configures
//! it (`rand-m9-mstd0.5-inc1`, `reprob 0.25`, `remode pixel`, `recount 1`, bicubic).

mod erasing;
mod geometric;
mod rand_augment;

use std::fmt;
use std::str::FromStr;

use image::RgbImage;
use serde::{Deserialize, Serialize};

pub use erasing::{EraseMode, RandomErasing};
pub use geometric::{rotate, warp_affine, LightWarp, Resample};
pub use rand_augment::{RandAugment, RandOp, IMAGENET_FILL, MAX_MAGNITUDE, RAND_INCREASING_OPS};

use super::rng::SplitMix64;
use super::transform::{normalize_rgb8, resize_bicubic_pil, TrainTransform};
use crate::error::{Error, Result};

/// The named augmentation presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AugmentPolicy {
    /// Resize and normalise only: deterministic.
    None,
    /// A small random translation, scale and rotation, no flip: for small or
    /// orientation-sensitive images (digits, glyphs).
    Light,
    /// The vHeat reference's ImageNet recipe (random resized crop, flip, RandAugment,
    /// random erasing).
    Reference,
}

impl AugmentPolicy {
    /// The policy names [`FromStr`] accepts.
    pub const NAMES: [&'static str; 3] = ["none", "light", "reference"];

    /// The policy's name (`none`, `light`, `reference`).
    pub fn name(self) -> &'static str {
        match self {
            AugmentPolicy::None => "none",
            AugmentPolicy::Light => "light",
            AugmentPolicy::Reference => "reference",
        }
    }

    /// The preset configuration of this policy.
    pub fn config(self) -> AugmentConfig {
        AugmentConfig::preset(self)
    }
}

impl fmt::Display for AugmentPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AugmentPolicy {
    type Err = Error;

    /// `none`, `light` or `reference` (case-insensitive).
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(AugmentPolicy::None),
            "light" => Ok(AugmentPolicy::Light),
            "reference" => Ok(AugmentPolicy::Reference),
            _ => Err(Error::InvalidConfig(format!(
                "unknown augmentation policy {s:?}: expected one of {}",
                AugmentPolicy::NAMES.join(", ")
            ))),
        }
    }
}

/// Every piece of an augmentation pipeline. Start from a preset
/// ([`AugmentPolicy::config`]) and change fields; [`validate`](Self::validate) (or
/// [`Augment::new`]) checks them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// The geometric stage (see the module docs): resize, light warp or random resized crop.
    pub policy: AugmentPolicy,
    /// Random resized crop: range of the crop's area fraction, in `(0, 1]` (`reference` only).
    pub scale: (f64, f64),
    /// Random resized crop: range of the aspect ratio `w / h`, positive (`reference` only).
    pub ratio: (f64, f64),
    /// Probability of a horizontal flip, in `[0, 1]`.
    pub hflip: f64,
    /// The `light` warp's ranges (`light` only).
    pub light: LightWarp,
    /// A timm RandAugment spec such as `rand-m9-mstd0.5-inc1`, or `None` for no RandAugment.
    pub rand_augment: Option<String>,
    /// Probability of random erasing, in `[0, 1]` (0 turns it off).
    pub reprob: f64,
    /// Fill of the erased box.
    pub remode: EraseMode,
    /// Number of erased boxes (only 1 is implemented).
    pub recount: usize,
}

impl AugmentConfig {
    /// The preset of `policy`.
    pub fn preset(policy: AugmentPolicy) -> Self {
        let base = Self {
            policy,
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            hflip: 0.0,
            light: LightWarp::default(),
            rand_augment: None,
            reprob: 0.0,
            remode: EraseMode::Pixel,
            recount: 1,
        };
        match policy {
            AugmentPolicy::None | AugmentPolicy::Light => base,
            AugmentPolicy::Reference => Self {
                hflip: 0.5,
                rand_augment: Some("rand-m9-mstd0.5-inc1".into()),
                reprob: 0.25,
                ..base
            },
        }
    }

    /// Checks every value.
    ///
    /// # Errors
    /// [`Error::InvalidTrainingOption`] naming the first contradictory value by the `vheat train`
    /// flag that sets it (`--hflip`, `--reprob`, `--scale`, `--rand-augment`), or by its field
    /// where no flag does: a probability outside `[0, 1]`, a crop scale outside `(0, 1]` or with
    /// `lo > hi`, a non-positive or reversed ratio, bad `light` ranges, a bad RandAugment spec,
    /// or an erase count other than 1.
    pub fn validate(&self) -> Result<()> {
        self.parse_rand_augment().map(|_| ())
    }

    fn parse_rand_augment(&self) -> Result<Option<RandAugment>> {
        fn bad<T>(option: &str, m: String) -> Result<T> {
            Err(Error::InvalidTrainingOption {
                option: option.into(),
                reason: m,
            })
        }
        let prob = |option: &str, name: &str, p: f64| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                bad(option, format!("{name} {p} is outside [0, 1]"))
            }
        };
        prob("--hflip", "horizontal-flip probability", self.hflip)?;
        prob("--reprob", "random-erasing probability", self.reprob)?;
        let (lo, hi) = self.scale;
        if !(lo > 0.0 && hi <= 1.0 && lo <= hi) {
            return bad(
                "--scale",
                format!("crop scale range ({lo}, {hi}) must satisfy 0 < lo <= hi <= 1"),
            );
        }
        let (lo, hi) = self.ratio;
        if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
            return bad(
                "ratio",
                format!("crop aspect-ratio range ({lo}, {hi}) must satisfy 0 < lo <= hi"),
            );
        }
        let l = &self.light;
        if !(0.0..0.5).contains(&l.translate) {
            return bad(
                "light.translate",
                format!(
                    "light translation {} is outside [0, 0.5) of the side",
                    l.translate
                ),
            );
        }
        if !(l.scale.0 > 0.0 && l.scale.0 <= l.scale.1 && l.scale.1.is_finite()) {
            return bad(
                "light.scale",
                format!(
                    "light scale range ({}, {}) must satisfy 0 < lo <= hi",
                    l.scale.0, l.scale.1
                ),
            );
        }
        if !(0.0..=180.0).contains(&l.rotate) {
            return bad(
                "light.rotate",
                format!("light rotation {} degrees is outside [0, 180]", l.rotate),
            );
        }
        if self.recount != 1 {
            return bad(
                "recount",
                format!(
                    "random-erasing count {} is not supported (only 1)",
                    self.recount
                ),
            );
        }
        self.rand_augment
            .as_deref()
            .map(RandAugment::parse)
            .transpose()
            .map_err(|e| match e {
                Error::InvalidConfig(reason) => Error::InvalidTrainingOption {
                    option: "--rand-augment".into(),
                    reason,
                },
                other => other,
            })
    }
}

impl Default for AugmentConfig {
    /// The `none` preset.
    fn default() -> Self {
        Self::preset(AugmentPolicy::None)
    }
}

impl fmt::Display for AugmentConfig {
    /// One line naming the policy and every piece that is on, e.g.
    /// `augmentation reference: random-resized-crop scale 0.08..1 ratio 0.75..1.333 bicubic,
    /// hflip 0.5, rand-augment rand-m9-mstd0.5-inc1, random-erasing p 0.25 pixel x1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "augmentation {}: ", self.policy)?;
        match self.policy {
            AugmentPolicy::None => write!(f, "bicubic resize")?,
            AugmentPolicy::Light => write!(
                f,
                "bicubic resize, warp translate ±{:.4} scale {}..{} rotate ±{}° {:?} zero-fill",
                self.light.translate,
                self.light.scale.0,
                self.light.scale.1,
                self.light.rotate,
                self.light.resample
            )?,
            AugmentPolicy::Reference => write!(
                f,
                "random-resized-crop scale {}..{} ratio {:.3}..{:.3} bicubic",
                self.scale.0, self.scale.1, self.ratio.0, self.ratio.1
            )?,
        }
        if self.hflip > 0.0 {
            write!(f, ", hflip {}", self.hflip)?;
        } else {
            write!(f, ", no flip")?;
        }
        match &self.rand_augment {
            Some(s) => write!(f, ", rand-augment {s}")?,
            None => write!(f, ", no rand-augment")?,
        }
        if self.reprob > 0.0 {
            write!(
                f,
                ", random-erasing p {} {:?} x{}",
                self.reprob, self.remode, self.recount
            )?;
        } else {
            write!(f, ", no random-erasing")?;
        }
        write!(f, ", ImageNet normalisation")
    }
}

/// A validated [`AugmentConfig`] for output side `size`: what a training dataset applies to
/// every image it reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Augment {
    config: AugmentConfig,
    size: u32,
    crop: TrainTransform,
    rand_augment: Option<RandAugment>,
    erasing: Option<RandomErasing>,
}

impl Augment {
    /// Validates `config` for `size × size` outputs.
    ///
    /// # Errors
    /// Those of [`AugmentConfig::validate`]; [`Error::InvalidConfig`] for `size == 0`.
    pub fn new(config: AugmentConfig, size: u32) -> Result<Self> {
        if size == 0 {
            return Err(Error::InvalidConfig(
                "augmentation output size must be at least 1".into(),
            ));
        }
        let rand_augment = config.parse_rand_augment()?;
        let crop = TrainTransform {
            size,
            scale: config.scale,
            ratio: config.ratio,
            // The flip is this pipeline's own step.
            flip: 0.0,
        };
        let erasing = (config.reprob > 0.0).then(|| RandomErasing::new(config.reprob));
        Ok(Self {
            config,
            size,
            crop,
            rand_augment,
            erasing,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AugmentConfig {
        &self.config
    }

    /// The output side.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The parsed RandAugment, if any.
    pub fn rand_augment(&self) -> Option<&RandAugment> {
        self.rand_augment.as_ref()
    }

    /// Steps 1–3 (geometry, flip, RandAugment): the 8-bit `size × size` image.
    pub fn augment_rgb8(&self, img: &RgbImage, rng: &mut SplitMix64) -> RgbImage {
        let resize = |img: &RgbImage| {
            if (img.width(), img.height()) == (self.size, self.size) {
                img.clone()
            } else {
                resize_bicubic_pil(img, self.size, self.size)
            }
        };
        let mut out = match self.config.policy {
            AugmentPolicy::None => resize(img),
            AugmentPolicy::Light => self.config.light.apply(&resize(img), rng),
            AugmentPolicy::Reference => self.crop.crop(img, rng),
        };
        if self.config.hflip > 0.0 && rng.chance(self.config.hflip) {
            out = image::imageops::flip_horizontal(&out);
        }
        if let Some(ra) = &self.rand_augment {
            out = ra.apply(&out, rng);
        }
        out
    }

    /// The whole pipeline: normalised `[3, size, size]` values.
    pub fn apply(&self, img: &RgbImage, rng: &mut SplitMix64) -> Vec<f32> {
        let mut chw = normalize_rgb8(&self.augment_rgb8(img, rng));
        if let Some(e) = &self.erasing {
            let s = self.size as usize;
            e.apply(&mut chw, s, s, rng);
        }
        chw
    }
}

impl fmt::Display for Augment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (output {}x{})", self.config, self.size, self.size)
    }
}
