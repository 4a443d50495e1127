//! Running a model in another floating-point precision: `bf16`, `f16` or back to `f32`.
//!
//! Every float parameter is cast; inputs are cast to the model's precision on entry (by the stem), and the
//! constant tensors of the heat operator (DCT bases, frequency grid) are cast to the precision of
//! the map they act on, so one model code path serves every precision.

use burn::module::{ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};

use super::model::VHeat;
use crate::error::{Error, Result};

/// Casts every float parameter of a module to one precision.
struct CastParams {
    dtype: FloatDType,
}

impl ModuleMapper for CastParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dtype = self.dtype;
        param.map(|t| t.cast(dtype))
    }
}

impl VHeat {
    /// The model with every parameter cast to `dtype` (e.g. `FloatDType::BF16` for fast
    /// reduced-precision inference on CPUs with AVX-512 BF16 and on GPUs).
    ///
    /// Inputs of any float precision are cast to the model's on entry. The heat operator's
    /// constants follow the precision of the map they act on.
    ///
    /// The model itself is left as it is (parameters are shared until cast, so this is cheap).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the model's device does not support `dtype` for general
    /// computation (Burn's `Device::supports_dtype`).
    pub fn with_float_dtype(&self, dtype: FloatDType) -> Result<VHeat> {
        let device = self.device();
        if !device.supports_dtype(dtype) {
            return Err(Error::InvalidConfig(format!(
                "device {device:?} does not support {dtype:?} arithmetic"
            )));
        }
        Ok(self.clone().map(&mut CastParams { dtype }))
    }

    /// The precision of the model's parameters.
    pub fn float_dtype(&self) -> DType {
        self.patch_embed.conv1.weight.val().dtype()
    }
}
