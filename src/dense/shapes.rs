//! [`ShapeMasks`]: a procedurally generated segmentation data set — disks, rings and bars on
//! textured backgrounds, with their pixel masks.

use burn::prelude::*;

use crate::data::{SplitMix64, IMAGENET_MEAN, IMAGENET_STD};

/// Class names of the [`ShapeMasks`] masks, by class id.
pub const MASK_CLASSES: [&str; 4] = ["background", "disk", "ring", "bar"];

/// Inner radius of a ring as a fraction of its outer radius.
const RING_HOLE: f32 = 0.55;
/// Length-to-width ratio of a bar.
const BAR_ASPECT: f32 = 3.0;

/// Builds a [`ShapeMasks`] generator.
#[derive(Config, Debug)]
pub struct ShapeMasksConfig {
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Each image holds between 1 and `max_shapes` shapes.
    #[config(default = 3)]
    pub max_shapes: usize,
    /// Standard deviation of the uniform per-pixel noise, in units of the `[0, 1]` colour range.
    #[config(default = 0.08)]
    pub noise: f32,
}

/// An endless, seeded stream of segmentation samples: 1 to `max_shapes` shapes — a disk, a
/// ring or a bar (classes 1, 2, 3; background 0) — each randomly placed, sized, rotated and
/// coloured, painted over a background of a random colour, a linear gradient and pixel noise.
/// The three kinds have the same area for the same size, and colours do not depend on the
/// class, so telling them apart takes their form (a hole, an elongation), which is visible at
/// the backbone's stride-4 resolution.
///
/// Images are `[3, H, W]`, normalised with the ImageNet mean and standard deviation like every
/// other image this crate loads; masks are `[H, W]` class ids ([`MASK_CLASSES`]). The same seed
/// gives the same stream on every platform.
#[derive(Debug, Clone)]
pub struct ShapeMasks {
    config: ShapeMasksConfig,
    rng: SplitMix64,
}

impl ShapeMasks {
    /// A generator of `config`-sized samples seeded with `seed`.
    pub fn new(config: ShapeMasksConfig, seed: u64) -> Self {
        Self {
            config,
            rng: SplitMix64::new(seed),
        }
    }

    /// The generator's configuration.
    pub fn config(&self) -> &ShapeMasksConfig {
        &self.config
    }

    /// Uniform in `[lo, hi)`.
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        self.rng.uniform(lo as f64, hi as f64) as f32
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        self.rng.below(n)
    }

    fn colour(&mut self) -> [f32; 3] {
        [
            self.uniform(0.0, 1.0),
            self.uniform(0.0, 1.0),
            self.uniform(0.0, 1.0),
        ]
    }

    /// One sample: the image `[3, H, W]` (channel-major) and the mask `[H, W]`.
    pub fn sample(&mut self) -> (Vec<f32>, Vec<i64>) {
        let (h, w) = (self.config.height, self.config.width);
        let mut image = vec![0f32; 3 * h * w];
        let mut mask = vec![0i64; h * w];

        // Background: a base colour plus a linear gradient in a random direction.
        let base = self.colour();
        let grad = [
            self.uniform(-0.3, 0.3),
            self.uniform(-0.3, 0.3),
            self.uniform(-0.3, 0.3),
        ];
        let angle = self.uniform(0.0, std::f32::consts::TAU);
        let (gy, gx) = angle.sin_cos();
        for y in 0..h {
            for x in 0..w {
                let t = (gx * (x as f32 / w as f32 - 0.5)) + (gy * (y as f32 / h as f32 - 0.5));
                for c in 0..3 {
                    image[(c * h + y) * w + x] = base[c] + grad[c] * t;
                }
            }
        }

        let side = h.min(w) as f32;
        let n = 1 + self.below(self.config.max_shapes.max(1));
        for _ in 0..n {
            let class = 1 + self.below(3);
            let r = self.uniform(side / 7.0, side / 3.5);
            let cy = self.uniform(r * 0.5, h as f32 - r * 0.5);
            let cx = self.uniform(r * 0.5, w as f32 - r * 0.5);
            let rot = self.uniform(0.0, std::f32::consts::TAU);
            // A colour that stands out from the background (mean channel difference ≥ 0.25).
            let mut colour = self.colour();
            for _ in 0..8 {
                let diff: f32 = colour
                    .iter()
                    .zip(&base)
                    .map(|(a, b)| (a - b).abs())
                    .sum::<f32>()
                    / 3.0;
                if diff >= 0.25 {
                    break;
                }
                colour = self.colour();
            }
            // Sizes giving every kind the same area πr².
            let pi = std::f32::consts::PI;
            let (cos, sin) = (rot.cos(), rot.sin());
            let ring_outer = r / (1.0 - RING_HOLE * RING_HOLE).sqrt();
            let bar_half_width = r * (pi / (4.0 * BAR_ASPECT)).sqrt();
            let bar_half_length = BAR_ASPECT * bar_half_width;
            for y in 0..h {
                for x in 0..w {
                    let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                    let d2 = dx * dx + dy * dy;
                    let inside = match class {
                        1 => d2 <= r * r,
                        2 => {
                            d2 <= ring_outer * ring_outer
                                && d2 >= (RING_HOLE * ring_outer) * (RING_HOLE * ring_outer)
                        }
                        _ => {
                            // The bar's own axes: along `rot` and across it.
                            let (u, v) = (dx * cos + dy * sin, -dx * sin + dy * cos);
                            u.abs() <= bar_half_length && v.abs() <= bar_half_width
                        }
                    };
                    if inside {
                        mask[y * w + x] = class as i64;
                        for c in 0..3 {
                            image[(c * h + y) * w + x] = colour[c];
                        }
                    }
                }
            }
        }

        // Uniform noise of standard deviation `noise`, then the ImageNet normalisation.
        let noise = self.config.noise * 3f32.sqrt();
        for (i, v) in image.iter_mut().enumerate() {
            let c = i / (h * w);
            let n = self.uniform(-1.0, 1.0) * noise;
            *v = ((*v + n).clamp(0.0, 1.0) - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
        (image, mask)
    }

    /// A batch of `n` samples on `device`: images `[n, 3, H, W]` and masks `[n, H, W]`.
    pub fn batch(&mut self, n: usize, device: &Device) -> (Tensor<4>, Tensor<3, Int>) {
        let (h, w) = (self.config.height, self.config.width);
        let mut images = Vec::with_capacity(n * 3 * h * w);
        let mut masks = Vec::with_capacity(n * h * w);
        for _ in 0..n {
            let (i, m) = self.sample();
            images.extend(i);
            masks.extend(m);
        }
        (
            Tensor::from_data(TensorData::new(images, [n, 3, h, w]), device),
            Tensor::from_data(TensorData::new(masks, [n, h, w]), device),
        )
    }
}
