//! [`evaluate_accuracy`]: top-1 accuracy of a model on a dataset, outside burn-train (e.g. for
//! the weight average after training).

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::module::Module;
use burn::prelude::*;

use crate::data::{ImageBatcher, ImageItem};
use crate::error::{Error, Result};
use crate::vheat::VHeat;

/// The top-1 accuracy, in percent, of `model` (run without autodiff, in evaluation mode) on
/// every item of `dataset`, `batch_size` images at a time on `device`.
///
/// # Errors
/// [`Error::InvalidConfig`] if `batch_size` is 0 or the dataset is empty;
/// [`Error::Training`] if an item cannot be read.
pub fn evaluate_accuracy<D: Dataset<ImageItem>>(
    model: &VHeat,
    dataset: &D,
    batch_size: usize,
    device: &Device,
) -> Result<f64> {
    if batch_size == 0 {
        return Err(Error::InvalidConfig("`batch_size` is 0".into()));
    }
    let n = dataset.len();
    if n == 0 {
        return Err(Error::InvalidConfig("empty evaluation dataset".into()));
    }
    let model = model.valid().to_device(device);
    let mut correct = 0i64;
    for start in (0..n).step_by(batch_size) {
        let items = (start..(start + batch_size).min(n))
            .map(|i| {
                dataset
                    .get(i)
                    .map_err(|e| Error::Training(format!("dataset item {i}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let batch = ImageBatcher.batch(items, device);
        let pred = model.forward(batch.images).argmax(1).flatten::<1>(0, 1);
        correct += pred.equal(batch.targets).int().sum().into_scalar::<i64>();
    }
    Ok(100.0 * correct as f64 / n as f64)
}
