//! `weights` — importing the reference checkpoints and saving in Burn's own format.
//!
//! - `.pth` files as `torch.save` writes them (zip or legacy format, read by the crate's own
//!   pickle reader, which never executes anything) holding `{"model": state_dict}` (the reference's
//!   release format, which also holds `"model_ema"`), `{"state_dict": …}` or a bare state dict:
//!   [`VHeat::load_pytorch`](crate::VHeat::load_pytorch), [`load_pytorch_into`].
//! - safetensors with the same key names:
//!   [`VHeat::load_safetensors`](crate::VHeat::load_safetensors), [`load_safetensors_into`].
//! - Burn's burnpack format: [`VHeat::save_burnpack`](crate::VHeat::save_burnpack) and
//!   [`VHeat::load_burnpack`](crate::VHeat::load_burnpack).
//!
//! - Export back to the reference's layout: [`VHeat::save_pytorch_safetensors`](crate::VHeat::save_pytorch_safetensors)
//!   (a bare state dict for `load_state_dict(..., strict=True)`); [`convert`] between formats by
//!   extension.
//! - The inference form as an ONNX model for other runtimes:
//!   [`VHeat::save_onnx`](crate::VHeat::save_onnx) ([`onnx`]).
//!
//! Loading is strict by default: a missing key, an unused key or a shape mismatch is an
//! [`Error::CheckpointMismatch`](crate::Error::CheckpointMismatch) listing all of them, and the
//! model is left unchanged. [`LoadOptions::lenient`] returns the [`LoadReport`] instead. The key
//! mapping is in [`key_rules`], one commented rule per difference.
//!
//! Dense-prediction checkpoints (weights under `backbone.`, output norms `outnorm{i}`, detector
//! or segmentor keys beside them): [`VHeat::load_backbone`](crate::VHeat::load_backbone), or
//! [`LoadOptions::backbone`] with the `*_into` functions.

mod backbone;
mod backbone_scope;
mod burnpack;
mod convert;
mod export;
mod guard;
mod keys;
mod load;
mod misfits;
pub mod onnx;
mod pickle;
mod pth;

pub use crate::load_report::{LoadReport, ShapeMismatch};
pub use convert::{convert, load_any, save_any, CheckpointFormat};
pub use export::export_key_rules;
pub use keys::{key_rules, map_key};
pub use load::{load_pytorch_into, load_safetensors_into, LoadOptions, StateDictKey};
pub use onnx::OnnxOptions;
