//! The backbone API for dense prediction (detection, segmentation): per-stage feature maps
//! ([`VHeat::forward_intermediates`]), what each stage produces ([`VHeat::feature_info`]), the
//! per-level output norms of the reference's dense-prediction backbone
//! ([`VHeat::with_output_norms`]) and the zero-padding FVE conversion
//! ([`VHeat::zero_pad_fve`]).
//!
//! The names and semantics follow timm's backbone API (`forward_intermediates`,
//! `feature_info`, `forward_head`, `reset_classifier`) so that code written against timm
//! models carries over.
//!
//! # Resolution policy
//! Dense prediction runs vHeat at sizes other than the one it was trained at (512², 800×1333, …).
//! A stage's frequency-value embedding (FVE) must match its map, so by default the FVE is
//! **resized bicubically** (`align_corners = false`) to every map it meets — exactly what the
//! reference's dense-prediction backbone (`detection/model.py`) does on every call, and what
//! [`VHeat::forward`] and [`VHeat::forward_intermediates`] do here. The reference's
//! `interpolate4downstream.py` offers the alternative of **zero-padding** the FVEs once, before
//! fine-tuning: the learned low frequencies keep their values and the new high frequencies start
//! at zero. [`VHeat::zero_pad_fve`] does that conversion; a model fine-tuned that way must be
//! converted the same way before its checkpoint is loaded (or built with the larger `img_size`).

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::prelude::*;

use super::model::VHeat;
use super::stem::{norm_nchw, Stem};
use crate::error::{Error, Result};
use crate::hco::zero_pad;
use crate::kernels;

/// LayerNorm epsilon of the output norms: PyTorch's default, as the reference's
/// `nn.LayerNorm(dims[i])` in its dense-prediction backbone.
pub const OUTPUT_NORM_EPS: f64 = 1e-5;

/// Which stages [`VHeat::forward_intermediates`] returns, with timm's semantics.
///
/// - `Indices::All` — every stage (timm's `indices=None`);
/// - `Indices::Last(n)` — the last `n` stages (timm's integer `indices`); `n` must be in
///   `1..=stages`;
/// - `Indices::List(v)` — the listed stages; negative entries count from the end (`-1` is the
///   last stage). Every entry must be in `-stages..stages`.
///
/// The maps always come back in network order (shallow to deep), each stage once, whatever the
/// order of the list — as timm does; [`Indices::resolve`] gives the stage of every returned map.
///
/// Conversions make the call sites short: an integer is a count (`usize`), and a `Vec`, slice or
/// array of `i64`, `i32` or `usize` is a list (an untyped literal list is taken as `i32`):
/// ```
/// use vheat::vheat::Indices;
/// assert_eq!(Indices::from(2), Indices::Last(2));
/// assert_eq!(Indices::from(vec![-1, 0]), Indices::List(vec![-1, 0]));
/// assert_eq!(Indices::from(&[0i64, 1][..]), Indices::List(vec![0, 1]));
/// assert_eq!(Indices::from([1, 2]).resolve(4).unwrap(), vec![1, 2]);
/// assert_eq!(Indices::from(vec![-1, 0]).resolve(4).unwrap(), vec![0, 3]);
/// let stages: Vec<usize> = vec![3, 1];
/// assert_eq!(Indices::from(stages).resolve(4).unwrap(), vec![1, 3]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Indices {
    /// Every stage.
    #[default]
    All,
    /// The last `n` stages.
    Last(usize),
    /// These stages; negative values count from the end.
    List(Vec<i64>),
}

impl From<usize> for Indices {
    fn from(n: usize) -> Self {
        Indices::Last(n)
    }
}

impl From<Vec<i64>> for Indices {
    fn from(v: Vec<i64>) -> Self {
        Indices::List(v)
    }
}

impl From<&[i64]> for Indices {
    fn from(v: &[i64]) -> Self {
        Indices::List(v.to_vec())
    }
}

