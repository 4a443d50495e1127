//! A procedurally generated image-classification dataset that needs a global view: shapes,
//! counts and periodic patterns at a random position, scale, rotation, colour and noise level.
//!
//! Nothing is downloaded and nothing is stored: sample `i` of a dataset with seed `s` is drawn
//! from a random stream that depends only on `(s, i)`, so a dataset is identical on every
//! machine, in every thread, in any order.

use burn::data::dataset::Dataset;
use serde::{Deserialize, Serialize};

use super::batch::ImageItem;
use super::normalize::normalize_rgb;
use super::rng::SplitMix64;
use crate::error::{Error, Result};

/// The largest synthetic dataset [`SyntheticShapes::new`] accepts: 10⁸ images (a data loader's
/// index list of 0.8 GB), far above any run this dataset is for.
pub const MAX_SYNTHETIC_IMAGES: usize = 100_000_000;

/// The classes of [`SyntheticShapes`], in label order.
///
/// Telling them apart takes more than a local texture: a disc and a ring differ only in the
/// middle of the shape, one/two/three discs differ only in a count across the whole image, and
/// stripes fill the image with one orientation.
pub const SHAPE_CLASSES: [&str; 8] = [
    "disc",
    "ring",
    "square",
    "triangle",
    "cross",
    "two discs",
    "three discs",
    "stripes",
];

/// Settings of a [`SyntheticShapes`] dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShapesConfig {
    /// Side of the square images, in pixels (at least 16).
    pub image_size: usize,
    /// Number of samples.
    pub len: usize,
    /// The seed: two datasets with the same seed and size hold the same images.
    pub seed: u64,
    /// Largest standard deviation of the additive Gaussian pixel noise (each image draws its
    /// own level in `[0, max_noise]`), on the `[0, 1]` intensity scale.
    pub max_noise: f64,
}

impl ShapesConfig {
    /// `len` images of `image_size × image_size` pixels from stream `seed`, noise up to 0.08.
    pub fn new(image_size: usize, len: usize, seed: u64) -> Self {
        Self {
            image_size,
            len,
            seed,
            max_noise: 0.08,
        }
    }

    /// Sets the largest noise level.
    pub fn with_max_noise(mut self, max_noise: f64) -> Self {
        self.max_noise = max_noise;
        self
    }
}

/// The built-in procedural dataset, drawn on the fly from `(seed, index)`: sample `i` has label
/// `i mod 8` ([`SHAPE_CLASSES`]), so every class is equally frequent, and is normalised with
/// the ImageNet mean and standard deviation, like every other image this crate loads.
#[derive(Debug, Clone)]
pub struct SyntheticShapes {
    config: ShapesConfig,
}

impl SyntheticShapes {
    /// Checks the settings and makes the dataset.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an image side below 16 pixels, an empty or oversized dataset
    /// or a noise level outside `[0, 1]`.
    pub fn new(config: ShapesConfig) -> Result<Self> {
        // Checked before anything is sized by it: an absurd count must be an error, not an
        // allocation failure.
        let refuse = |what: &str, expected: String, found: String| Error::InvalidInput {
            what: format!("the synthetic dataset's {what}"),
            expected,
            found,
        };
        if config.image_size < 16 {
            return Err(refuse(
                "image side",
                "at least 16 pixels (the shapes cannot be drawn smaller)".into(),
                format!("{} pixels", config.image_size),
            ));
        }
        if config.len == 0 || config.len > MAX_SYNTHETIC_IMAGES {
            return Err(refuse(
                "number of images",
                format!(
                    "1 to {MAX_SYNTHETIC_IMAGES} (a data loader keeps an index per image, 8 \
                     bytes each)"
                ),
                config.len.to_string(),
            ));
        }
        if !(0.0..=1.0).contains(&config.max_noise) {
            return Err(refuse(
                "noise level",
                "a value in [0, 1]".into(),
                config.max_noise.to_string(),
            ));
        }
        Ok(Self { config })
    }

    /// The settings.
    pub fn config(&self) -> &ShapesConfig {
        &self.config
    }

    /// The class names, in label order ([`SHAPE_CLASSES`]).
    pub fn class_names() -> Vec<String> {
        SHAPE_CLASSES.iter().map(|s| s.to_string()).collect()
    }

