//! ImageNet normalisation on plain `f32` pixels: the channel statistics torchvision and timm use,
//! and the `(v − mean) / std` step, without any image type (the dense-prediction data and the
//! synthetic shapes use them without the `image` feature).

/// ImageNet channel means (RGB), as torchvision and timm use them.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// An `[H, W, 3]` image with values in `[0, 1]` → normalised `[3, H, W]`
/// (`(v − mean) / std` per channel, ImageNet statistics).
pub fn normalize_rgb(hwc: &[f32], height: usize, width: usize) -> Vec<f32> {
    let plane = height * width;
    let mut out = vec![0.0f32; 3 * plane];
    for (p, px) in hwc.chunks_exact(3).take(plane).enumerate() {
        for c in 0..3 {
            out[c * plane + p] = (px[c] - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
    out
}