impl<const N: usize> From<[i64; N]> for Indices {
    fn from(v: [i64; N]) -> Self {
        Indices::List(v.to_vec())
    }
}

/// Stage numbers as `i64`, a value beyond `i64::MAX` becoming one (out of range either way).
fn to_i64<T: Copy + TryInto<i64>>(v: &[T]) -> Vec<i64> {
    v.iter()
        .map(|&i| i.try_into().unwrap_or(i64::MAX))
        .collect()
}

impl From<Vec<i32>> for Indices {
    fn from(v: Vec<i32>) -> Self {
        Indices::List(to_i64(&v))
    }
}

impl From<&[i32]> for Indices {
    fn from(v: &[i32]) -> Self {
        Indices::List(to_i64(v))
    }
}

impl<const N: usize> From<[i32; N]> for Indices {
    fn from(v: [i32; N]) -> Self {
        Indices::List(to_i64(&v))
    }
}

impl From<Vec<usize>> for Indices {
    fn from(v: Vec<usize>) -> Self {
        Indices::List(to_i64(&v))
    }
}

impl From<&[usize]> for Indices {
    fn from(v: &[usize]) -> Self {
        Indices::List(to_i64(v))
    }
}

impl<const N: usize> From<[usize; N]> for Indices {
    fn from(v: [usize; N]) -> Self {
        Indices::List(to_i64(&v))
    }
}

impl Indices {
    /// The selected stages of a model with `stages` stages, ascending and without repeats.
    ///
    /// Returns [`Error::StageSelection`] when a count or an index does not fit the model, or the
    /// list is empty.
    pub fn resolve(&self, stages: usize) -> Result<Vec<usize>> {
        let err = |reason: String| Error::StageSelection {
            requested: format!("{self:?}"),
            stages,
            reason,
        };
        let mut out: Vec<usize> = match self {
            Indices::All => (0..stages).collect(),
            Indices::Last(n) => {
                if *n == 0 || *n > stages {
                    return Err(err(format!(
                        "the last {n} stages: the count must be between 1 and {stages}"
                    )));
                }
                (stages - n..stages).collect()
            }
            Indices::List(list) => {
                if list.is_empty() {
                    return Err(err("the list selects no stage".into()));
                }
                let s = stages as i64;
                list.iter()
                    .map(|&i| {
                        let j = if i < 0 { s + i } else { i };
                        if (0..s).contains(&j) {
                            Ok(j as usize)
                        } else {
                            Err(err(format!(
                                "index {i} is out of range: valid indices are {}..={} (or 0..={})",
                                -s,
                                -1,
                                s - 1
                            )))
                        }
                    })
                    .collect::<Result<_>>()?
            }
        };
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }
}

/// Whether [`VHeat::forward_intermediates_with`] passes each map through its stage's output norm
/// (the reference's `outnorm{i}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputNorm {
    /// Through the stage's output norm where the model has one, raw elsewhere (the default, and
    /// what [`VHeat::forward_intermediates`] does): a classification model has none and gives
    /// the raw stage maps; a dense-prediction backbone gives what the reference's does.
    #[default]
    IfPresent,
    /// Through the output norm of every selected stage; a selected stage without one is an
    /// [`Error::StageSelection`].
    Apply,
    /// The raw stage maps, ignoring any output norm.
    Skip,
}

/// What one stage of the backbone produces (timm's `feature_info` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FeatureInfo {
    /// Channels of the stage's map.
    pub num_chs: usize,
    /// Downsampling from the image: the map of an `H × W` image is `⌈H/r⌉ × ⌈W/r⌉`.
    pub reduction: usize,
    /// The stage's module path (`layers.{i}`).
    pub module: String,
}

