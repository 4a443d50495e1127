//! [`VHeatConfig`]: the reference constructor's arguments, and the published configurations.

use std::path::Path;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

fn default_num_classes() -> usize {
    1000
}
fn default_img_size() -> usize {
    224
}
fn default_in_chans() -> usize {
    3
}
fn default_post_norm() -> bool {
    true
}
fn default_drop_path_rate() -> f64 {
    0.1
}
fn default_mlp_ratio() -> f64 {
    4.0
}

/// The configuration of a [`VHeat`](super::VHeat) model.
///
/// Its JSON keys are the reference constructor's argument names, so a reference config can be
/// loaded as it is; keys that have a default may be absent:
///
/// ```json
/// {"depths": [2, 2, 6, 2], "dims": [96, 192, 384, 768], "num_classes": 1000,
///  "img_size": 224, "post_norm": false, "layer_scale": null, "drop_path_rate": 0.1}
/// ```
///
/// It implements Burn's [`Config`] (so `save`, and `load` through the trait, work as for any
/// Burn config); the inherent [`VHeatConfig::load`] also validates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawConfig")]
pub struct VHeatConfig {
    /// Number of heat blocks per stage.
    pub depths: Vec<usize>,
    /// Channel width of each stage (one per entry of `depths`).
    pub dims: Vec<usize>,
    /// Classifier outputs; 0 gives a headless model whose `forward` returns pooled features.
    pub num_classes: usize,
    /// Training resolution; sets the FVE sizes `⌊img_size/4/2^i⌋` (default 224).
    pub img_size: usize,
    /// Image channels (default 3).
    pub in_chans: usize,
    /// Post-norm blocks with the norm after each branch (vHeat-S/B) instead of pre-norm
    /// (vHeat-T). The reference's default is `true`.
    pub post_norm: bool,
    /// Initial layer-scale value of both branches; `None` (JSON `null`) for no layer scale.
    pub layer_scale: Option<f64>,
    /// Stochastic-depth rate of the last block; earlier blocks get a linear ramp from 0
    /// (default 0.1).
    pub drop_path_rate: f64,
    /// MLP hidden width as a multiple of the stage width (default 4.0); 0 removes the MLP.
    pub mlp_ratio: f64,
}

impl Config for VHeatConfig {}

/// `dims` as the reference accepts it: one width per stage, or the first stage's width, which
/// then doubles every stage (`dims: 96` means `[96, 192, 384, 768]` for four stages).
#[derive(Deserialize)]
#[serde(untagged)]
enum Dims {
    PerStage(Vec<usize>),
    First(usize),
}

/// What the JSON holds before `dims` is expanded.
#[derive(Deserialize)]
struct RawConfig {
    depths: Vec<usize>,
    dims: Dims,
    #[serde(default = "default_num_classes")]
    num_classes: usize,
    #[serde(default = "default_img_size")]
    img_size: usize,
    #[serde(default = "default_in_chans")]
    in_chans: usize,
    #[serde(default = "default_post_norm")]
    post_norm: bool,
    #[serde(default)]
    layer_scale: Option<f64>,
    #[serde(default = "default_drop_path_rate")]
    drop_path_rate: f64,
    #[serde(default = "default_mlp_ratio")]
    mlp_ratio: f64,
}

impl TryFrom<RawConfig> for VHeatConfig {
    type Error = String;

    fn try_from(raw: RawConfig) -> std::result::Result<Self, String> {
        let dims = match raw.dims {
            Dims::PerStage(d) => d,
            Dims::First(d) => (0..raw.depths.len())
                .map(|i| {
                    u32::try_from(i)
                        .ok()
                        .and_then(|i| d.checked_mul(1usize.checked_shl(i)?))
                        .ok_or_else(|| format!("`dims` {d} doubled {i} times overflows"))
                })
                .collect::<std::result::Result<_, _>>()?,
        };
        Ok(Self {
            depths: raw.depths,
            dims,
            num_classes: raw.num_classes,
            img_size: raw.img_size,
            in_chans: raw.in_chans,
            post_norm: raw.post_norm,
            layer_scale: raw.layer_scale,
            drop_path_rate: raw.drop_path_rate,
            mlp_ratio: raw.mlp_ratio,
        })
    }
}

