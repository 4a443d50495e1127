//! Affine warps of 8-bit RGB images the way Pillow's `Image.transform(…, AFFINE, …)` performs
//! them (libImaging `Geometry.c`), and the `light` policy's small random warp built on them.
//!
//! Pillow maps every output pixel centre `(x + ½, y + ½)` through the inverse matrix
//! `(a, b, c, d, e, f)` to a source point, and samples there: a point outside the image keeps the
//! fill colour; inside, the filter reads a 2×2 (bilinear) or 4×4 (cubic convolution with
//! `a = −1`, Pillow's transform kernel, not the `a = −½` of its resize) neighbourhood with the
//! coordinates clamped to the border, and truncates the result to a byte.

use image::{Rgb, RgbImage};

use crate::data::rng::SplitMix64;

/// The resampling filter of a warp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resample {
    /// Pillow's `BILINEAR` transform filter.
    Bilinear,
    /// Pillow's `BICUBIC` transform filter.
    Bicubic,
}

/// Pillow's cubic convolution of four samples at fraction `d` (kernel `a = −1`).
fn cubic(v1: f64, v2: f64, v3: f64, v4: f64, d: f64) -> f64 {
    let p1 = v2;
    let p2 = -v1 + v3;
    let p3 = 2.0 * (v1 - v2) + v3 - v4;
    let p4 = -v1 + v2 - v3 + v4;
    p1 + d * (p2 + d * (p3 + d * p4))
}

/// Samples the three channels at source point `(xin, yin)`; `None` outside the image.
fn sample(img: &RgbImage, xin: f64, yin: f64, filter: Resample) -> Option<[u8; 3]> {
    let (w, h) = (img.width() as i64, img.height() as i64);
    if xin < 0.0 || xin >= w as f64 || yin < 0.0 || yin >= h as f64 {
        return None;
    }
    let (xs, ys) = (xin - 0.5, yin - 0.5);
    let (x, y) = (xs.floor() as i64, ys.floor() as i64);
    let (dx, dy) = (xs - x as f64, ys - y as f64);
    let px = |xx: i64, yy: i64, c: usize| -> f64 {
        img.get_pixel(xx.clamp(0, w - 1) as u32, yy.clamp(0, h - 1) as u32)
            .0[c] as f64
    };
    let inside = |yy: i64| yy >= 0 && yy < h;
    let mut out = [0u8; 3];
    for (c, o) in out.iter_mut().enumerate() {
        match filter {
            Resample::Bilinear => {
                let row = |yy: i64| px(x, yy, c) + (px(x + 1, yy, c) - px(x, yy, c)) * dx;
                let v1 = row(y);
                // Pillow reuses the upper row when the lower one is outside the image.
                let v2 = if inside(y + 1) { row(y + 1) } else { v1 };
                *o = (v1 + (v2 - v1) * dy) as u8;
            }
            Resample::Bicubic => {
                let (x0, y0) = (x - 1, y - 1);
                let row = |yy: i64| {
                    cubic(
                        px(x0, yy, c),
                        px(x0 + 1, yy, c),
                        px(x0 + 2, yy, c),
                        px(x0 + 3, yy, c),
                        dx,
                    )
                };
                let v1 = row(y0);
                let v2 = if inside(y0 + 1) { row(y0 + 1) } else { v1 };
                let v3 = if inside(y0 + 2) { row(y0 + 2) } else { v2 };
                let v4 = if inside(y0 + 3) { row(y0 + 3) } else { v3 };
                let v = cubic(v1, v2, v3, v4, dy);
                *o = if v <= 0.0 {
                    0
                } else if v >= 255.0 {
                    255
                } else {
                    v as u8
                };
            }
        }
    }
    Some(out)
}

