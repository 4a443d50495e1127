//! Random erasing (Zhong et al., 2017) as timm's `RandomErasing` performs it on a normalised
//! `[3, H, W]` tensor: with probability `p`, one box of random area (a fraction `0.02..1/3`
//! of the image) and log-uniform aspect ratio (`0.3..1/0.3`) is replaced — in `pixel` mode by
//! independent standard-normal values (noise in normalised space). Up to 10 attempts are made
//! to fit the box strictly inside the image; if none fits, the image is left as it is.

use crate::data::rng::SplitMix64;

/// What the erased box is filled with (timm's `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EraseMode {
    /// Per-pixel, per-channel `N(0, 1)` values (timm's `'pixel'`).
    Pixel,
}

/// timm's `RandomErasing` with one box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomErasing {
    /// Probability of erasing anything at all.
    pub probability: f64,
    /// Range of the box's area as a fraction of the image's (default `0.02..1/3`).
    pub area: (f64, f64),
    /// Range of the box's aspect ratio `h / w` (log-uniform; default `0.3..1/0.3`).
    pub aspect: (f64, f64),
    /// The fill.
    pub mode: EraseMode,
}

impl RandomErasing {
    /// timm's defaults with probability `probability`.
    pub fn new(probability: f64) -> Self {
        Self {
            probability,
            area: (0.02, 1.0 / 3.0),
            aspect: (0.3, 1.0 / 0.3),
            mode: EraseMode::Pixel,
        }
    }

    /// The box `(top, left, h, w)` this draw would erase in an `h × w` image, or `None` when
    /// the draw erases nothing (the probability test failed or no attempt fitted).
    pub fn draw_box(
        &self,
        height: usize,
        width: usize,
        rng: &mut SplitMix64,
    ) -> Option<(usize, usize, usize, usize)> {
        if rng.unit() > self.probability {
            return None;
        }
        let area = (height * width) as f64;
        let (la, lb) = (self.aspect.0.ln(), self.aspect.1.ln());
        for _ in 0..10 {
            let target = rng.uniform(self.area.0, self.area.1) * area;
            let aspect = rng.uniform(la, lb).exp();
            let h = (target * aspect).sqrt().round() as usize;
            let w = (target / aspect).sqrt().round() as usize;
            if w < width && h < height {
                // timm's randint is inclusive of both ends.
                let top = rng.below(height - h + 1);
                let left = rng.below(width - w + 1);
                return Some((top, left, h, w));
            }
        }
        None
    }

    /// Erases (maybe) one box of the normalised `[3, height, width]` image `chw` in place;
    /// returns the box that was erased.
    pub fn apply(
        &self,
        chw: &mut [f32],
        height: usize,
        width: usize,
        rng: &mut SplitMix64,
    ) -> Option<(usize, usize, usize, usize)> {
        let (top, left, h, w) = self.draw_box(height, width, rng)?;
        let plane = height * width;
        for c in 0..3 {
            for y in top..top + h {
                for x in left..left + w {
                    if let Some(v) = chw.get_mut(c * plane + y * width + x) {
                        *v = match self.mode {
                            EraseMode::Pixel => rng.normal() as f32,
                        };
                    }
                }
            }
        }
        Some((top, left, h, w))
    }
}
