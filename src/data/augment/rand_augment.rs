//! RandAugment as timm's `rand_augment_transform` runs it: a spec string such as
//! `rand-m9-mstd0.5-inc1` picks a list of operations, a magnitude (0–10, with optional Gaussian
//! noise clipped to `[0, mmax]`) and a count; every image then gets `n` operations drawn
//! uniformly with replacement, each applied with probability `p` (default ½).
//!
//! The operations reproduce Pillow's pixel arithmetic (`ImageOps`, `ImageEnhance`,
//! `Image.transform`), so the same argument on the same image gives the same bytes (see
//! `tests/augment.rs` for the measured agreement).

use std::fmt;

use image::{Rgb, RgbImage};

use super::geometric::{rotate, warp_affine, Resample};
use crate::data::rng::SplitMix64;
use crate::error::{Error, Result};

/// timm's magnitude denominator: magnitude 10 is an operation's full strength.
pub const MAX_MAGNITUDE: f64 = 10.0;

/// timm's `img_mean` fill for the reference: `round(255 · IMAGENET_MEAN)`.
pub const IMAGENET_FILL: [u8; 3] = [124, 116, 104];

/// One RandAugment operation (timm's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RandOp {
    /// Per-channel histogram stretch to `0..255` (no argument).
    AutoContrast,
    /// Per-channel histogram equalisation (no argument).
    Equalize,
    /// `255 − v` (no argument).
    Invert,
    /// Rotation by `arg` degrees counter-clockwise about the centre.
    Rotate,
    /// Keep the `arg` most significant bits (timm's increasing form: fewer bits at higher
    /// magnitude).
    PosterizeIncreasing,
    /// Invert the values `≥ arg` (increasing form: lower threshold at higher magnitude).
    SolarizeIncreasing,
    /// Add `arg` to the values below 128 (saturating).
    SolarizeAdd,
    /// Saturation blend with factor `arg` (1 = unchanged).
    ColorIncreasing,
    /// Contrast blend with factor `arg` (against the mean grey).
    ContrastIncreasing,
    /// Brightness blend with factor `arg` (against black).
    BrightnessIncreasing,
    /// Sharpness blend with factor `arg` (against Pillow's `SMOOTH` filter).
    SharpnessIncreasing,
    /// Horizontal shear by factor `arg`.
    ShearX,
    /// Vertical shear by factor `arg`.
    ShearY,
    /// Horizontal shift by a fraction `arg` of the width.
    TranslateXRel,
    /// Vertical shift by a fraction `arg` of the height.
    TranslateYRel,
}

/// timm's `_RAND_INCREASING_TRANSFORMS`, in timm's order (`inc1`).
pub const RAND_INCREASING_OPS: [RandOp; 15] = [
    RandOp::AutoContrast,
    RandOp::Equalize,
    RandOp::Invert,
    RandOp::Rotate,
    RandOp::PosterizeIncreasing,
    RandOp::SolarizeIncreasing,
    RandOp::SolarizeAdd,
    RandOp::ColorIncreasing,
    RandOp::ContrastIncreasing,
    RandOp::BrightnessIncreasing,
    RandOp::SharpnessIncreasing,
    RandOp::ShearX,
    RandOp::ShearY,
    RandOp::TranslateXRel,
    RandOp::TranslateYRel,
];

/// `x` with probability ½, else `−x` (timm's `_randomly_negate`: one draw).
fn random_sign(x: f64, rng: &mut SplitMix64) -> f64 {
    if rng.unit() > 0.5 {
        -x
    } else {
        x
    }
}

/// A 256-entry lookup applied to every channel.
fn lut(img: &RgbImage, table: impl Fn(u8) -> u8) -> RgbImage {
    let t: Vec<u8> = (0..=255u8).map(table).collect();
    let mut out = img.clone();
    for p in out.pixels_mut() {
        for v in p.0.iter_mut() {
            *v = t[*v as usize];
        }
    }
    out
}

