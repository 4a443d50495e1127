//! The defences every checkpoint load goes through, whatever the file format.
//!
//! Burn's stores read a file and apply its tensors to a module. Three things can go wrong
//! there that a strict key/shape check does not catch, and this module handles each:
//!
//! - **A reader that panics.** A corrupt file can make a format reader panic instead of
//!   returning an error. Reading happens before anything touches the model, so the read is run
//!   under [`catch_unwind`](std::panic::catch_unwind) and a panic becomes an error message; the
//!   model is not involved yet, so nothing can be left half-changed.
//! - **A tensor of another precision.** Burn applies a loaded float tensor in the dtype the file
//!   declares, so an f16, bf16 or f64 checkpoint would leave half- or double-precision
//!   parameters in an f32 model (and a backend without f16 support would panic creating them).
//!   [`CheckpointAdapter`] converts every float tensor to the model's float dtype on the host,
//!   before it reaches a device, and turns tensors it cannot convert (quantized ones) into a
//!   per-key load error. This matters for more than convenience: Burn applies tensors inside a
//!   section that *aborts the process* on a panic (its in-place module swap cannot unwind
//!   safely), so nothing that can panic may run there.
//! - **Non-finite weights.** A checkpoint with NaN or ±inf values loads without complaint and
//!   poisons every output. [`non_finite_keys`] finds them after the load, on the candidate
//!   copy, so the caller can refuse the load and keep its model unchanged.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::store::burn_pack::{Error as PackError, Tensor as PackTensor};
use burn::store::{
    bridge, ApplyResult, ModuleAdapter, ModuleContext, ModuleSnapshot, ModuleStore,
    PyTorchToBurnAdapter,
};
use burn::tensor::DType;

use crate::vheat::VHeat;

/// How a checkpoint lays out its tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// PyTorch's: Linear weights `[out, in]`, LayerNorm `weight`/`bias` (`.pth`, reference
    /// safetensors).
    PyTorch,
    /// Burn's own: what [`VHeat::save_burnpack`] writes.
    Burn,
}

/// The adapter every load uses: PyTorch → Burn layout when needed, then every float tensor
/// converted to the model's float dtype.
#[derive(Debug, Clone)]
pub(crate) struct CheckpointAdapter {
    layout: Layout,
    target: DType,
}

impl CheckpointAdapter {
    /// An adapter for a checkpoint in `layout`, loading into parameters of dtype `target`.
    pub(crate) fn new(layout: Layout, target: DType) -> Self {
        Self { layout, target }
    }
}

impl ModuleAdapter for CheckpointAdapter {
    fn adapt(&self, tensor: PackTensor, ctx: ModuleContext<'_>) -> PackTensor {
        let tensor = match self.layout {
            Layout::PyTorch => PyTorchToBurnAdapter.adapt(tensor, ctx),
            Layout::Burn => tensor,
        };
        convert_float(tensor, self.target)
    }

    fn get_alternative_param_name(&self, param_name: &str, module_type: &str) -> Option<String> {
        match self.layout {
            Layout::PyTorch => {
                PyTorchToBurnAdapter.get_alternative_param_name(param_name, module_type)
            }
            Layout::Burn => None,
        }
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

/// Converts a float tensor to `target` when its data is drawn (deferred, on the host).
///
/// Integer and boolean tensors pass through unchanged: Burn refuses them for a float parameter
/// with a dtype-mismatch error naming the key. A quantized tensor, which this crate does not
/// load, becomes a tensor whose data fails to load with a message naming its dtype.
fn convert_float(tensor: PackTensor, target: DType) -> PackTensor {
    let dtype = tensor.dtype;
    if dtype == target || dtype.is_int() || dtype.is_uint() || dtype.is_bool() {
        return tensor;
    }
    let (name, shape, param_id) = (tensor.name.clone(), tensor.shape.clone(), tensor.param_id);
    if dtype.is_float() {
        bridge::deferred(name, target, shape, param_id, move || {
            bridge::to_data(&tensor)?.try_cast(target).map_err(|e| {
                PackError::ValidationError(format!("cannot convert {dtype:?} to {target:?}: {e}"))
            })
        })
    } else {
        bridge::deferred(name, target, shape, param_id, move || {
            Err(PackError::ValidationError(format!(
                "the checkpoint stores this tensor as {dtype:?}, which vheat cannot load \
                 (only f64, f32, f16 and bf16 float tensors are converted)"
            )))
        })
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// Reads every tensor descriptor of `store` (remapped, data still deferred), turning a reader
/// error or a reader panic into a message.
///
/// The store is only read here; no model is involved, so a panic leaves nothing changed.
pub(crate) fn read_tensors<S: ModuleStore>(
    store: &mut S,
) -> std::result::Result<Vec<PackTensor>, String> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        store
            .get_all_tensors()
            .map(|all| all.values().cloned().collect::<Vec<_>>())
            .map_err(|e| e.to_string())
    }));
    match outcome {
        Ok(result) => result,
        Err(payload) => Err(format!(
            "the file is malformed (the reader failed with: {})",
            panic_message(payload.as_ref())
        )),
    }
}

