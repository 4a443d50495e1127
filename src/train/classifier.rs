//! [`ImageClassifier`]: a [`VHeat`] with its training loss, as burn-train's `Learner` wants it.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};

use super::optim::clip_grad_norm;
use crate::data::ImageBatch;
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

/// A [`VHeat`] with what one training step needs besides the weights: the label-smoothing
/// factor and the global gradient-norm bound. It implements burn-train's [`TrainStep`] and
/// [`InferenceStep`], so it is the model a [`burn::train::Learner`] trains.
///
/// Its parameters are the model's, under the prefix `model.`.
#[derive(Module, Debug)]
pub struct ImageClassifier {
    /// The network.
    pub model: VHeat,
    /// Label smoothing of the training loss (validation uses plain cross-entropy).
    pub label_smoothing: f64,
    /// Gradients are rescaled to at most this global L2 norm; 0 turns clipping off.
    pub clip_grad: f64,
}

impl ImageClassifier {
    /// Wraps `model` with label smoothing `label_smoothing` and gradient clipping at
    /// `clip_grad` (`None` for no clipping).
    pub fn new(model: VHeat, label_smoothing: f64, clip_grad: Option<f64>) -> Self {
        Self {
            model,
            label_smoothing,
            clip_grad: clip_grad.unwrap_or(0.0),
        }
    }

    /// Logits, loss and targets of one batch; `smoothing` is the label smoothing of the loss.
    pub fn forward_classification(
        &self,
        batch: ImageBatch,
        smoothing: f64,
    ) -> ClassificationOutput {
        let logits = self.model.forward(batch.images);
        let loss = smoothed_cross_entropy(logits.clone(), batch.targets.clone(), smoothing);
        ClassificationOutput::new(loss, logits, batch.targets)
    }

    /// The gradients of one training step (with the smoothed loss), clipped by global norm.
    pub fn gradients(&self, batch: ImageBatch) -> (GradientsParams, ClassificationOutput) {
        let out = self.forward_classification(batch, self.label_smoothing);
        let mut grads = GradientsParams::from_grads(out.loss.backward(), self);
        if self.clip_grad > 0.0 {
            clip_grad_norm(self, &mut grads, self.clip_grad);
        }
        (grads, out)
    }
}

impl TrainStep for ImageClassifier {
    type Input = ImageBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: ImageBatch) -> TrainOutput<ClassificationOutput> {
        let (grads, item) = self.gradients(batch);
        TrainOutput { grads, item }
    }
}

impl InferenceStep for ImageClassifier {
    type Input = ImageBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: ImageBatch) -> ClassificationOutput {
        self.forward_classification(batch, 0.0)
    }
}