/// Warps `img` (same output size) with the inverse affine matrix `m = [a, b, c, d, e, f]`:
/// output pixel `(x, y)` reads the source at `(a·x' + b·y' + c, d·x' + e·y' + f)` with
/// `x' = x + ½, y' = y + ½`, as `Image.transform(img.size, AFFINE, m, filter, fillcolor=fill)`.
pub fn warp_affine(img: &RgbImage, m: [f64; 6], filter: Resample, fill: [u8; 3]) -> RgbImage {
    RgbImage::from_fn(img.width(), img.height(), |x, y| {
        let (xo, yo) = (x as f64 + 0.5, y as f64 + 0.5);
        let xin = m[0] * xo + m[1] * yo + m[2];
        let yin = m[3] * xo + m[4] * yo + m[5];
        Rgb(sample(img, xin, yin, filter).unwrap_or(fill))
    })
}

/// Python's `round(v, 15)` closely enough for the rotation matrix entries.
fn round15(v: f64) -> f64 {
    (v * 1e15).round() / 1e15
}

/// Rotates `img` by `degrees` counter-clockwise about its centre, keeping its size, as
/// `Image.rotate(degrees, filter, fillcolor=fill)` does (multiples of 90° where Pillow
/// transposes are exact transposes).
pub fn rotate(img: &RgbImage, degrees: f64, filter: Resample, fill: [u8; 3]) -> RgbImage {
    let angle = degrees.rem_euclid(360.0);
    let square = img.width() == img.height();
    if angle == 0.0 {
        return img.clone();
    }
    if angle == 180.0 {
        return image::imageops::rotate180(img);
    }
    if angle == 90.0 && square {
        return image::imageops::rotate270(img);
    }
    if angle == 270.0 && square {
        return image::imageops::rotate90(img);
    }
    let (w, h) = (img.width() as f64, img.height() as f64);
    let (cx, cy) = (w / 2.0, h / 2.0);
    let r = -angle.to_radians();
    let (a, b, d, e) = (
        round15(r.cos()),
        round15(r.sin()),
        round15(-r.sin()),
        round15(r.cos()),
    );
    let c = a * -cx + b * -cy + cx;
    let f = d * -cx + e * -cy + cy;
    warp_affine(img, [a, b, c, d, e, f], filter, fill)
}

/// The `light` policy's warp parameters: uniform random translation, isotropic scale and
/// rotation, applied about the image centre in one inverse-affine resampling.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LightWarp {
    /// Largest shift along each axis, as a fraction of that side (default `1/16`).
    pub translate: f64,
    /// Range of the scale factor (default `0.9..1.1`).
    pub scale: (f64, f64),
    /// Largest rotation in degrees, either way (default 10).
    pub rotate: f64,
    /// Resampling filter (default bilinear).
    pub resample: Resample,
}

impl Default for LightWarp {
    fn default() -> Self {
        Self {
            translate: 1.0 / 16.0,
            scale: (0.9, 1.1),
            rotate: 10.0,
            resample: Resample::Bilinear,
        }
    }
}

impl LightWarp {
    /// One random warp of `img` (same size); uncovered pixels are black (zero fill), the
    /// natural background of digit- or sketch-like images.
    pub fn apply(&self, img: &RgbImage, rng: &mut SplitMix64) -> RgbImage {
        let (w, h) = (img.width() as f64, img.height() as f64);
        let tx = rng.uniform(-self.translate, self.translate) * w;
        let ty = rng.uniform(-self.translate, self.translate) * h;
        let s = rng.uniform(self.scale.0, self.scale.1);
        let theta = rng.uniform(-self.rotate, self.rotate).to_radians();
        // Forward: p' = c + t + s·R(θ)(p − c). Inverse: p = c + R(−θ)(p' − c − t)/s.
        let (cx, cy) = (w / 2.0, h / 2.0);
        let (cos, sin) = (theta.cos() / s, theta.sin() / s);
        let (a, b, d, e) = (cos, sin, -sin, cos);
        let (ox, oy) = (cx + tx, cy + ty);
        let c = cx - a * ox - b * oy;
        let f = cy - d * ox - e * oy;
        warp_affine(img, [a, b, c, d, e, f], self.resample, [0, 0, 0])
    }
}