/// Pillow's `Image.blend(degenerate, img, factor)` (`ImagingBlend`, `f32` arithmetic,
/// truncation; clipped when extrapolating).
fn blend(degenerate: &RgbImage, img: &RgbImage, factor: f64) -> RgbImage {
    let alpha = factor as f32;
    if alpha == 0.0 {
        return degenerate.clone();
    }
    if alpha == 1.0 {
        return img.clone();
    }
    let mut out = img.clone();
    for ((o, a), b) in out
        .as_mut()
        .iter_mut()
        .zip(degenerate.as_raw())
        .zip(img.as_raw())
    {
        let t = *a as f32 + alpha * (*b as i32 - *a as i32) as f32;
        *o = if t <= 0.0 {
            0
        } else if t >= 255.0 {
            255
        } else {
            t as u8
        };
    }
    out
}

/// Pillow's RGB → L: `(19595 R + 38470 G + 7471 B + 2¹⁵) >> 16`.
fn luma(p: &Rgb<u8>) -> u8 {
    ((p.0[0] as u32 * 19595 + p.0[1] as u32 * 38470 + p.0[2] as u32 * 7471 + 0x8000) >> 16) as u8
}

/// Pillow's `SMOOTH` filter (3×3 kernel `1 1 1 / 1 5 1 / 1 1 1`, divisor 13); the border
/// pixels are copied unchanged.
fn smooth(img: &RgbImage) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    let mut out = img.clone();
    if w < 3 || h < 3 {
        return out;
    }
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let mut px = [0u8; 3];
            for (c, o) in px.iter_mut().enumerate() {
                let mut s = 0.0f32;
                for dy in 0..3 {
                    for dx in 0..3 {
                        let k = if dx == 1 && dy == 1 { 5.0 } else { 1.0 };
                        s += img.get_pixel(x + dx - 1, y + dy - 1).0[c] as f32 * (k / 13.0);
                    }
                }
                *o = if s <= 0.0 {
                    0
                } else if s >= 255.0 {
                    255
                } else {
                    (s + 0.5) as u8
                };
            }
            out.put_pixel(x, y, Rgb(px));
        }
    }
    out
}

/// Per-channel 256-bin histograms.
fn histograms(img: &RgbImage) -> [[u64; 256]; 3] {
    let mut h = [[0u64; 256]; 3];
    for p in img.pixels() {
        for c in 0..3 {
            h[c][p.0[c] as usize] += 1;
        }
    }
    h
}

/// Applies a per-channel lookup table.
fn lut3(img: &RgbImage, tables: &[[u8; 256]; 3]) -> RgbImage {
    let mut out = img.clone();
    for p in out.pixels_mut() {
        for c in 0..3 {
            p.0[c] = tables[c][p.0[c] as usize];
        }
    }
    out
}

fn auto_contrast(img: &RgbImage) -> RgbImage {
    let hist = histograms(img);
    let mut tables = [[0u8; 256]; 3];
    for (t, h) in tables.iter_mut().zip(hist.iter()) {
        let lo = h.iter().position(|&n| n > 0).unwrap_or(0);
        let hi = h.iter().rposition(|&n| n > 0).unwrap_or(0);
        for (i, v) in t.iter_mut().enumerate() {
            *v = if hi <= lo {
                i as u8
            } else {
                let scale = 255.0 / (hi - lo) as f64;
                let offset = -(lo as f64) * scale;
                // Python's int() truncates toward zero, then the clamp.
                ((i as f64 * scale + offset) as i64).clamp(0, 255) as u8
            };
        }
    }
    lut3(img, &tables)
}