    /// Number of classes (8).
    pub fn num_classes() -> usize {
        SHAPE_CLASSES.len()
    }

    /// Sample `index` as an RGB image `[H, W, 3]` with values in `[0, 1]`, and its label.
    /// Indices past [`len`](Dataset::len) are valid too (the stream is endless).
    pub fn render_rgb(&self, index: usize) -> (Vec<f32>, usize) {
        let label = index % SHAPE_CLASSES.len();
        let mut rng = SplitMix64::for_item(self.config.seed, index as u64);
        let pixels = draw(
            label,
            self.config.image_size,
            self.config.max_noise,
            &mut rng,
        );
        (pixels, label)
    }

    /// Sample `index`, normalised, as the network sees it.
    pub fn item(&self, index: usize) -> ImageItem {
        let (rgb, label) = self.render_rgb(index);
        let s = self.config.image_size;
        ImageItem {
            pixels: normalize_rgb(&rgb, s, s),
            shape: [3, s, s],
            label,
        }
    }
}

impl Dataset<ImageItem> for SyntheticShapes {
    fn get(
        &self,
        index: usize,
    ) -> std::result::Result<ImageItem, burn::data::dataset::DatasetError> {
        Ok(self.item(index))
    }

    fn len(&self) -> usize {
        self.config.len
    }
}

/// A colour with every channel in `[0, 1]`.
type Rgb = [f64; 3];

fn luminance(c: &Rgb) -> f64 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

fn random_colour(rng: &mut SplitMix64) -> Rgb {
    [rng.unit(), rng.unit(), rng.unit()]
}

/// A point inside a shape's outline, in pixel coordinates (pixel centres at `i + 0.5`).
type Inside = Box<dyn Fn(f64, f64) -> bool>;

/// `(x, y)` rotated by `-angle` about `(cx, cy)`: the coordinates in the shape's own frame.
fn local(x: f64, y: f64, cx: f64, cy: f64, angle: f64) -> (f64, f64) {
    let (s, c) = angle.sin_cos();
    let (dx, dy) = (x - cx, y - cy);
    (c * dx + s * dy, -s * dx + c * dy)
}

/// Up to `n` non-overlapping disc centres of radius `r` inside a `size`² image.
fn disc_centres(n: usize, r: f64, size: f64, rng: &mut SplitMix64) -> Vec<(f64, f64)> {
    let margin = r + 1.0;
    let min_gap = 2.0 * r + (0.08 * size).max(2.0);
    for _attempt in 0..200 {
        let mut centres: Vec<(f64, f64)> = Vec::with_capacity(n);
        for _ in 0..n {
            let mut placed = false;
            for _try in 0..50 {
                let c = (
                    rng.uniform(margin, size - margin),
                    rng.uniform(margin, size - margin),
                );
                if centres
                    .iter()
                    .all(|p| ((p.0 - c.0).powi(2) + (p.1 - c.1).powi(2)).sqrt() >= min_gap)
                {
                    centres.push(c);
                    placed = true;
                    break;
                }
            }
            if !placed {
                break;
            }
        }
        if centres.len() == n {
            return centres;
        }
    }
    // The radii are small enough that this is not reached for sizes >= 16; keep a valid
    // (if overlapping) answer rather than panic.
    (0..n)
        .map(|i| {
            let t = (i as f64 + 0.5) / n as f64;
            (size * t, size * (1.0 - t))
        })
        .collect()
}

