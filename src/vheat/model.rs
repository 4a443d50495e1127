//! [`VHeat`]: stem → stages → head.

use burn::module::{ModuleMapper, Param};
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;

use super::block::HeatBlockConfig;
use super::config::VHeatConfig;
use super::downsample::Downsample;
use super::drop_path::drop_path_schedule;
use super::head::Head;
use super::stage::Stage;
use super::stem::{halve, Stem};
use crate::error::{Error, Result};
use crate::hco::{FrequencyEmbedding, FrequencyEmbeddingConfig};
use crate::kernels;

/// What the inference form removed, kept so that [`VHeat::to_trainable`] can restore it.
#[derive(Debug, Clone)]
pub struct TrainableParts {
    /// Each stage's frequency-value embedding.
    freq_embed: Vec<Option<FrequencyEmbedding>>,
    /// Each block's `to_k`, per stage.
    to_k: Vec<Vec<Option<Linear>>>,
}

/// The vHeat model: a stem, stages of heat blocks and a classifier head.
///
/// Field names follow the reference (`patch_embed`, `layers`, `classifier`), so checkpoint keys
/// map with a handful of rules (see [`crate::weights`]).
#[derive(Module, Debug)]
#[non_exhaustive]
pub struct VHeat {
    /// The stem (the reference's `patch_embed`).
    pub patch_embed: Stem,
    /// The stages.
    pub layers: Vec<Stage>,
    /// LayerNorm → pool → Linear.
    pub classifier: Head,
    /// Per-stage output LayerNorms of a dense-prediction backbone (the reference's
    /// `outnorm{i}`); empty for a classification model. See
    /// [`with_output_norms`](Self::with_output_norms) and
    /// [`forward_intermediates`](Self::forward_intermediates).
    pub out_norms: Vec<Option<LayerNorm>>,
    /// The trainable-form parts the inference form dropped (not a parameter).
    #[module(skip)]
    trainable_parts: Option<TrainableParts>,
}

impl VHeatConfig {
    /// Builds the model on `device` with the reference's initialisation.
    ///
    /// # Panics
    /// If the configuration is invalid; [`try_init`](Self::try_init) returns the error instead.
    pub fn init(&self, device: &Device) -> VHeat {
        match self.try_init(device) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    /// Builds the model on `device`, or says why the configuration cannot be built.
    pub fn try_init(&self, device: &Device) -> Result<VHeat> {
        self.validate()?;
        // The parameters alone, before any is allocated: an absurd configuration is an error
        // naming its size, not an allocation failure.
        self.check_memory(0, self.img_size, false)?;
        let n = self.num_stages();
        let dpr = drop_path_schedule(self.drop_path_rate, self.depths.iter().sum());
        let fve = self.fve_sizes();
        let mut offset = 0;
        let layers = (0..n)
            .map(|i| {
                let dim = self.dims[i];
                let blocks = (0..self.depths[i])
                    .map(|j| {
                        HeatBlockConfig::new(dim)
                            .with_post_norm(self.post_norm)
                            .with_layer_scale(self.layer_scale)
                            .with_drop_path(dpr[offset + j])
                            .with_mlp_ratio(self.mlp_ratio)
                            .init(device)
                    })
                    .collect();
                offset += self.depths[i];
                Stage {
                    blocks,
                    freq_embed: Some(
                        FrequencyEmbeddingConfig::new(fve[i], fve[i], dim).init(device),
                    ),
                    downsample: (i + 1 < n).then(|| Downsample::new(dim, self.dims[i + 1], device)),
                }
            })
            .collect();
        let model = VHeat {
            patch_embed: Stem::new(self.in_chans, self.dims[0], device),
            layers,
            classifier: Head::new(self.dims[n - 1], self.num_classes, device),
            out_norms: Vec::new(),
            trainable_parts: None,
        };
        // Burn initialises layer parameters lazily, on first use; draw them all now so that
        // the random stream consumed by `init` is exactly this model's.
        Ok(model.map(&mut Materialize))
    }

    /// Builds the model with the random generator of `device`'s backend seeded with `seed`:
    /// the same seed gives the same weights.
    ///
    /// Burn's generator is global to the backend, so another thread drawing random numbers on
    /// the same backend at the same moment would interleave with this one; concurrent calls of
    /// this function are serialised.
    pub fn init_seeded(&self, device: &Device, seed: u64) -> Result<VHeat> {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        device.seed(seed);
        self.try_init(device)
    }
}

/// Forces every lazily initialised parameter to be drawn.
struct Materialize;

impl ModuleMapper for Materialize {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let _ = param.val();
        param
    }
}

