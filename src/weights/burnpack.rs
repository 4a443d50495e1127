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
        let mut model = config.try_init(device)?;
        check_file(path)?;
        let mut store = BurnpackStore::from_file(path)
            .allow_partial(true)
            .validate(false);
        // The same defences as the reference loaders: a reader panic becomes an error, float
        // tensors are converted to the model's dtype, non-finite weights are refused.
        apply_checked(&mut model, path, &LoadOptions::strict(), |m| {
            apply_store(m, &mut store, Layout::Burn)
        })?;
        Ok(model)
    }
}
