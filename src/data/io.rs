//! Reading images from files and writing pictures (heat maps) to PNG files.

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::error::{Error, Result};

/// File extensions (lower case) of the image formats this crate decodes: PNG and JPEG.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// True if `path` has one of [`IMAGE_EXTENSIONS`] (any case).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn read_error(path: &Path, reason: impl ToString) -> Error {
    Error::ImageRead {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Decodes a PNG or JPEG file (the format is found from the content, not the name) to 8-bit
/// RGB, as Pillow's `Image.open(path).convert("RGB")` does: grey levels are replicated, an
/// alpha channel is dropped, 16-bit samples are reduced to 8 bits.
///
/// # Errors
/// [`Error::ImageRead`] naming the file when it cannot be opened or decoded.
pub fn load_rgb(path: impl AsRef<Path>) -> Result<RgbImage> {
    let path = path.as_ref();
    let reader = open_image(path)?;
    if reader.format() == Some(image::ImageFormat::Jpeg) {
        check_jpeg_end(path)?;
    }
    let img = reader.decode().map_err(|e| read_error(path, e))?;
    if img.width() == 0 || img.height() == 0 {
        return Err(read_error(path, "the image is empty (0 pixels)"));
    }
    Ok(img.to_rgb8())
}

/// How far from a JPEG file's end its end-of-image marker may be (some writers append padding
/// or metadata after it).
const JPEG_TAIL: u64 = 4096;

/// Refuses a JPEG file without an end-of-image marker (`FF D9`) in its last [`JPEG_TAIL`]
/// bytes: a file cut short, which the decoder would otherwise complete with grey. (`FF D9`
/// cannot occur inside the entropy-coded data, where every `FF` is followed by `00`.)
fn check_jpeg_end(path: &Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).map_err(|e| read_error(path, e))?;
    let len = file.metadata().map_err(|e| read_error(path, e))?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(JPEG_TAIL)))
        .map_err(|e| read_error(path, e))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)
        .map_err(|e| read_error(path, e))?;
    if tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
        Ok(())
    } else {
        Err(read_error(
            path,
            "the JPEG data is cut short (no end-of-image marker)",
        ))
    }
}

/// Opens an image file and recognises its format from the content, not the extension.
fn open_image(path: &Path) -> Result<image::ImageReader<std::io::BufReader<std::fs::File>>> {
    // Opening a FIFO would block until a writer comes: refused by type.
    if let Some(reason) = crate::special_file::not_a_regular_file(path) {
        return Err(read_error(path, reason));
    }
    let reader = image::ImageReader::open(path)
        .map_err(|e| read_error(path, e))?
        .with_guessed_format()
        .map_err(|e| read_error(path, e))?;
    if reader.format().is_none() {
        return Err(read_error(
            path,
            "not a PNG or JPEG image (unrecognised content)",
        ));
    }
    Ok(reader)
}

/// Reads only the header of a PNG or JPEG file: its `(width, height)`. Cheap; used to check a
/// whole image folder before training starts.
///
/// # Errors
/// [`Error::ImageRead`] when the file cannot be opened or its header is not a PNG or JPEG one.
pub fn image_dimensions(path: impl AsRef<Path>) -> Result<(u32, u32)> {
    let path = path.as_ref();
    let reader = open_image(path)?;
    let (w, h) = reader.into_dimensions().map_err(|e| read_error(path, e))?;
    if w == 0 || h == 0 {
        return Err(read_error(path, "the image is empty (0 pixels)"));
    }
    Ok((w, h))
}

/// Writes an image as PNG, creating the parent folder if needed.
///
/// # Errors
/// [`Error::ImageWrite`] naming the file.
pub fn save_png(img: &RgbImage, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let fail = |reason: String| Error::ImageWrite {
        path: path.to_path_buf(),
        reason,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    }
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| fail(e.to_string()))
}

/// Control points of the colour map used for heat maps (black → purple → red → orange →
/// pale yellow, like matplotlib's "inferno"), at equal spacing.
const HEAT_COLOURS: [[f32; 3]; 6] = [
    [0.0, 0.0, 0.02],
    [0.26, 0.04, 0.41],
    [0.58, 0.15, 0.40],
    [0.87, 0.32, 0.23],
    [0.98, 0.62, 0.04],
    [0.99, 0.99, 0.75],
];

/// The heat colour of `t ∈ [0, 1]` (clamped).
pub fn heat_colour(t: f32) -> Rgb<u8> {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (HEAT_COLOURS.len() - 1) as f32;
    let i = (x.floor() as usize).min(HEAT_COLOURS.len() - 2);
    let f = x - i as f32;
    let (a, b) = (HEAT_COLOURS[i], HEAT_COLOURS[i + 1]);
    let c = |k: usize| ((a[k] + (b[k] - a[k]) * f) * 255.0).round() as u8;
    Rgb([c(0), c(1), c(2)])
}

/// A `height × width` heat map of row-major `values`: scaled so that `lo` is black and `hi`
/// the brightest colour, then enlarged `scale` times (nearest neighbour, crisp pixels).
///
/// # Panics
/// If `values` holds fewer than `height · width` numbers or `scale` is 0.
pub fn heat_map(
    values: &[f32],
    height: usize,
    width: usize,
    lo: f32,
    hi: f32,
    scale: u32,
) -> RgbImage {
    assert!(values.len() >= height * width, "heat_map: too few values");
    assert!(scale > 0, "heat_map: scale 0");
    let span = if hi > lo { hi - lo } else { 1.0 };
    RgbImage::from_fn(width as u32 * scale, height as u32 * scale, |x, y| {
        let (i, j) = ((y / scale) as usize, (x / scale) as usize);
        heat_colour((values[i * width + j] - lo) / span)
    })
}

/// Places images side by side (top-aligned) with `gap` pixels of `background` between them.
pub fn hstack(images: &[RgbImage], gap: u32, background: Rgb<u8>) -> RgbImage {
    let width =
        images.iter().map(|i| i.width()).sum::<u32>() + gap * images.len().saturating_sub(1) as u32;
    let height = images.iter().map(|i| i.height()).max().unwrap_or(0);
    let mut out = RgbImage::from_pixel(width.max(1), height.max(1), background);
    let mut x0 = 0;
    for img in images {
        image::imageops::replace(&mut out, img, x0 as i64, 0);
        x0 += img.width() + gap;
    }
    out
}

/// Places images one above the other (left-aligned) with `gap` pixels between them.
pub fn vstack(images: &[RgbImage], gap: u32, background: Rgb<u8>) -> RgbImage {
    let height = images.iter().map(|i| i.height()).sum::<u32>()
        + gap * images.len().saturating_sub(1) as u32;
    let width = images.iter().map(|i| i.width()).max().unwrap_or(0);
    let mut out = RgbImage::from_pixel(width.max(1), height.max(1), background);
    let mut y0 = 0;
    for img in images {
        image::imageops::replace(&mut out, img, 0, y0 as i64);
        y0 += img.height() + gap;
    }
    out
}