impl VHeatConfig {
    /// A configuration with the given stage depths and widths and every other field at its
    /// default (1000 classes, 224², 3 channels, post-norm, no layer scale, drop path 0.1).
    pub fn new(depths: Vec<usize>, dims: Vec<usize>) -> Self {
        Self {
            depths,
            dims,
            num_classes: default_num_classes(),
            img_size: default_img_size(),
            in_chans: default_in_chans(),
            post_norm: default_post_norm(),
            layer_scale: None,
            drop_path_rate: default_drop_path_rate(),
            mlp_ratio: default_mlp_ratio(),
        }
    }

    /// vHeat-T: depths `[2, 2, 6, 2]`, widths `96·2^i`, pre-norm, no layer scale
    /// (30,853,480 parameters at 1000 classes).
    pub fn tiny() -> Self {
        Self::new(vec![2, 2, 6, 2], vec![96, 192, 384, 768])
            .with_post_norm(false)
            .with_layer_scale(None)
            .with_drop_path_rate(0.1)
    }

    /// vHeat-S: depths `[2, 2, 18, 2]`, widths `96·2^i`, post-norm, layer scale 1e-5
    /// (52,220,392 parameters).
    pub fn small() -> Self {
        Self::new(vec![2, 2, 18, 2], vec![96, 192, 384, 768])
            .with_post_norm(true)
            .with_layer_scale(Some(1e-5))
            .with_drop_path_rate(0.3)
    }

    /// vHeat-B: depths `[2, 2, 18, 2]`, widths `128·2^i`, post-norm, layer scale 1e-5
    /// (92,132,328 parameters).
    pub fn base() -> Self {
        Self::new(vec![2, 2, 18, 2], vec![128, 256, 512, 1024])
            .with_post_norm(true)
            .with_layer_scale(Some(1e-5))
            .with_drop_path_rate(0.5)
    }

    /// A published configuration by name: `tiny`/`t`, `small`/`s`, `base`/`b`
    /// (also with a `vheat_`/`vheat-` prefix).
    pub fn by_name(name: &str) -> Result<Self> {
        let n = name.to_ascii_lowercase();
        let n = n
            .strip_prefix("vheat_")
            .or_else(|| n.strip_prefix("vheat-"))
            .unwrap_or(&n);
        match n {
            "tiny" | "t" => Ok(Self::tiny()),
            "small" | "s" => Ok(Self::small()),
            "base" | "b" => Ok(Self::base()),
            _ => Err(Error::InvalidConfig(format!(
                "unknown configuration name {name:?}; known: tiny, small, base"
            ))),
        }
    }

    /// Sets `num_classes`.
    pub fn with_num_classes(mut self, v: usize) -> Self {
        self.num_classes = v;
        self
    }
    /// Sets `img_size`.
    pub fn with_img_size(mut self, v: usize) -> Self {
        self.img_size = v;
        self
    }
    /// Sets `in_chans`.
    pub fn with_in_chans(mut self, v: usize) -> Self {
        self.in_chans = v;
        self
    }
    /// Sets `post_norm`.
    pub fn with_post_norm(mut self, v: bool) -> Self {
        self.post_norm = v;
        self
    }
    /// Sets `layer_scale`.
    pub fn with_layer_scale(mut self, v: Option<f64>) -> Self {
        self.layer_scale = v;
        self
    }
    /// Sets `drop_path_rate`.
    pub fn with_drop_path_rate(mut self, v: f64) -> Self {
        self.drop_path_rate = v;
        self
    }
    /// Sets `mlp_ratio`.
    pub fn with_mlp_ratio(mut self, v: f64) -> Self {
        self.mlp_ratio = v;
        self
    }