fn equalize(img: &RgbImage) -> RgbImage {
    let hist = histograms(img);
    let mut tables = [[0u8; 256]; 3];
    for (t, h) in tables.iter_mut().zip(hist.iter()) {
        let nonzero: Vec<u64> = h.iter().copied().filter(|&n| n > 0).collect();
        let step = if nonzero.len() <= 1 {
            0
        } else {
            (nonzero.iter().sum::<u64>() - nonzero[nonzero.len() - 1]) / 255
        };
        if step == 0 {
            for (i, v) in t.iter_mut().enumerate() {
                *v = i as u8;
            }
            continue;
        }
        let mut n = step / 2;
        for (i, v) in t.iter_mut().enumerate() {
            *v = (n / step).min(255) as u8;
            n += h[i];
        }
    }
    lut3(img, &tables)
}

impl RandOp {
    /// timm's name of the operation.
    pub fn name(self) -> &'static str {
        match self {
            RandOp::AutoContrast => "AutoContrast",
            RandOp::Equalize => "Equalize",
            RandOp::Invert => "Invert",
            RandOp::Rotate => "Rotate",
            RandOp::PosterizeIncreasing => "PosterizeIncreasing",
            RandOp::SolarizeIncreasing => "SolarizeIncreasing",
            RandOp::SolarizeAdd => "SolarizeAdd",
            RandOp::ColorIncreasing => "ColorIncreasing",
            RandOp::ContrastIncreasing => "ContrastIncreasing",
            RandOp::BrightnessIncreasing => "BrightnessIncreasing",
            RandOp::SharpnessIncreasing => "SharpnessIncreasing",
            RandOp::ShearX => "ShearX",
            RandOp::ShearY => "ShearY",
            RandOp::TranslateXRel => "TranslateXRel",
            RandOp::TranslateYRel => "TranslateYRel",
        }
    }

    /// The operation's argument at `magnitude` (0–10), as timm's `LEVEL_TO_ARG` computes it;
    /// signed operations draw their sign from `rng` (one draw), the others draw nothing.
    pub fn level_arg(self, magnitude: f64, rng: &mut SplitMix64) -> f64 {
        let level = magnitude / MAX_MAGNITUDE;
        match self {
            RandOp::AutoContrast | RandOp::Equalize | RandOp::Invert => 0.0,
            RandOp::Rotate => random_sign(level * 30.0, rng),
            RandOp::PosterizeIncreasing => 4.0 - (level * 4.0).trunc(),
            RandOp::SolarizeIncreasing => 256.0 - ((level * 256.0).trunc()).min(256.0),
            RandOp::SolarizeAdd => (level * 110.0).trunc().min(128.0),
            RandOp::ColorIncreasing
            | RandOp::ContrastIncreasing
            | RandOp::BrightnessIncreasing
            | RandOp::SharpnessIncreasing => (1.0 + random_sign(level * 0.9, rng)).max(0.1),
            RandOp::ShearX | RandOp::ShearY => random_sign(level * 0.3, rng),
            RandOp::TranslateXRel | RandOp::TranslateYRel => random_sign(level * 0.45, rng),
        }
    }

    /// Applies the operation with argument `arg` (see each variant); geometric operations
    /// resample with `filter` and fill uncovered pixels with `fill`. The size never changes.
    pub fn apply(self, img: &RgbImage, arg: f64, filter: Resample, fill: [u8; 3]) -> RgbImage {
        match self {
            RandOp::AutoContrast => auto_contrast(img),
            RandOp::Equalize => equalize(img),
            RandOp::Invert => lut(img, |v| 255 - v),
            RandOp::Rotate => rotate(img, arg, filter, fill),
            RandOp::PosterizeIncreasing => {
                let bits = arg.clamp(0.0, 8.0) as u32;
                if bits >= 8 {
                    return img.clone();
                }
                let mask = !((1u32 << (8 - bits)) - 1) as u8;
                lut(img, |v| v & mask)
            }
            RandOp::SolarizeIncreasing => {
                let t = arg;
                lut(img, |v| if (v as f64) < t { v } else { 255 - v })
            }
            RandOp::SolarizeAdd => {
                let add = arg as i64;
                lut(img, |v| {
                    if v < 128 {
                        (v as i64 + add).clamp(0, 255) as u8
                    } else {
                        v
                    }
                })
            }
            RandOp::ColorIncreasing => {
                let grey = RgbImage::from_fn(img.width(), img.height(), |x, y| {
                    let l = luma(img.get_pixel(x, y));
                    Rgb([l, l, l])
                });
                blend(&grey, img, arg)
            }
            RandOp::ContrastIncreasing => {
                let n = (img.width() as u64 * img.height() as u64).max(1);
                let sum: u64 = img.pixels().map(|p| luma(p) as u64).sum();
                let mean = (sum as f64 / n as f64 + 0.5) as u8;
                blend(
                    &RgbImage::from_pixel(img.width(), img.height(), Rgb([mean; 3])),
                    img,
                    arg,
                )
            }
            RandOp::BrightnessIncreasing => blend(
                &RgbImage::from_pixel(img.width(), img.height(), Rgb([0; 3])),
                img,
                arg,
            ),
            RandOp::SharpnessIncreasing => blend(&smooth(img), img, arg),
            RandOp::ShearX => warp_affine(img, [1.0, arg, 0.0, 0.0, 1.0, 0.0], filter, fill),
            RandOp::ShearY => warp_affine(img, [1.0, 0.0, 0.0, arg, 1.0, 0.0], filter, fill),
            RandOp::TranslateXRel => {
                let px = arg * img.width() as f64;
                warp_affine(img, [1.0, 0.0, px, 0.0, 1.0, 0.0], filter, fill)
            }
            RandOp::TranslateYRel => {
                let px = arg * img.height() as f64;
                warp_affine(img, [1.0, 0.0, 0.0, 0.0, 1.0, px], filter, fill)
            }
        }
    }
}

