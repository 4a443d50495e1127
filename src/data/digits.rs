//! Real handwritten digits: scikit-learn's bundled 8×8 digits (a copy of the UCI *Optical
//! Recognition of Handwritten Digits* test set, CC BY 4.0) read from the compact file
//! `tests/fixtures/digits/digits.u8`, as a dataset or written out as an image folder.
//!
//! The file is 1,797 records of 65 bytes: 64 grey levels (0–16, row-major), then the label.
//! [`Digits::write_folder`] scales the grey levels to 0–255, upsamples each image with the
//! Pillow-exact bicubic resize and writes `DIR/train/<digit>/NNNN.png` and
//! `DIR/val/<digit>/NNNN.png` (every fifth image of each class goes to `val`), the layout
//! [`super::ImageFolder::open_split`] reads, so the crate and a PyTorch script train on the very
//! same files.

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};

use super::io::save_png;
use super::transform::resize_bicubic_pil;
use crate::error::{Error, Result};

/// Bytes per record: 64 pixels and the label.
const RECORD: usize = 65;

/// One in this many images of each class is a validation image in [`Digits::write_folder`].
pub const DIGITS_VAL_EVERY: usize = 5;

/// The 8×8 digits, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Digits {
    /// Grey levels 0–16, 64 per image, row-major.
    pub pixels: Vec<[u8; 64]>,
    /// The digit shown, 0–9.
    pub labels: Vec<u8>,
}

impl Digits {
    /// Reads the `digits.u8` file.
    ///
    /// # Errors
    /// [`Error::ImageRead`] naming the file if it cannot be read, its length is not a multiple of
    /// 65 bytes, a grey level exceeds 16 or a label exceeds 9.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bad = |reason: String| Error::ImageRead {
            path: path.to_path_buf(),
            reason,
        };
        if let Some(reason) = crate::special_file::not_a_regular_file(path) {
            return Err(bad(reason));
        }
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        if bytes.is_empty() || bytes.len() % RECORD != 0 {
            return Err(bad(format!(
                "{} bytes is not a whole number of {RECORD}-byte digit records",
                bytes.len()
            )));
        }
        let mut pixels = Vec::with_capacity(bytes.len() / RECORD);
        let mut labels = Vec::with_capacity(bytes.len() / RECORD);
        for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
            let mut px = [0u8; 64];
            px.copy_from_slice(&rec[..64]);
            if let Some(v) = px.iter().find(|&&v| v > 16) {
                return Err(bad(format!("record {i} has grey level {v} (at most 16)")));
            }
            if rec[64] > 9 {
                return Err(bad(format!("record {i} has label {} (0-9)", rec[64])));
            }
            pixels.push(px);
            labels.push(rec[64]);
        }
        Ok(Self { pixels, labels })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there is no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Image `index` as an 8-bit RGB picture of side `size` (grey levels × 255/16, rounded,
    /// then Pillow's bicubic resize from 8×8; `size` 8 keeps the original pixels).
    ///
    /// # Panics
    /// If `index` is out of range.
    pub fn image(&self, index: usize, size: u32) -> RgbImage {
        let px = &self.pixels[index];
        let small = RgbImage::from_fn(8, 8, |x, y| {
            let v = (f64::from(px[(y * 8 + x) as usize]) * 255.0 / 16.0).round() as u8;
            Rgb([v, v, v])
        });
        resize_bicubic_pil(&small, size.max(1), size.max(1))
    }

    /// Writes the images as a pre-split image folder of `size × size` PNGs under `dir`
    /// (`train/` and `val/`, one sub-folder per digit) and returns `(train, val)` counts.
    ///
    /// # Errors
    /// [`Error::ImageWrite`] naming the file that could not be written.
    pub fn write_folder(&self, dir: impl AsRef<Path>, size: u32) -> Result<(usize, usize)> {
        let dir = dir.as_ref();
        let mut seen = [0usize; 10];
        let (mut n_train, mut n_val) = (0, 0);
        for i in 0..self.len() {
            let label = self.labels[i] as usize;
            let split = if seen[label] % DIGITS_VAL_EVERY == DIGITS_VAL_EVERY - 1 {
                n_val += 1;
                "val"
            } else {
                n_train += 1;
                "train"
            };
            seen[label] += 1;
            let path: PathBuf = dir
                .join(split)
                .join(label.to_string())
                .join(format!("{i:04}.png"));
            save_png(&self.image(i, size), &path)?;
        }
        Ok((n_train, n_val))
    }
}
