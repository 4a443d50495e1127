//! [`EmaMetric`]: a burn-train metric of the model EMA, shown beside the raw model's metric of
//! the same kind every validation epoch ([`EmaAccuracyMetric`] beside `Accuracy`,
//! [`EmaLossMetric`] beside `Loss`).
//!
//! It wraps one of Burn's own metrics (the computation is Burn's, not redone here) under the
//! name `"EMA " + name` and with its own input type, [`EmaInput`], so that the validation output
//! ([`super::ValidationOutput`]) can feed its raw-model half to Burn's metrics and its EMA half
//! to these: burn-train picks a metric's input by type, and two metrics with the same input type
//! would both see the raw model.

use burn::tensor::TensorReadError;
use burn::train::metric::{
    AccuracyMetric, LossMetric, Metric, MetricAttributes, MetricMetadata, MetricName, Numeric,
    NumericEntry, SerializedEntry,
};
use std::sync::Arc;

/// Name of [`EmaAccuracyMetric`] in burn-train's logs and in the progress output.
pub const EMA_ACCURACY: &str = "EMA Accuracy";
/// Name of [`EmaLossMetric`] in burn-train's logs and in the progress output.
pub const EMA_LOSS: &str = "EMA Loss";

/// The input of [`EmaMetric<M>`]: the input of `M` computed from the EMA's outputs, or `None`
/// when the model has no EMA (then the batch is not counted).
pub struct EmaInput<I>(pub Option<I>);

/// Burn's metric `M` applied to the model EMA's outputs, named `"EMA " + M's name`.
#[derive(Clone)]
pub struct EmaMetric<M> {
    inner: M,
    name: MetricName,
    /// Whether a batch with EMA outputs was counted since the last [`Metric::clear`].
    seen: bool,
}

/// Top-1 validation accuracy of the EMA, in percent ([`EMA_ACCURACY`]).
pub type EmaAccuracyMetric = EmaMetric<AccuracyMetric>;
/// Mean validation loss of the EMA, plain cross-entropy ([`EMA_LOSS`]).
pub type EmaLossMetric = EmaMetric<LossMetric>;

impl<M: Metric> EmaMetric<M> {
    /// `inner` (normally fresh) applied to the EMA's outputs.
    pub fn wrap(inner: M) -> Self {
        let name = Arc::new(format!("EMA {}", inner.name()));
        Self {
            inner,
            name,
            seen: false,
        }
    }
}

impl EmaAccuracyMetric {
    /// Burn's [`AccuracyMetric`] on the EMA, named [`EMA_ACCURACY`].
    pub fn accuracy() -> Self {
        Self::wrap(AccuracyMetric::new())
    }
}

impl EmaLossMetric {
    /// Burn's [`LossMetric`] on the EMA, named [`EMA_LOSS`].
    pub fn loss() -> Self {
        Self::wrap(LossMetric::new())
    }
}

impl<M: Metric> Metric for EmaMetric<M> {
    type Input = EmaInput<M::Input>;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn description(&self) -> Option<String> {
        self.inner.description().map(|d| format!("{d} (model EMA)"))
    }

    fn attributes(&self) -> MetricAttributes {
        self.inner.attributes()
    }

    fn update(
        &mut self,
        item: &EmaInput<M::Input>,
        metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        match &item.0 {
            Some(input) => {
                let entry = self.inner.update(input, metadata)?;
                self.seen = true;
                Ok(entry)
            }
            None => {
                let unit = match self.inner.attributes() {
                    MetricAttributes::Numeric(a) => a.unit,
                    MetricAttributes::None => None,
                };
                Ok(SerializedEntry::not_available(unit.as_deref()))
            }
        }
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        self.inner.compute()
    }

    fn clear(&mut self) {
        self.seen = false;
        self.inner.clear()
    }
}

impl<M: Metric + Numeric> Numeric for EmaMetric<M> {
    fn value(&self) -> Option<NumericEntry> {
        self.inner.value().filter(|_| self.seen)
    }

    fn running_value(&self) -> Option<NumericEntry> {
        self.inner.running_value().filter(|_| self.seen)
    }

    fn final_value(&self) -> NumericEntry {
        self.inner.final_value()
    }
}