impl VHeat {
    /// Images `[B, in_chans, H, W]` → logits `[B, num_classes]` (pooled features `[B, C]` when
    /// headless). Any `H × W` of at least [`min_input_size`](Self::min_input_size) works.
    ///
    /// Burn panics deep inside on a malformed input; [`try_forward`](Self::try_forward) checks
    /// first and returns an [`Error`].
    ///
    /// On the CPU, for small inputs, the whole pass runs on a worker of the rayon pool
    /// ([`kernels::on_pool`], [`kernels::pays_on_pool`]).
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        kernels::on_pool(kernels::pays_on_pool(&images), || {
            self.forward_head(self.forward_features(images), false)
        })
    }

    /// Like [`forward`](Self::forward) after [`check_input`](Self::check_input).
    pub fn try_forward(&self, images: Tensor<4>) -> Result<Tensor<2>> {
        self.check_input(&images.dims())?;
        self.check_device(&images)?;
        Ok(self.forward(images))
    }

    /// Checks that `images` live on the model's device (Burn panics when an operation mixes
    /// backends). Autodiff does not matter: a plain input into an autodiff model is fine.
    pub fn check_device(&self, images: &Tensor<4>) -> Result<()> {
        let (model, input) = (self.device(), images.device());
        if model != input {
            return Err(Error::InvalidInput {
                what: "VHeat images".into(),
                expected: format!("a tensor on the model's device {model:?}"),
                found: format!("a tensor on {input:?}"),
            });
        }
        Ok(())
    }

    /// Images → the unpooled map before the head, `[B, C_last, H/32, W/32]` (NCHW). Runs on
    /// the rayon pool where [`forward`](Self::forward) does.
    pub fn forward_features(&self, images: Tensor<4>) -> Tensor<4> {
        kernels::on_pool(kernels::pays_on_pool(&images), || {
            let mut x = self.patch_embed.forward(images);
            for stage in &self.layers {
                x = stage.forward(x).1;
            }
            x
        })
    }

    /// The head on a feature map: logits, or the pooled, normalised features when `pre_logits`.
    pub fn forward_head(&self, features: Tensor<4>, pre_logits: bool) -> Tensor<2> {
        self.classifier.forward(features, pre_logits)
    }

    /// The stem's output and every stage's output before its downsampling (NCHW).
    pub fn forward_stages(&self, images: Tensor<4>) -> (Tensor<4>, Vec<Tensor<4>>) {
        kernels::on_pool(kernels::pays_on_pool(&images), || {
            self.stem_and_stages(images)
        })
    }

    /// [`forward_stages`](Self::forward_stages) on the calling thread.
    fn stem_and_stages(&self, images: Tensor<4>) -> (Tensor<4>, Vec<Tensor<4>>) {
        let stem = self.patch_embed.forward(images);
        let mut x = stem.clone();
        let mut outs = Vec::with_capacity(self.layers.len());
        for stage in &self.layers {
            let (out, next) = stage.forward(x);
            outs.push(out);
            x = next;
        }
        (stem, outs)
    }

    /// Number of parameters (every float parameter element, as PyTorch's
    /// `sum(p.numel() for p in model.parameters())` counts them, including the inference form's
    /// precomputed decays). Same as [`Module::num_params`], callable without importing the trait.
    pub fn num_params(&self) -> usize {
        Module::num_params(self)
    }

    /// The device the model's parameters live on.
    pub(crate) fn device(&self) -> Device {
        self.devices().into_iter().next().unwrap_or_default()
    }

    /// Number of classifier outputs (0 when headless).
    pub fn num_classes(&self) -> usize {
        self.classifier
            .fc
            .as_ref()
            .map_or(0, |fc| fc.weight.dims()[1])
    }

    /// Input channels.
    pub fn in_chans(&self) -> usize {
        self.patch_embed.conv1.weight.dims()[1]
    }

    /// Width of each stage.
    pub fn dims(&self) -> Vec<usize> {
        self.layers.iter().map(Stage::dim).collect()
    }

    /// Depth of each stage.
    pub fn depths(&self) -> Vec<usize> {
        self.layers.iter().map(|s| s.blocks.len()).collect()
    }

    /// Total downsampling factor, 4 · 2^(stages − 1); also the smallest input side accepted by
    /// [`check_input`](Self::check_input).
    pub fn min_input_size(&self) -> usize {
        Stem::total_stride(self.layers.len())
    }

    /// The `[H, W]` of every stage's map for an `h × w` input.
    pub fn stage_sizes(&self, h: usize, w: usize) -> Vec<[usize; 2]> {
        let mut size = Stem::output_size(h, w);
        let mut out = Vec::with_capacity(self.layers.len());
        for stage in &self.layers {
            out.push(size);
            if stage.downsample.is_some() {
                size = [halve(size[0]), halve(size[1])];
            }
        }
        out
    }

    /// Checks an image batch shape `[B, C, H, W]` before running: rank, channels, non-empty
    /// batch, minimum size, and (in the inference form) the size the decay was computed for.
    pub fn check_input(&self, dims: &[usize]) -> Result<()> {
        let invalid = |expected: String| Error::InvalidInput {
            what: "VHeat images".into(),
            expected,
            found: format!("{dims:?}"),
        };
        let [b, c, h, w] =
            <[usize; 4]>::try_from(dims).map_err(|_| invalid("a 4-D batch [B, C, H, W]".into()))?;
        if c != self.in_chans() {
            return Err(invalid(format!(
                "{} channels [B, {}, H, W]",
                self.in_chans(),
                self.in_chans()
            )));
        }
        if b == 0 {
            return Err(invalid("a non-empty batch".into()));
        }
        let stride = self.min_input_size();
        if h < stride || w < stride {
            return Err(Error::InputTooSmall {
                height: h,
                width: w,
                stride,
            });
        }
        for (i, (stage, size)) in self.layers.iter().zip(self.stage_sizes(h, w)).enumerate() {
            for block in &stage.blocks {
                if let Some(expected) = block.op.inference_size() {
                    if expected != size {
                        return Err(Error::InferenceSizeMismatch {
                            stage: i,
                            expected,
                            found: size,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// True when the model is in the inference form (decays precomputed).
    pub fn is_inference(&self) -> bool {
        self.layers
            .iter()
            .any(|s| s.blocks.iter().any(|b| b.op.is_inference()))
    }

    /// The inference form for `h × w` inputs: every block's decay `exp(-(ωₙ²+ωₘ²))^k` is
    /// computed once from the stage's FVE (resized to the stage's map if needed), and `to_k` and
    /// the FVEs are dropped (the reference's `infer_init`). The result gives the same logits as
    /// the trainable form at that size, faster, and runs only at that size.
    ///
    /// `self` is left as it is; [`to_trainable`](Self::to_trainable) on the result gives the
    /// trainable form back.
    pub fn to_inference(&self, h: usize, w: usize) -> Result<VHeat> {
        if self.is_inference() {
            return Err(Error::Form(
                "the model is already in the inference form".into(),
            ));
        }
        let probe = [1, self.in_chans(), h, w];
        self.check_input(&probe)?;
        let mut model = self.clone();
        let mut parts = TrainableParts {
            freq_embed: Vec::new(),
            to_k: Vec::new(),
        };
        for (stage, [sh, sw]) in model.layers.iter_mut().zip(self.stage_sizes(h, w)) {
            let fve = stage.fve_at(sh, sw);
            let fve = fve.ok_or_else(|| {
                Error::Form("a stage has no frequency-value embedding to precompute from".into())
            })?;
            let mut to_k = Vec::new();
            for block in stage.blocks.iter_mut() {
                to_k.push(block.op.to_k.clone());
                block.op = block.op.to_inference(fve.clone());
            }
            parts.to_k.push(to_k);
            parts.freq_embed.push(stage.freq_embed.take());
        }
        model.trainable_parts = Some(parts);
        Ok(model)
    }

    /// The trainable form of a model made by [`to_inference`](Self::to_inference): `to_k` and the
    /// FVEs are restored and the precomputed decays dropped. Every other weight is taken from
    /// `self`, so changes made in the inference form are kept.
    pub fn to_trainable(&self) -> Result<VHeat> {
        if !self.is_inference() {
            return Err(Error::Form(
                "the model is already in the trainable form".into(),
            ));
        }
        let parts = self.trainable_parts.as_ref().ok_or_else(|| {
            Error::Form(
                "this inference-form model was not made by `to_inference` (e.g. loaded from an \
                 inference checkpoint), so its `to_k` and FVE weights do not exist"
                    .into(),
            )
        })?;
        let device = self.device();
        let mut model = self.clone();
        for (i, stage) in model.layers.iter_mut().enumerate() {
            stage.freq_embed = parts.freq_embed[i].clone().map(|f| f.to_device(&device));
            for (j, block) in stage.blocks.iter_mut().enumerate() {
                if let Some(to_k) = parts.to_k[i][j].clone() {
                    block.op = block.op.to_trainable(to_k.to_device(&device));
                }
            }
        }
        model.trainable_parts = None;
        Ok(model)
    }

    /// Replaces the classifier's Linear by a fresh one with `num_classes` outputs (0 removes it:
    /// `forward` then returns pooled features). The head's LayerNorm is kept.
    pub fn reset_classifier(&mut self, num_classes: usize) {
        let device = self.device();
        let dim = self.classifier.norm.gamma.dims()[0];
        self.classifier.fc =
            (num_classes > 0).then(|| crate::init::reference_linear(dim, num_classes, &device));
    }

    /// Every precomputed decay, per stage and block (empty in the trainable form).
    pub fn precomputed_decays(&self) -> Vec<Vec<Param<Tensor<3>>>> {
        self.layers
            .iter()
            .map(|s| s.blocks.iter().filter_map(|b| b.op.k_exp.clone()).collect())
            .collect()
    }
}
