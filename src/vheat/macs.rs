//! Multiply-accumulate counts of a configuration at an input size, by operator, in the
//! convention of fvcore (the counter the reference's published figures come from).
//!
//! fvcore counts one fused multiply-add as 1 and groups operators as follows; the count here
//! follows the same grouping so that it can be compared with the reference line by line:
//!
//! | group | what | count |
//! |---|---|---|
//! | `conv` | stem and downsampling convolutions, depthwise 3×3, the 1×1-conv MLP, and the DCT/IDCT (the reference runs them as `conv1d`) | output elements × input channels per group × kernel area; a DCT along an axis of length n costs n MACs per output element |
//! | `linear` | the HCO's `linear` (C → 2C) and `out_linear` (C → C), `to_k` on the FVE (ordinary form only), the classifier | tokens × in × out |
//! | `layer_norm` | every LayerNorm with affine parameters | 5 × elements |
//! | `einsum` | the decay multiply `x̂ · decay` | ⌊elements / 2⌋ (fvcore halves numpy's einsum FLOP count) |
//! | `adaptive_avg_pool2d` | the head's pooling | input elements |
//!
//! Element-wise work fvcore does not count (activations, residual adds, layer scale, the decay
//! `exp` of the ordinary form, the FVE resize) is not counted here either.
//!
//! One difference from fvcore's printed totals: fvcore reads the einsum count from numpy's
//! `einsum_path` report, which rounds to four significant digits (715,010 instead of 715,008 for
//! vHeat-T at 224²); this module gives the exact value. The einsum is under 0.02 % of any total.

use serde::{Deserialize, Serialize};

use super::config::VHeatConfig;
use super::stem::{halve, Stem};
use crate::error::{Error, Result};

/// Which form of the model is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Form {
    /// The ordinary (trainable) form: every block predicts its conductivity `k` from the FVE
    /// with `to_k` at every call (the reference's training mode).
    Ordinary,
    /// The inference form: the decay is precomputed, so `to_k` does not run
    /// ([`VHeat::to_inference`](super::VHeat::to_inference), the reference's `infer_init`).
    Inference,
}

/// Multiply-accumulates of one image, split by operator group as fvcore reports them (see the
/// [module docs](self) for what each group holds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MacCount {
    /// Convolutions, including the 1×1-conv MLP and the DCT/IDCT matrix products.
    pub conv: u64,
    /// Fully connected layers: the HCO projections, `to_k` (ordinary form), the classifier.
    pub linear: u64,
    /// LayerNorms, 5 per element.
    pub layer_norm: u64,
    /// The frequency-domain decay multiply, half an operation per element.
    pub einsum: u64,
    /// The head's global average pool, one per input element.
    pub adaptive_avg_pool2d: u64,
}

impl MacCount {
    /// The sum of all groups.
    pub fn total(&self) -> u64 {
        self.conv + self.linear + self.layer_norm + self.einsum + self.adaptive_avg_pool2d
    }

    /// Floating-point operations of `batch` images, counting a multiply-accumulate as two:
    /// what "GFLOP/s" figures divide by the time.
    pub fn flops(&self, batch: usize) -> f64 {
        2.0 * self.total() as f64 * batch as f64
    }
}

/// Accumulates counts in `u128` so an absurd size reports an error instead of wrapping.
#[derive(Default)]
struct Tally {
    conv: u128,
    linear: u128,
    layer_norm: u128,
    einsum: u128,
    pool: u128,
}

impl Tally {
    fn conv(&mut self, out_elems: u128, in_per_group: u128, kernel: u128) {
        self.conv += out_elems * in_per_group * kernel;
    }
    fn linear(&mut self, tokens: u128, d_in: u128, d_out: u128) {
        self.linear += tokens * d_in * d_out;
    }
    fn layer_norm(&mut self, elems: u128) {
        self.layer_norm += 5 * elems;
    }
}

