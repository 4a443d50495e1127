//! Saving and loading in Burn's own format (burnpack): convert a reference checkpoint once,
//! reload it fast afterwards.

use std::path::Path;

use burn::prelude::*;
use burn::store::{BurnpackStore, ModuleSnapshot};

use super::guard::{apply_store, Layout};
use super::load::{apply_checked, check_file, LoadOptions};
use crate::error::{Error, Result};
use crate::vheat::{VHeat, VHeatConfig};

impl VHeat {
    /// Saves every parameter to a burnpack file (`.bpk`), overwriting an existing file.
    pub fn save_burnpack(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut store = BurnpackStore::from_file(path).overwrite(true);
        self.save_into(&mut store)
            .map_err(|e| Error::CheckpointWrite {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
    }

    /// Builds the model for `config` on `device` and loads a burnpack file written by
    /// [`save_burnpack`](Self::save_burnpack), strictly.
    pub fn load_burnpack(
        path: impl AsRef<Path>,
        config: &VHeatConfig,
        device: &Device,
    ) -> Result<VHeat> {
        let path = path.as_ref();
        // Offer an output norm on every stage: a saved dense-prediction backbone has them, and
        // those the file does not hold are removed again.
        let mut model = config
            .try_init(device)?
            .with_output_norms(crate::vheat::Indices::All)?;
        check_file(path)?;
        // Read the whole file now: a file-backed store uploads lazily, so a GPU device would
        // fail later (and poison its stream) if the file were replaced or deleted after loading.
        let bytes = std::fs::read(path).map_err(|e| Error::CheckpointRead {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut store = BurnpackStore::from_bytes(Some(burn::tensor::Bytes::from_bytes_vec(bytes)))
            .allow_partial(true)
            .validate(false);
        // The same defences as the reference loaders: a reader panic becomes an error, float
        // tensors are converted to the model's dtype, non-finite weights are refused.
        let mut report = apply_checked(&mut model, path, &LoadOptions::lenient(), |m| {
            apply_store(m, &mut store, Layout::Burn)
        })?;
        super::backbone::keep_loaded_output_norms(&mut model, &mut report);
        if !report.is_clean() {
            return Err(Error::CheckpointMismatch {
                path: path.to_path_buf(),
                report: Box::new(report),
            });
        }
        Ok(model)
    }
}