impl fmt::Display for RandOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed RandAugment spec (`rand-m9-mstd0.5-inc1`), with timm's defaults for what the string
/// leaves out: magnitude 10, 2 operations, no noise, probability ½, the non-increasing list.
#[derive(Debug, Clone, PartialEq)]
pub struct RandAugment {
    /// The operations drawn from (uniformly, with replacement).
    pub ops: Vec<RandOp>,
    /// Operations per image (`n`).
    pub num_ops: usize,
    /// Magnitude (`m`, 0–10).
    pub magnitude: f64,
    /// Standard deviation of the magnitude's Gaussian noise (`mstd`); infinite means uniform in
    /// `[0, m]` (timm: `mstd` above 100).
    pub magnitude_std: f64,
    /// Upper clip of the noisy magnitude (`mmax`, default 10, at most 10).
    pub magnitude_max: f64,
    /// Probability of applying each drawn operation (`p`).
    pub prob: f64,
    /// Fill colour of the geometric operations.
    pub fill: [u8; 3],
    /// Resampling filter of the geometric operations.
    pub resample: Resample,
}

fn bad_spec(spec: &str, why: impl fmt::Display) -> Error {
    Error::InvalidConfig(format!("RandAugment spec {spec:?}: {why}"))
}

impl RandAugment {
    /// Parses a timm RandAugment spec: `rand` then `-`-separated tokens `m<int>` (magnitude
    /// 0–10), `n<int>` (operations per image, 1–16), `mstd<float>` (≥ 0), `mmax<int>` (1–10),
    /// `inc<0|1>` (increasing operation list) and `p<float>` (in `[0, 1]`).
    ///
    /// Only the increasing list (`inc1`) is implemented; `inc0` is refused rather than silently
    /// changed. Geometric operations fill with [`IMAGENET_FILL`] and resample bicubically, as
    /// the reference configures timm.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the token that is unknown, malformed or out of range.
    pub fn parse(spec: &str) -> Result<Self> {
        let mut parts = spec.split('-');
        if parts.next() != Some("rand") {
            return Err(bad_spec(spec, "must start with \"rand\""));
        }
        let mut out = RandAugment {
            ops: RAND_INCREASING_OPS.to_vec(),
            num_ops: 2,
            magnitude: MAX_MAGNITUDE,
            magnitude_std: 0.0,
            magnitude_max: MAX_MAGNITUDE,
            prob: 0.5,
            fill: IMAGENET_FILL,
            resample: Resample::Bicubic,
        };
        let mut increasing = false;
        for tok in parts {
            let split = tok.find(|c: char| c.is_ascii_digit()).unwrap_or(tok.len());
            let (key, val) = tok.split_at(split);
            let num = |what: &str| -> Result<f64> {
                val.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| bad_spec(spec, format!("{what} in {tok:?} is not a number")))
            };
            let int = |what: &str| -> Result<u64> {
                val.parse::<u64>()
                    .map_err(|_| bad_spec(spec, format!("{what} in {tok:?} is not a whole number")))
            };
            match key {
                "m" => {
                    let m = int("magnitude")?;
                    if m > 10 {
                        return Err(bad_spec(spec, format!("magnitude {m} is outside 0..=10")));
                    }
                    out.magnitude = m as f64;
                }
                "n" => {
                    let n = int("operation count")?;
                    if !(1..=16).contains(&n) {
                        return Err(bad_spec(
                            spec,
                            format!("operation count {n} is outside 1..=16"),
                        ));
                    }
                    out.num_ops = n as usize;
                }
                "mstd" => {
                    let s = num("magnitude std")?;
                    if s < 0.0 {
                        return Err(bad_spec(spec, format!("magnitude std {s} is negative")));
                    }
                    out.magnitude_std = if s > 100.0 { f64::INFINITY } else { s };
                }
                "mmax" => {
                    let m = int("magnitude bound")?;
                    if !(1..=10).contains(&m) {
                        return Err(bad_spec(
                            spec,
                            format!("magnitude bound {m} is outside 1..=10"),
                        ));
                    }
                    out.magnitude_max = m as f64;
                }
                "inc" => {
                    match int("inc flag")? {
                        1 => increasing = true,
                        0 => return Err(bad_spec(
                            spec,
                            "inc0 (the non-increasing operation list) is not implemented; use inc1",
                        )),
                        v => return Err(bad_spec(spec, format!("inc{v} must be inc0 or inc1"))),
                    }
                }
                "p" => {
                    let p = num("probability")?;
                    if !(0.0..=1.0).contains(&p) {
                        return Err(bad_spec(spec, format!("probability {p} is outside [0, 1]")));
                    }
                    out.prob = p;
                }
                _ => return Err(bad_spec(spec, format!("unknown token {tok:?}"))),
            }
        }
        if !increasing {
            return Err(bad_spec(
                spec,
                "only the increasing operation list is implemented: add \"-inc1\"",
            ));
        }
        Ok(out)
    }

    /// The magnitude of one application: `m` plus the configured noise, clipped to
    /// `[0, mmax]` (timm's `AugmentOp`; one Gaussian or uniform draw when noise is on).
    pub fn sample_magnitude(&self, rng: &mut SplitMix64) -> f64 {
        let m = if self.magnitude_std == f64::INFINITY {
            rng.uniform(0.0, self.magnitude)
        } else if self.magnitude_std > 0.0 {
            self.magnitude + self.magnitude_std * rng.normal()
        } else {
            self.magnitude
        };
        m.clamp(0.0, self.magnitude_max)
    }

    /// Draws `n` operations and applies each with probability `p` at a freshly sampled
    /// magnitude.
    pub fn apply(&self, img: &RgbImage, rng: &mut SplitMix64) -> RgbImage {
        let mut out = img.clone();
        for _ in 0..self.num_ops {
            let op = self.ops[rng.below(self.ops.len())];
            if self.prob < 1.0 && rng.unit() > self.prob {
                continue;
            }
            let magnitude = self.sample_magnitude(rng);
            let arg = op.level_arg(magnitude, rng);
            out = op.apply(&out, arg, self.resample, self.fill);
        }
        out
    }
}