impl VHeat {
    /// Feature maps of the selected stages, NCHW, each the stage's output before its
    /// downsampling (timm's `forward_intermediates(x, indices, intermediates_only=True)`).
    ///
    /// `indices` is anything convertible to [`Indices`]: `2` (the last two stages),
    /// `vec![-1, 0]` (the last and the first), `Indices::All`. The maps come back in network
    /// order, stage `i` as `[B, dims[i], ⌈H/rᵢ⌉, ⌈W/rᵢ⌉]` with `rᵢ` from
    /// [`feature_info`](Self::feature_info); stages after the deepest one selected are not run.
    ///
    /// Maps of stages that have an output norm ([`with_output_norms`](Self::with_output_norms),
    /// or loaded with a dense-prediction checkpoint by
    /// [`load_backbone`](Self::load_backbone)) go through it, as in the reference's
    /// dense-prediction backbone; a classification model has none, so its maps are the raw
    /// stage outputs and the deepest equals [`forward_features`](Self::forward_features).
    /// [`forward_intermediates_with`](Self::forward_intermediates_with) chooses explicitly.
    ///
    /// Errors: [`Error::StageSelection`] for indices that do not fit the model, and the input
    /// errors of [`check_input`](Self::check_input) and [`check_device`](Self::check_device).
    pub fn forward_intermediates(
        &self,
        images: Tensor<4>,
        indices: impl Into<Indices>,
    ) -> Result<Vec<Tensor<4>>> {
        self.forward_intermediates_with(images, indices, OutputNorm::IfPresent)
    }

    /// [`forward_intermediates`](Self::forward_intermediates) with an explicit choice of output
    /// norms: [`OutputNorm::Apply`] requires one on every selected stage, [`OutputNorm::Skip`]
    /// returns the raw stage maps even from a dense-prediction backbone.
    pub fn forward_intermediates_with(
        &self,
        images: Tensor<4>,
        indices: impl Into<Indices>,
        norm: OutputNorm,
    ) -> Result<Vec<Tensor<4>>> {
        let indices = indices.into();
        let selected = indices.resolve(self.layers.len())?;
        if norm == OutputNorm::Apply {
            if let Some(&i) = selected.iter().find(|&&i| self.output_norm(i).is_none()) {
                return Err(Error::StageSelection {
                    requested: format!("{indices:?} with output norms"),
                    stages: self.layers.len(),
                    reason: format!(
                        "stage {i} has no output norm (stages with one: {:?}); add them with \
                         `with_output_norms`",
                        self.output_norm_indices()
                    ),
                });
            }
        }
        self.check_input(&images.dims())?;
        self.check_device(&images)?;
        let deepest = *selected
            .last()
            .expect("resolve never returns an empty selection");
        // The whole pass on a worker of the rayon pool, as `VHeat::forward` runs.
        let outs = kernels::on_pool(kernels::pays_on_pool(&images), || {
            self.stage_outputs(images, &selected, deepest, norm)
        });
        Ok(outs)
    }

    /// The outputs of the `selected` stages (ascending, the last `deepest`), normed per `norm`.
    fn stage_outputs(
        &self,
        images: Tensor<4>,
        selected: &[usize],
        deepest: usize,
        norm: OutputNorm,
    ) -> Vec<Tensor<4>> {
        let mut outs = Vec::with_capacity(selected.len());
        let mut x = self.patch_embed.forward(images);
        for (i, stage) in self.layers.iter().enumerate().take(deepest + 1) {
            let y = stage
                .forward_blocks(x.permute([0, 2, 3, 1]))
                .permute([0, 3, 1, 2]);
            if selected.contains(&i) {
                let out = match (norm, self.output_norm(i)) {
                    (OutputNorm::Skip, _) | (_, None) => y.clone(),
                    (_, Some(n)) => norm_nchw(n, OUTPUT_NORM_EPS, y.clone()),
                };
                outs.push(out);
            }
            if i == deepest {
                break;
            }
            x = match &stage.downsample {
                Some(ds) => ds.forward(y),
                None => y,
            };
        }
        outs
    }

    /// Channels, reduction and module path of every stage's map (timm's `feature_info`):
    /// reduction 4 after the stem, doubled by each downsampling.
    pub fn feature_info(&self) -> Vec<FeatureInfo> {
        let mut reduction = Stem::total_stride(1);
        self.layers
            .iter()
            .enumerate()
            .map(|(i, stage)| {
                let info = FeatureInfo {
                    num_chs: stage.dim(),
                    reduction,
                    module: format!("layers.{i}"),
                };
                if stage.downsample.is_some() {
                    reduction *= 2;
                }
                info
            })
            .collect()
    }

