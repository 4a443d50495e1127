//! Image preprocessing: the evaluation transform of timm and the reference (bicubic resize of
//! the shorter side to `S·256/224`, centre crop `S`, ImageNet mean/std), the standard training
//! augmentation (random resized crop, horizontal flip), and a bicubic resize that reproduces
//! Pillow's `Image.resize(…, BICUBIC)` bit for bit.
//!
//! The reference evaluates with torchvision on Pillow images:
//! `Resize(int(256/224·S), BICUBIC) → CenterCrop(S) → ToTensor → Normalize(mean, std)`.
//! [`EvalTransform`] performs the same integer arithmetic for the resized size and the crop
//! offset, Pillow's fixed-point two-pass convolution for the resize, and the same `f32`
//! arithmetic for the normalisation, so the same decoded pixels give the same tensor.

use image::RgbImage;

use super::normalize::{IMAGENET_MEAN, IMAGENET_STD};
use super::rng::SplitMix64;

/// An 8-bit RGB image → normalised `[3, H, W]`, exactly as torchvision's
/// `ToTensor()` (`v / 255` in `f32`) then `Normalize(IMAGENET_MEAN, IMAGENET_STD)` compute it.
pub fn normalize_rgb8(img: &RgbImage) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let plane = h * w;
    let mut out = vec![0.0f32; 3 * plane];
    for (p, px) in img.pixels().enumerate() {
        for c in 0..3 {
            let v = px.0[c] as f32 / 255.0f32;
            out[c * plane + p] = (v - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Pillow's bicubic resize (libImaging/Resample.c), 8 bits per channel.
// ---------------------------------------------------------------------------------------------

/// Fixed-point precision of Pillow's 8-bit resampling: `32 − 8 − 2` fraction bits.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's bicubic kernel, `a = −0.5` (Keys' cubic convolution), support 2.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// The taps of one axis: for every output index, the first input index, the tap count and the
/// fixed-point weights (Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`).
struct Taps {
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
    ksize: usize,
}

fn taps(in_size: usize, out_size: usize) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    // Downscaling widens the kernel: the filter doubles as the anti-aliasing low-pass.
    let support = 2.0 * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0.0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's `(int)` truncates toward zero; negative starts are clamped to 0 anyway.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(n) {
            let w = bicubic((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        for (x, kx) in k.iter().enumerate().take(n) {
            let w = if ww != 0.0 { kx / ww } else { *kx };
            let fixed = w * (1u32 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] = if w < 0.0 {
                (-0.5 + fixed) as i32
            } else {
                (0.5 + fixed) as i32
            };
        }
        bounds.push((xmin, n));
    }
    Taps {
        bounds,
        weights,
        ksize,
    }
}

/// Pillow's `clip8`: a fixed-point sum back to a byte.
fn clip8(v: i64) -> u8 {
    if v >= (1i64 << PRECISION_BITS) << 8 {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Resizes an 8-bit RGB image to `width × height` with Pillow's bicubic filter, bit-exactly as
/// `PIL.Image.resize((width, height), Image.BICUBIC)`: antialiased when shrinking, a horizontal
/// pass then a vertical pass, each rounded to 8 bits.
///
/// # Panics
/// If the input or the output is empty.
pub fn resize_bicubic_pil(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    assert!(
        img.width() > 0 && img.height() > 0 && width > 0 && height > 0,
        "resize of or to an empty image"
    );
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    let mut src: Vec<u8> = img.as_raw().clone();
    let mut cur_w = in_w;
    if out_w != in_w {
        let t = taps(in_w, out_w);
        let mut dst = vec![0u8; out_w * in_h * 3];
        for y in 0..in_h {
            let row = &src[y * in_w * 3..(y + 1) * in_w * 3];
            for (xx, &(xmin, n)) in t.bounds.iter().enumerate() {
                let k = &t.weights[xx * t.ksize..xx * t.ksize + n];
                for c in 0..3 {
                    let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                    for (x, &kx) in k.iter().enumerate() {
                        ss += row[(xmin + x) * 3 + c] as i64 * kx as i64;
                    }
                    dst[(y * out_w + xx) * 3 + c] = clip8(ss);
                }
            }
        }
        src = dst;
        cur_w = out_w;
    }
    if out_h != in_h {
        let t = taps(in_h, out_h);
        let mut dst = vec![0u8; cur_w * out_h * 3];
        for (yy, &(ymin, n)) in t.bounds.iter().enumerate() {
            let k = &t.weights[yy * t.ksize..yy * t.ksize + n];
            for x in 0..cur_w {
                for c in 0..3 {
                    let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                    for (y, &ky) in k.iter().enumerate() {
                        ss += src[((ymin + y) * cur_w + x) * 3 + c] as i64 * ky as i64;
                    }
                    dst[(yy * cur_w + x) * 3 + c] = clip8(ss);
                }
            }
        }
        src = dst;
    }
    RgbImage::from_raw(width, height, src).expect("buffer has width * height * 3 bytes")
}

/// torchvision's `Resize(size)` output size for an integer `size`: the shorter side becomes
/// `size`, the longer one `int(size · long / short)`. Returns `(width, height)`.
pub fn short_side_size(width: u32, height: u32, size: u32) -> (u32, u32) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    // Python's `int(a * b / c)`: the product is exact, the division correctly rounded, then
    // truncated.
    let new_long = ((size as u64 * long as u64) as f64 / short as f64) as u32;
    if width <= height {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

/// torchvision's `CenterCrop` offset: `int(round((in − out) / 2))` with Python's
/// round-half-to-even.
fn centre_offset(size: u32, crop: u32) -> u32 {
    let d = size.saturating_sub(crop);
    let half = d / 2;
    if d.is_multiple_of(2) {
        half
    } else if half.is_multiple_of(2) {
        // x.5 with an even integer part rounds down
        half
    } else {
        half + 1
    }
}

/// The evaluation transform of the reference and timm: bicubic resize of the shorter side to
/// [`resize`](Self::resize) (`int(256/224 · S)` by default), centre crop `S × S`, ImageNet
/// normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalTransform {
    /// The crop side `S` (the network's input).
    pub size: u32,
    /// The shorter side after resizing.
    pub resize: u32,
}

impl EvalTransform {
    /// The reference's transform for input side `size`: resize to `int(256/224 · size)`.
    /// A `size` of 0 is taken as 1 (there is no empty crop).
    pub fn new(size: u32) -> Self {
        let size = size.max(1);
        Self {
            size,
            resize: ((256.0f64 / 224.0) * size as f64) as u32,
        }
    }

    /// timm's form with an explicit crop fraction: resize to `floor(size / crop_pct)`;
    /// `crop_pct = 1` resizes straight to `size` (no border is cut).
    pub fn with_crop_pct(size: u32, crop_pct: f64) -> Self {
        let size = size.max(1);
        let crop_pct = if crop_pct > 0.0 && crop_pct <= 1.0 {
            crop_pct
        } else {
            0.875
        };
        Self {
            size,
            resize: (size as f64 / crop_pct).floor() as u32,
        }
    }

    /// Resizes and crops: the 8-bit `S × S` image the network will see.
    pub fn crop(&self, img: &RgbImage) -> RgbImage {
        let (w, h) = short_side_size(img.width(), img.height(), self.resize);
        let resized = if (w, h) == (img.width(), img.height()) {
            img.clone()
        } else {
            resize_bicubic_pil(img, w, h)
        };
        let (x, y) = (
            centre_offset(resized.width(), self.size),
            centre_offset(resized.height(), self.size),
        );
        let (cw, ch) = (
            self.size.min(resized.width()),
            self.size.min(resized.height()),
        );
        let cropped = image::imageops::crop_imm(&resized, x, y, cw, ch).to_image();
        if (cw, ch) == (self.size, self.size) {
            cropped
        } else {
            // Only for a `resize` smaller than `size`, which the constructors never make.
            resize_bicubic_pil(&cropped, self.size, self.size)
        }
    }

    /// Resizes, crops and normalises: `[3, S, S]` values.
    pub fn apply(&self, img: &RgbImage) -> Vec<f32> {
        normalize_rgb8(&self.crop(img))
    }
}

/// The standard training augmentation: a random crop of random area (a fraction `scale` of the
/// image) and aspect ratio (`ratio`, log-uniform), resized bicubically to `size × size`, then a
/// horizontal flip with probability `flip` — torchvision's `RandomResizedCrop` sampling rule
/// (10 tries, then a centre crop), as timm's training transform uses it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainTransform {
    /// Output side.
    pub size: u32,
    /// Range of the crop's area as a fraction of the image's (default `0.08..1`).
    pub scale: (f64, f64),
    /// Range of the crop's aspect ratio `w / h` (default `3/4..4/3`).
    pub ratio: (f64, f64),
    /// Probability of a horizontal flip (default 0.5).
    pub flip: f64,
}

impl TrainTransform {
    /// The default augmentation for output side `size` (0 is taken as 1).
    pub fn new(size: u32) -> Self {
        Self {
            size: size.max(1),
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            flip: 0.5,
        }
    }

    /// Sets the area range.
    pub fn with_scale(mut self, lo: f64, hi: f64) -> Self {
        self.scale = (lo, hi);
        self
    }

    /// The crop box `(left, top, width, height)` for a `width × height` image.
    pub fn crop_box(&self, width: u32, height: u32, rng: &mut SplitMix64) -> (u32, u32, u32, u32) {
        let (w0, h0) = (width as f64, height as f64);
        let area = w0 * h0;
        let (lr0, lr1) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target = rng.uniform(self.scale.0, self.scale.1) * area;
            let aspect = rng.uniform(lr0, lr1).exp();
            let w = (target * aspect).sqrt().round();
            let h = (target / aspect).sqrt().round();
            if w >= 1.0 && h >= 1.0 && w <= w0 && h <= h0 {
                let (w, h) = (w as u32, h as u32);
                let top = rng.below((height - h + 1) as usize) as u32;
                let left = rng.below((width - w + 1) as usize) as u32;
                return (left, top, w, h);
            }
        }
        let in_ratio = w0 / h0;
        let (w, h) = if in_ratio < self.ratio.0 {
            (width, ((w0 / self.ratio.0).round() as u32).clamp(1, height))
        } else if in_ratio > self.ratio.1 {
            (((h0 * self.ratio.1).round() as u32).clamp(1, width), height)
        } else {
            (width, height)
        };
        ((width - w) / 2, (height - h) / 2, w, h)
    }

    /// Crops, resizes and maybe flips: the 8-bit `size × size` image.
    pub fn crop(&self, img: &RgbImage, rng: &mut SplitMix64) -> RgbImage {
        let (x, y, w, h) = self.crop_box(img.width(), img.height(), rng);
        let region = image::imageops::crop_imm(img, x, y, w, h).to_image();
        let out = resize_bicubic_pil(&region, self.size, self.size);
        if rng.chance(self.flip) {
            image::imageops::flip_horizontal(&out)
        } else {
            out
        }
    }

    /// Crops, resizes, maybe flips and normalises: `[3, S, S]` values.
    pub fn apply(&self, img: &RgbImage, rng: &mut SplitMix64) -> Vec<f32> {
        normalize_rgb8(&self.crop(img, rng))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centre_offset_rounds_half_to_even() {
        // Python: int(round(1/2)) = 0, int(round(3/2)) = 2, int(round(5/2)) = 2
        assert_eq!(centre_offset(5, 4), 0);
        assert_eq!(centre_offset(7, 4), 2);
        assert_eq!(centre_offset(9, 4), 2);
        assert_eq!(centre_offset(8, 4), 2);
        assert_eq!(centre_offset(4, 4), 0);
    }

    #[test]
    fn short_side_matches_torchvision() {
        assert_eq!(short_side_size(500, 375, 256), (341, 256));
        assert_eq!(short_side_size(375, 500, 256), (256, 341));
        assert_eq!(short_side_size(300, 300, 256), (256, 256));
    }

    #[test]
    fn eval_resize_is_the_reference_formula() {
        assert_eq!(EvalTransform::new(224).resize, 256);
        assert_eq!(EvalTransform::new(384).resize, 438);
        assert_eq!(EvalTransform::with_crop_pct(64, 1.0).resize, 64);
    }

    #[test]
    fn identity_resize_keeps_pixels() {
        let img = RgbImage::from_fn(7, 5, |x, y| image::Rgb([x as u8 * 30, y as u8 * 40, 9]));
        assert_eq!(resize_bicubic_pil(&img, 7, 5), img);
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = RgbImage::from_pixel(13, 9, image::Rgb([200, 17, 90]));
        for (w, h) in [(5, 4), (26, 18), (13, 3)] {
            let out = resize_bicubic_pil(&img, w, h);
            assert!(out.pixels().all(|p| p.0 == [200, 17, 90]), "{w}x{h}");
        }
    }
}
