//! [`ConfusionMatrix`]: pixel counts per (true, predicted) class, and the IoU metrics from them.

use burn::prelude::*;

use crate::error::{Error, Result};

/// Pixel counts per (true class, predicted class), accumulated over a data set, and the
/// segmentation metrics computed from them as mmseg computes them: per-class
/// IoU = TP / (TP + FP + FN) over the whole data set, and mIoU = the mean over the classes that
/// occur (in the targets or the predictions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    num_classes: usize,
    /// Row-major `[true][predicted]`.
    counts: Vec<u64>,
}

impl ConfusionMatrix {
    /// An empty matrix for `num_classes` classes.
    pub fn new(num_classes: usize) -> Self {
        Self {
            num_classes,
            counts: vec![0; num_classes * num_classes],
        }
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Pixels of class `truth` predicted as `predicted`.
    pub fn count(&self, truth: usize, predicted: usize) -> u64 {
        self.counts[truth * self.num_classes + predicted]
    }

    /// Adds pixels given as class ids (same length; every id in `0..num_classes`).
    pub fn update(&mut self, predicted: &[i64], truth: &[i64]) -> Result<()> {
        if predicted.len() != truth.len() {
            return Err(Error::InvalidInput {
                what: "ConfusionMatrix::update".into(),
                expected: format!("as many predictions as targets ({})", truth.len()),
                found: format!("{} predictions", predicted.len()),
            });
        }
        let k = self.num_classes as i64;
        if let Some(bad) = predicted
            .iter()
            .chain(truth)
            .find(|&&c| !(0..k).contains(&c))
        {
            return Err(Error::InvalidInput {
                what: "ConfusionMatrix::update".into(),
                expected: format!("class ids in 0..{k}"),
                found: format!("{bad}"),
            });
        }
        for (&p, &t) in predicted.iter().zip(truth) {
            self.counts[t as usize * self.num_classes + p as usize] += 1;
        }
        Ok(())
    }

    /// Adds a batch of predicted and true class maps (`[B, H, W]` each), read back to the host.
    pub fn update_tensors(
        &mut self,
        predicted: Tensor<3, Int>,
        truth: Tensor<3, Int>,
    ) -> Result<()> {
        if predicted.dims() != truth.dims() {
            return Err(Error::InvalidInput {
                what: "ConfusionMatrix::update_tensors".into(),
                expected: format!("predictions of the targets' shape {:?}", truth.dims()),
                found: format!("{:?}", predicted.dims()),
            });
        }
        let host = |t: Tensor<3, Int>| -> Result<Vec<i64>> {
            t.into_data()
                .try_into_vec_as::<i64>()
                .map_err(|e| Error::InvalidInput {
                    what: "ConfusionMatrix::update_tensors".into(),
                    expected: "integer class maps".into(),
                    found: format!("{e:?}"),
                })
        };
        self.update(&host(predicted)?, &host(truth)?)
    }

    /// IoU of every class, `None` for a class that occurs neither in the targets nor in the
    /// predictions.
    pub fn iou(&self) -> Vec<Option<f64>> {
        (0..self.num_classes)
            .map(|c| {
                let tp = self.count(c, c);
                let row: u64 = (0..self.num_classes).map(|p| self.count(c, p)).sum();
                let col: u64 = (0..self.num_classes).map(|t| self.count(t, c)).sum();
                let union = row + col - tp;
                (union > 0).then(|| tp as f64 / union as f64)
            })
            .collect()
    }

    /// Mean IoU over the classes that occur; 0 for an empty matrix.
    pub fn mean_iou(&self) -> f64 {
        let ious: Vec<f64> = self.iou().into_iter().flatten().collect();
        if ious.is_empty() {
            0.0
        } else {
            ious.iter().sum::<f64>() / ious.len() as f64
        }
    }

    /// Fraction of pixels predicted correctly; 0 for an empty matrix.
    pub fn pixel_accuracy(&self) -> f64 {
        let total: u64 = self.counts.iter().sum();
        let correct: u64 = (0..self.num_classes).map(|c| self.count(c, c)).sum();
        if total == 0 {
            0.0
        } else {
            correct as f64 / total as f64
        }
    }
}