    /// Width of the features the head pools (timm's `num_features`): the last stage's channels.
    pub fn num_features(&self) -> usize {
        self.layers.last().map_or(0, |s| s.dim())
    }

    /// The model with a fresh output LayerNorm (weight 1, bias 0, eps 1e-5) on each selected
    /// stage and none elsewhere (the reference's `outnorm{i}` for `out_indices`), replacing any
    /// it had. A dense-prediction checkpoint then loads into them, and
    /// [`forward_intermediates`](Self::forward_intermediates) applies them.
    pub fn with_output_norms(mut self, indices: impl Into<Indices>) -> Result<Self> {
        let selected = indices.into().resolve(self.layers.len())?;
        let device = self.device();
        self.out_norms = self
            .layers
            .iter()
            .enumerate()
            .map(|(i, stage)| {
                selected.contains(&i).then(|| {
                    LayerNormConfig::new(stage.dim())
                        .with_epsilon(OUTPUT_NORM_EPS)
                        .init(&device)
                })
            })
            .collect();
        Ok(self)
    }

    /// The model without output norms (its intermediates are then the raw stage maps).
    pub fn without_output_norms(mut self) -> Self {
        self.out_norms = Vec::new();
        self
    }

    /// The output norm of stage `i`, if it has one.
    pub fn output_norm(&self, i: usize) -> Option<&LayerNorm> {
        self.out_norms.get(i).and_then(Option::as_ref)
    }

    /// The stages that have an output norm, ascending.
    pub fn output_norm_indices(&self) -> Vec<usize> {
        (0..self.layers.len())
            .filter(|&i| self.output_norm(i).is_some())
            .collect()
    }

    /// The model with every stage's FVE zero-padded to that stage's map for `h × w` inputs (the
    /// reference's `interpolate4downstream.py`): the stored embedding stays in the top-left
    /// (low-frequency) corner, the new high frequencies are zero, and no resizing happens at run
    /// time at that size.
    ///
    /// For sizes that are multiples of the total stride this is exactly the script's result
    /// (`FVEᵢ` grows by `(h − img_size) / 2^(i+2)`); at other sizes each FVE is padded to the
    /// map the stage really sees (`⌈h/rᵢ⌉`), which the script's rounding down can miss by one.
    /// `self` is left as it is.
    ///
    /// Errors: [`Error::Form`] in the inference form (it has no FVEs);
    /// [`Error::InputTooSmall`] below the total stride; [`Error::InvalidInput`] when a stage's
    /// map would be smaller than its FVE (shrink bicubically instead: the default policy).
    pub fn zero_pad_fve(&self, h: usize, w: usize) -> Result<VHeat> {
        if self.is_inference() {
            return Err(Error::Form(
                "the inference form has no FVEs to pad; pad the trainable form, then call \
                 `to_inference`"
                    .into(),
            ));
        }
        self.check_input(&[1, self.in_chans(), h, w])?;
        let mut model = self.clone();
        for (i, (stage, [sh, sw])) in model
            .layers
            .iter_mut()
            .zip(self.stage_sizes(h, w))
            .enumerate()
        {
            let Some(fve) = stage.freq_embed.as_mut() else {
                continue;
            };
            let [eh, ew, _] = fve.dims();
            let padded = zero_pad(fve.weight.val(), sh, sw).ok_or_else(|| Error::InvalidInput {
                what: "zero_pad_fve target size".into(),
                expected: format!(
                    "a size whose stage-{i} map is at least the stage's FVE, {eh}x{ew}"
                ),
                found: format!("{h}x{w}, giving a {sh}x{sw} map"),
            })?;
            fve.weight = Param::from_tensor(padded);
        }
        Ok(model)
    }
}