impl VHeatConfig {
    /// Multiply-accumulates of one `height × width` image through this model in `form`, split
    /// by operator group (fvcore's convention, as in the reference's published GFLOPs).
    ///
    /// vHeat-T at 224² counts 4.94 G in the ordinary form and 4.59 G in the inference form.
    ///
    /// ```
    /// use vheat::{Form, VHeatConfig};
    /// let macs = VHeatConfig::tiny().macs(224, 224, Form::Inference)?;
    /// assert_eq!(macs.total() / 10_000_000, 458); // 4.58–4.59 G
    /// # Ok::<(), vheat::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the configuration is invalid, [`Error::InputTooSmall`] if a
    /// side is below the total stride, [`Error::InvalidInput`] if a count overflows `u64`.
    pub fn macs(&self, height: usize, width: usize, form: Form) -> Result<MacCount> {
        self.validate()?;
        let stride = self.total_stride();
        if height < stride || width < stride {
            return Err(Error::InputTooSmall {
                height,
                width,
                stride,
            });
        }
        let n = |v: usize| v as u128;
        let mut t = Tally::default();

        // Stem: conv in→dim/2 at H/2, LayerNorm, GELU, conv dim/2→dim at H/4, LayerNorm.
        let d0 = self.dims[0];
        let (h1, w1) = (halve(height), halve(width));
        let pix1 = n(h1) * n(w1);
        t.conv(pix1 * n(d0 / 2), n(self.in_chans), 9);
        t.layer_norm(pix1 * n(d0 / 2));
        let [mut h, mut w] = Stem::output_size(height, width);
        t.conv(n(h) * n(w) * n(d0), n(d0 / 2), 9);
        t.layer_norm(n(h) * n(w) * n(d0));

        let stages = self.depths.len();
        for (i, (&depth, &c)) in self.depths.iter().zip(&self.dims).enumerate() {
            let pix = n(h) * n(w);
            let elems = pix * n(c);
            let hidden = (c as f64 * self.mlp_ratio) as usize;
            let has_mlp = self.mlp_ratio > 0.0 && hidden > 0;
            for _ in 0..depth {
                // Pre- or post-norm: the same two norms (the second only with an MLP).
                t.layer_norm(elems);
                // HCO: depthwise 3×3, linear C→2C, DCT+IDCT along H and W, decay, out norm,
                // out_linear C→C; to_k C→C on the H·W FVE in the ordinary form.
                t.conv(elems, 1, 9);
                t.linear(pix, n(c), 2 * n(c));
                t.conv(elems, 2 * (n(h) + n(w)), 1);
                t.einsum += elems / 2;
                t.layer_norm(elems);
                t.linear(pix, n(c), n(c));
                if form == Form::Ordinary {
                    t.linear(pix, n(c), n(c));
                }
                if has_mlp {
                    t.layer_norm(elems);
                    t.conv(pix * n(hidden), n(c), 1);
                    t.conv(elems, n(hidden), 1);
                }
            }
            if i + 1 < stages {
                // Downsample: conv3×3 s2 C→C', LayerNorm.
                (h, w) = (halve(h), halve(w));
                let out = n(h) * n(w) * n(self.dims[i + 1]);
                t.conv(out, n(c), 9);
                t.layer_norm(out);
            }
        }
        // Head: LayerNorm, global average pool, Linear (absent with 0 classes).
        let last = n(h) * n(w) * n(*self.dims.last().unwrap_or(&0));
        t.layer_norm(last);
        t.pool += last;
        if self.num_classes > 0 {
            t.linear(1, n(*self.dims.last().unwrap_or(&0)), n(self.num_classes));
        }

        let fit = |v: u128, what: &str| {
            u64::try_from(v).map_err(|_| Error::InvalidInput {
                what: format!("multiply-accumulate count ({what})"),
                expected: "a count that fits in 64 bits".into(),
                found: format!("{v} at {height}×{width}"),
            })
        };
        let count = MacCount {
            conv: fit(t.conv, "conv")?,
            linear: fit(t.linear, "linear")?,
            layer_norm: fit(t.layer_norm, "layer_norm")?,
            einsum: fit(t.einsum, "einsum")?,
            adaptive_avg_pool2d: fit(t.pool, "adaptive_avg_pool2d")?,
        };
        fit(
            u128::from(count.conv)
                + u128::from(count.linear)
                + u128::from(count.layer_norm)
                + u128::from(count.einsum)
                + u128::from(count.adaptive_avg_pool2d),
            "total",
        )?;
        Ok(count)
    }
}