    /// Reads a JSON configuration (reference key names; keys with defaults may be absent) and
    /// validates it.
    pub fn load<P: AsRef<Path>>(path: P) -> Result<Self> {
        let path = path.as_ref();
        // Opening a FIFO would block until a writer comes: refused by type.
        if let Some(reason) = crate::special_file::not_a_regular_file(path) {
            return Err(Error::ConfigFile {
                path: path.to_path_buf(),
                reason,
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::ConfigFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let config = Self::from_json(&text).map_err(|e| match e {
            Error::InvalidConfig(reason) => Error::ConfigFile {
                path: path.to_path_buf(),
                reason,
            },
            other => other,
        })?;
        Ok(config)
    }

    /// Parses and validates a JSON configuration held in a string.
    pub fn from_json(text: &str) -> Result<Self> {
        let config: Self = serde_json::from_str(text)
            .map_err(|e| Error::InvalidConfig(format!("malformed JSON: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Number of stages.
    pub fn num_stages(&self) -> usize {
        self.depths.len()
    }

    /// Total downsampling factor from image to last stage: 4 (stem) · 2^(stages − 1).
    pub fn total_stride(&self) -> usize {
        super::stem::Stem::total_stride(self.num_stages())
    }

    /// The FVE size of each stage, `⌊img_size / 4 / 2^i⌋`, as the reference computes it.
    pub fn fve_sizes(&self) -> Vec<usize> {
        let res0 = self.img_size as f64 / 4.0;
        (0..self.num_stages())
            .map(|i| (res0 / f64::powi(2.0, i as i32)).floor() as usize)
            .collect()
    }

    /// Checks that the configuration describes a model that can be built.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        if self.depths.is_empty() {
            return bad("`depths` is empty: a model needs at least one stage".into());
        }
        if self.depths.len() != self.dims.len() {
            return bad(format!(
                "`depths` has {} stages but `dims` has {} widths",
                self.depths.len(),
                self.dims.len()
            ));
        }
        if let Some(i) = self.dims.iter().position(|&d| d == 0) {
            return bad(format!("`dims[{i}]` is 0"));
        }
        if self.dims[0] < 2 {
            return bad("`dims[0]` must be at least 2 (the stem halves it)".into());
        }
        if self.in_chans == 0 {
            return bad("`in_chans` is 0".into());
        }
        if self.depths.len() > 16 {
            return bad(format!("{} stages is more than 16", self.depths.len()));
        }
        if self.img_size < self.total_stride() {
            return bad(format!(
                "`img_size` {} is smaller than the total stride {}: the last stage's FVE \
                 would be empty",
                self.img_size,
                self.total_stride()
            ));
        }
        if !(0.0..1.0).contains(&self.drop_path_rate) {
            return bad(format!(
                "`drop_path_rate` {} is outside [0, 1)",
                self.drop_path_rate
            ));
        }
        if !self.mlp_ratio.is_finite() || self.mlp_ratio < 0.0 || self.mlp_ratio > 64.0 {
            return bad(format!("`mlp_ratio` {} is outside [0, 64]", self.mlp_ratio));
        }
        if let Some(s) = self.layer_scale {
            if !s.is_finite() {
                return bad(format!("`layer_scale` {s} is not finite"));
            }
        }
        let bytes = self.parameter_bytes_estimate();
        if bytes > isize::MAX as f64 {
            return bad(format!(
                "the model would need about {bytes:.3e} bytes of parameters, more than any \
                 machine can address (depths {:?}, dims {:?}, img_size {}, num_classes {}, \
                 in_chans {})",
                self.depths, self.dims, self.img_size, self.num_classes, self.in_chans
            ));
        }
        Ok(())
    }

    /// The float32 parameter bytes of the model this configuration builds, computed in `f64`
    /// (every weight matrix and embedding; biases and norms are negligible) so that an absurd
    /// configuration (e.g. `depths: [18446744073709551615]`) gives a huge number instead of an
    /// integer overflow while building.
    pub(crate) fn parameter_bytes_estimate(&self) -> f64 {
        let (mut total, n) = (0f64, self.num_stages());
        let d0 = self.dims[0] as f64;
        total += 9.0 * self.in_chans as f64 * d0 / 2.0 + 9.0 * d0 / 2.0 * d0;
        for (i, (&depth, &d)) in self.depths.iter().zip(&self.dims).enumerate() {
            let d = d as f64;
            let side = self.img_size as f64 / 4.0 / f64::powi(2.0, i as i32);
            let hidden = d * self.mlp_ratio;
            // dwconv, linear C→2C, out_linear, to_k, MLP; plus the stage's FVE.
            let block = 9.0 * d + 2.0 * d * d + 2.0 * d * d + 2.0 * d * hidden;
            total += depth as f64 * block + side * side * d;
            if i + 1 < n {
                total += 9.0 * d * self.dims[i + 1] as f64;
            }
        }
        total += self.dims[n - 1] as f64 * self.num_classes as f64;
        4.0 * total
    }
}