/// The float dtype of `model`'s parameters (the device default unless the model was cast).
fn model_float_dtype(model: &VHeat) -> DType {
    model.patch_embed.conv1.weight.val().dtype()
}

/// Reads `store` and applies its tensors to `model` through [`CheckpointAdapter`] (see
/// [`apply_tensors`]). Only a file that cannot be read at all is an `Err`.
pub(crate) fn apply_store<S: ModuleStore>(
    model: &mut VHeat,
    store: &mut S,
    layout: Layout,
) -> std::result::Result<ApplyResult, String> {
    let tensors = read_tensors(store)?;
    Ok(apply_tensors(model, tensors, layout))
}

/// Applies `tensors` (already named as the model's keys) to `model` through
/// [`CheckpointAdapter`].
///
/// Tensor data is read, converted and validated (length against shape, dtype kind, shape
/// against the parameter) per tensor; a failure lands in the [`ApplyResult`]'s errors under
/// the parameter's key and leaves that parameter as it was.
pub(crate) fn apply_tensors(
    model: &mut VHeat,
    tensors: Vec<PackTensor>,
    layout: Layout,
) -> ApplyResult {
    let adapter = CheckpointAdapter::new(layout, model_float_dtype(model));
    // PyTorch keys never name enum variants; Burn's own files do.
    let skip_enum_variants = layout == Layout::PyTorch;
    model.apply(tensors, None, Some(Box::new(adapter)), skip_enum_variants)
}

/// Collects, per float parameter whose key is in `keys`, whether all its values are finite.
struct FiniteProbe<'a> {
    keys: &'a HashSet<String>,
    path: Vec<String>,
    probes: Vec<(String, Tensor<1, Int>)>,
}

impl ModuleVisitor for FiniteProbe<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let key = self.path.join(".");
        if self.keys.contains(&key) {
            let finite = param.val().is_finite().all().int();
            self.probes.push((key, finite));
        }
    }
}

/// The keys among `keys` (model naming, as in [`ApplyResult::applied`]) whose parameter in
/// `model` holds a NaN or an infinity, in model order.
///
/// One reduction per parameter, read back in a single transfer. `Err` only if that transfer
/// cannot be read as integers, which would be a backend fault.
pub(crate) fn non_finite_keys(
    model: &VHeat,
    keys: &[String],
) -> std::result::Result<Vec<String>, String> {
    let wanted: HashSet<String> = keys.iter().cloned().collect();
    let mut probe = FiniteProbe {
        keys: &wanted,
        path: Vec::new(),
        probes: Vec::new(),
    };
    model.visit(&mut probe);
    if probe.probes.is_empty() {
        return Ok(Vec::new());
    }
    let (names, flags): (Vec<String>, Vec<Tensor<1, Int>>) = probe.probes.into_iter().unzip();
    let flags = Tensor::cat(flags, 0)
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .map_err(|e| format!("could not read back the finiteness check: {e:?}"))?;
    Ok(names
        .into_iter()
        .zip(flags)
        .filter(|(_, ok)| *ok == 0)
        .map(|(name, _)| name)
        .collect())
}
