//! Saving and loading in Burn's own format (burnpack): convert a reference checkpoint once,
//! reload it fast afterwards.

use std::path::Path;

use burn::prelude::*;
use burn::store::{BurnpackStore, ModuleSnapshot};

use super::load::to_report;
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
        let mut store = BurnpackStore::from_file(path)
            .allow_partial(true)
            .validate(false);
        let result = model
            .load_from(&mut store)
            .map_err(|e| Error::CheckpointRead {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        let report = to_report(result);
        if !report.is_clean() {
            return Err(Error::CheckpointMismatch {
                path: path.to_path_buf(),
                report: Box::new(report),
            });
        }
        Ok(model)
    }
}
