//! [`ImageClassifier`]: a [`VHeat`] with its training loss (smoothed or soft-target
//! cross-entropy) and an optional weight average ([`ModelEma`]), as burn-train's `Learner`
//! wants it.

use burn::module::Module;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::optim::{GradientsParams, ModuleOptimizer, MultiGradientsParams};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};

use super::distributed::GradientSync;
use super::ema::ModelEma;
use super::optim::clip_grad_norm;
use super::validation_output::ValidationOutput;
use crate::data::ImageBatch;
use crate::error::Result;
use crate::kernels::{on_host, on_pool};
use crate::vheat::VHeat;

/// Cross-entropy with label smoothing, averaged over the batch, as timm's
/// `LabelSmoothingCrossEntropy(smoothing)` (the reference's loss): for log-probabilities `p`
/// and target `y`, `(1 − s)·(−p[y]) + s·mean_k(−p[k])`. `smoothing = 0` is plain cross-entropy.
///
/// `logits` is `[B, K]`, `targets` `[B]`; the result has one element.
pub fn smoothed_cross_entropy(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    smoothing: f64,
) -> Tensor<1> {
    let [b, _k] = logits.dims();
    let logp = log_softmax(logits, 1);
    let nll: Tensor<2> = logp.clone().gather(1, targets.reshape([b, 1])).neg();
    let loss = if smoothing > 0.0 {
        let uniform: Tensor<2> = logp.mean_dim(1).neg();
        nll * (1.0 - smoothing) + uniform * smoothing
    } else {
        nll
    };
    loss.mean()
}

/// timm's `SoftTargetCrossEntropy`: `mean_b Σ_k −t[b,k]·log_softmax(logits)[b,k]` for
/// `[B, K]` logits and `[B, K]` target distributions (e.g. Mixup/CutMix soft targets, label
/// smoothing already folded in). The result has one element.
pub fn soft_cross_entropy(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let logp = log_softmax(logits, 1);
    let per: Tensor<2> = (targets * logp).sum_dim(1).neg();
    per.mean()
}

/// `model`'s logits on `batch`, the loss of [`ImageClassifier::forward_classification`] and the
/// targets.
fn classification_of(model: &VHeat, batch: ImageBatch, smoothing: f64) -> ClassificationOutput {
    let logits = model.forward(batch.images);
    let loss = match batch.soft_targets {
        Some(soft) => soft_cross_entropy(logits.clone(), soft),
        None => smoothed_cross_entropy(logits.clone(), batch.targets.clone(), smoothing),
    };
    ClassificationOutput::new(loss, logits, batch.targets)
}

/// A [`VHeat`] with what one training step needs besides the weights: the label-smoothing
/// factor and the global gradient-norm bound. It implements burn-train's [`TrainStep`] and
/// [`InferenceStep`], so it is the model a [`burn::train::Learner`] trains.
///
/// Its parameters are the model's, under the prefix `model.`, and, with
/// [`ImageClassifier::with_ema`], the average's under `ema.model.` (plus `ema.updates`): both
/// are in burn-train's model checkpoints, so a resumed run continues the average.
///
/// With an EMA, [`TrainStep::optimize`] steps the optimizer and then updates the average
/// (once per optimizer step), and [`InferenceStep::step`] validates the average beside the
/// model (a [`ValidationOutput`] with both halves).
#[derive(Module, Debug)]
#[non_exhaustive]
pub struct ImageClassifier {
    /// The network.
    pub model: VHeat,
    /// Label smoothing of the training loss (validation uses plain cross-entropy).
    pub label_smoothing: f64,
    /// Gradients are rescaled to at most this global L2 norm; 0 turns clipping off.
    pub clip_grad: f64,
    /// The weight average, updated after every optimizer step; `None` for none.
    pub ema: Option<ModelEma>,
    /// In data-parallel training across processes, the averaging of the gradients over the
    /// ranks (after backward, before the clip) and the per-epoch comparison of the parameters;
    /// `None` in a single process. Not a parameter: not saved in checkpoints.
    #[module(skip)]
    pub sync: Option<GradientSync>,
}

impl ImageClassifier {
    /// Wraps `model` with label smoothing `label_smoothing` and gradient clipping at
    /// `clip_grad` (`None` for no clipping).
    pub fn new(model: VHeat, label_smoothing: f64, clip_grad: Option<f64>) -> Self {
        Self {
            model,
            label_smoothing,
            clip_grad: clip_grad.unwrap_or(0.0),
            ema: None,
            sync: None,
        }
    }

