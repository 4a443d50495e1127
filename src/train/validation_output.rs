//! [`ValidationOutput`]: what one validation step of an [`super::ImageClassifier`] returns —
//! the raw model's [`ClassificationOutput`] and, when the classifier keeps a model EMA, the
//! EMA's on the same batch — with the adaptors that feed the raw half to Burn's `Loss` and
//! `Accuracy` metrics and the EMA half to [`super::EmaLossMetric`] and
//! [`super::EmaAccuracyMetric`].

use burn::tensor::ExecutionError;
use burn::train::metric::{AccuracyInput, Adaptor, ItemLazy, LossInput};
use burn::train::ClassificationOutput;

use super::ema_metric::EmaInput;

/// The outputs of one validation batch: the raw model's and (with an EMA) the EMA's.
pub struct ValidationOutput {
    /// Loss (plain cross-entropy), logits and targets of the raw model.
    pub raw: ClassificationOutput,
    /// The same for the model EMA; `None` without one.
    pub ema: Option<ClassificationOutput>,
}

impl ItemLazy for ValidationOutput {
    fn sync(self) -> Result<Self, ExecutionError> {
        Ok(Self {
            raw: self.raw.sync()?,
            ema: self.ema.map(ItemLazy::sync).transpose()?,
        })
    }
}

impl Adaptor<AccuracyInput> for ValidationOutput {
    fn adapt(&self) -> AccuracyInput {
        self.raw.adapt()
    }
}

/// The batch's mean loss repeated once per image: Burn's `LossMetric` weights a batch by the
/// length of its loss tensor, so the epoch's figure is the mean over images (a short last
/// batch counts for its images only), the same however the set is split into batches or
/// across ranks.
fn per_image(output: &ClassificationOutput) -> LossInput {
    let [images, _] = output.output.dims();
    LossInput::new(output.loss.clone().expand([images]))
}

impl Adaptor<LossInput> for ValidationOutput {
    fn adapt(&self) -> LossInput {
        per_image(&self.raw)
    }
}

impl Adaptor<EmaInput<AccuracyInput>> for ValidationOutput {
    fn adapt(&self) -> EmaInput<AccuracyInput> {
        EmaInput(self.ema.as_ref().map(Adaptor::<AccuracyInput>::adapt))
    }
}

impl Adaptor<EmaInput<LossInput>> for ValidationOutput {
    fn adapt(&self) -> EmaInput<LossInput> {
        EmaInput(self.ema.as_ref().map(per_image))
    }
}