/// The outline of class `label` at a random place, size and rotation.
fn outline(label: usize, size: f64, rng: &mut SplitMix64) -> Inside {
    let angle = rng.uniform(0.0, std::f64::consts::TAU);
    match label {
        // disc
        0 => {
            let r = rng.uniform(0.2, 0.36) * size;
            let (cx, cy) = (rng.uniform(r, size - r), rng.uniform(r, size - r));
            Box::new(move |x, y| (x - cx).powi(2) + (y - cy).powi(2) <= r * r)
        }
        // ring
        1 => {
            let r = rng.uniform(0.2, 0.38) * size;
            let inner = r * rng.uniform(0.45, 0.7);
            let (cx, cy) = (rng.uniform(r, size - r), rng.uniform(r, size - r));
            Box::new(move |x, y| {
                let d2 = (x - cx).powi(2) + (y - cy).powi(2);
                d2 <= r * r && d2 >= inner * inner
            })
        }
        // square, close to axis-aligned (tilted by at most 20°: at a few pixels a square
        // turned by 45° is hard to tell from a disc)
        2 => {
            let h = rng.uniform(0.17, 0.3) * size;
            let angle = rng.uniform(-0.35, 0.35);
            let reach = h * std::f64::consts::SQRT_2;
            let (cx, cy) = (
                rng.uniform(reach, size - reach),
                rng.uniform(reach, size - reach),
            );
            Box::new(move |x, y| {
                let (u, v) = local(x, y, cx, cy, angle);
                u.abs() <= h && v.abs() <= h
            })
        }
        // triangle (equilateral, circumradius r)
        3 => {
            let r = rng.uniform(0.25, 0.42) * size;
            let (cx, cy) = (rng.uniform(r, size - r), rng.uniform(r, size - r));
            Box::new(move |x, y| {
                let (u, v) = local(x, y, cx, cy, angle);
                // Three half-planes at distance r/2 from the centre, normals 120° apart.
                (0..3).all(|k| {
                    let a = std::f64::consts::FRAC_PI_2 + k as f64 * std::f64::consts::TAU / 3.0;
                    u * a.cos() + v * a.sin() <= r / 2.0
                })
            })
        }
        // cross (a plus sign)
        4 => {
            let a = rng.uniform(0.24, 0.4) * size;
            let w = a * rng.uniform(0.22, 0.34);
            let (cx, cy) = (rng.uniform(a, size - a), rng.uniform(a, size - a));
            Box::new(move |x, y| {
                let (u, v) = local(x, y, cx, cy, angle);
                (u.abs() <= a && v.abs() <= w) || (u.abs() <= w && v.abs() <= a)
            })
        }
        // two or three small discs
        5 | 6 => {
            let n = label - 3;
            let r = rng.uniform(0.07, 0.11) * size;
            let centres = disc_centres(n, r, size, rng);
            Box::new(move |x, y| {
                centres
                    .iter()
                    .any(|&(cx, cy)| (x - cx).powi(2) + (y - cy).powi(2) <= r * r)
            })
        }
        // stripes across the whole image
        _ => {
            let period = size / rng.uniform(3.0, 5.5);
            let phase = rng.unit();
            let duty = rng.uniform(0.35, 0.6);
            Box::new(move |x, y| {
                let (u, _) = local(x, y, 0.0, 0.0, angle);
                (u / period + phase).rem_euclid(1.0) < duty
            })
        }
    }
}

/// Draws one image of class `label`: `[size, size, 3]`, values in `[0, 1]`.
fn draw(label: usize, size: usize, max_noise: f64, rng: &mut SplitMix64) -> Vec<f32> {
    let background = random_colour(rng);
    let mut foreground = random_colour(rng);
    for _ in 0..100 {
        if (luminance(&foreground) - luminance(&background)).abs() >= 0.25 {
            break;
        }
        foreground = random_colour(rng);
    }
    // A gentle linear shading of the background, so that flat colour is not a shortcut.
    let shade_angle = rng.uniform(0.0, std::f64::consts::TAU);
    let shade = rng.uniform(0.0, 0.15);
    let (shade_x, shade_y) = (shade_angle.cos() * shade, shade_angle.sin() * shade);
    let noise = rng.uniform(0.0, max_noise);
    let inside = outline(label, size as f64, rng);

    // Coverage by 4 sub-pixel samples: smooth edges, as a camera would see them.
    const SUB: [(f64, f64); 4] = [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)];
    let s = size as f64;
    let mut out = Vec::with_capacity(size * size * 3);
    for y in 0..size {
        for x in 0..size {
            let cover = SUB
                .iter()
                .filter(|(dx, dy)| inside(x as f64 + dx, y as f64 + dy))
                .count() as f64
                / SUB.len() as f64;
            let g = (x as f64 / s - 0.5) * shade_x + (y as f64 / s - 0.5) * shade_y;
            for c in 0..3 {
                let v = (background[c] + g) * (1.0 - cover)
                    + foreground[c] * cover
                    + noise * rng.normal();
                out.push(v.clamp(0.0, 1.0) as f32);
            }
        }
    }
    out
}