    /// Averages every step's gradients over the ranks of `sync` before clipping them, and
    /// compares the ranks' parameters after each epoch's last optimizer step.
    pub fn with_sync(mut self, sync: GradientSync) -> Self {
        self.sync = Some(sync);
        self
    }

    /// After an optimizer step (outside the pool: the comparison waits for the other ranks):
    /// the distributed step count.
    fn after_step(self) -> Self {
        if let Some(sync) = &self.sync {
            sync.after_step(&self.model);
        }
        self
    }

    /// Adds a weight average started at the current weights, with decay `decay` (reference
    /// 0.9999) and, if `warmup`, the warm-up of [`ModelEma::decay_at`].
    ///
    /// # Errors
    /// [`crate::Error::InvalidConfig`] if `decay` is not in `[0, 1]`; `self` is then dropped
    /// unchanged (nothing else happens).
    pub fn with_ema(mut self, decay: f64, warmup: bool) -> Result<Self> {
        self.ema = Some(ModelEma::new(&self.model, decay, warmup)?);
        Ok(self)
    }

    /// The averaged network, if there is one.
    pub fn ema_model(&self) -> Option<&VHeat> {
        self.ema.as_ref().map(|e| &e.model)
    }

    /// Updates the average (if any) towards the current weights.
    pub fn update_ema(mut self) -> Self {
        if let Some(ema) = self.ema.take() {
            self.ema = Some(ema.update(&self.model));
        }
        self
    }

    /// Logits, loss and targets of one batch. The loss is [`soft_cross_entropy`] against the
    /// batch's soft targets when it has them (a Mixup/CutMix batch: their smoothing is folded
    /// in and `smoothing` is not used), otherwise [`smoothed_cross_entropy`] with label
    /// smoothing `smoothing`.
    pub fn forward_classification(
        &self,
        batch: ImageBatch,
        smoothing: f64,
    ) -> ClassificationOutput {
        classification_of(&self.model, batch, smoothing)
    }

    /// The gradients of one training step (with the smoothed loss), averaged over the ranks
    /// in data-parallel training ([`Self::with_sync`]), clipped by global norm.
    pub fn gradients(&self, batch: ImageBatch) -> (GradientsParams, ClassificationOutput) {
        let host = on_host(&batch.images);
        let (mut grads, out) = on_pool(host, || {
            let out = self.forward_classification(batch, self.label_smoothing);
            let grads = GradientsParams::from_grads(out.loss.backward(), self);
            (grads, out)
        });
        // Outside the pool: the exchange waits for the other ranks, and a pool worker must not
        // wait (the ranks of an in-process group share the pool).
        if let Some(sync) = &self.sync {
            sync.average(&self.model, &mut grads);
        }
        if self.clip_grad > 0.0 {
            on_pool(host, || clip_grad_norm(self, &mut grads, self.clip_grad));
        }
        (grads, out)
    }

    /// Whether this model's parameters take the host kernels' path (see `on_pool`).
    fn runs_on_host(&self) -> bool {
        on_host(&self.model.classifier.norm.gamma.val())
    }
}

impl TrainStep for ImageClassifier {
    type Input = ImageBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: ImageBatch) -> TrainOutput<ClassificationOutput> {
        let (grads, item) = self.gradients(batch);
        TrainOutput { grads, item }
    }

    fn optimize(
        self,
        optim: &mut ModuleOptimizer,
        lr: ModuleLearningRate,
        grads: GradientsParams,
    ) -> Self {
        on_pool(self.runs_on_host(), || {
            optim.step(lr, self, grads).update_ema()
        })
        .after_step()
    }

    fn optimize_multi(
        self,
        optim: &mut ModuleOptimizer,
        lr: ModuleLearningRate,
        grads: MultiGradientsParams,
    ) -> Self {
        on_pool(self.runs_on_host(), || {
            optim.step_multi(lr, self, grads).update_ema()
        })
        .after_step()
    }
}

impl InferenceStep for ImageClassifier {
    type Input = ImageBatch;
    type Output = ValidationOutput;

    /// The raw model's plain cross-entropy, logits and targets on `batch` and, with an EMA, the
    /// EMA's on the same images (burn-train validates the classifier converted by
    /// `Module::valid`, so the EMA copy travels with it).
    fn step(&self, batch: ImageBatch) -> ValidationOutput {
        let ema = self
            .ema
            .as_ref()
            .map(|ema| classification_of(&ema.model, batch.clone(), 0.0));
        let raw = self.forward_classification(batch, 0.0);
        ValidationOutput { raw, ema }
    }
}
