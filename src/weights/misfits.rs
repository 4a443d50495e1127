//! Checkpoint tensors whose size cannot fit the model, found from their declared shapes before
//! any of their bytes are read.
//!
//! Burn reads a tensor's data before it compares its shape with the parameter's, so a
//! checkpoint whose header claims 2³⁰ floats for a `[96, 3, 4, 4]` weight would be read (for a
//! `.pth`, inflated) in full before being refused. [`take_misfits`] takes such tensors out
//! first, comparing element counts (a layout adapter may transpose a tensor, never resize it);
//! [`report_misfits`] then reports each one as the shape mismatch it is.

use std::collections::HashMap;

use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{ApplyError, ApplyResult, ModuleSnapshot};
use burn::tensor::Shape;

use crate::vheat::VHeat;

/// A checkpoint tensor refused for its size: the parameter's key, its shape, and the shape the
/// checkpoint declares.
pub(crate) struct Misfit {
    key: String,
    expected: Shape,
    found: Shape,
}

/// The names under which a checkpoint may hold a parameter: its own, and for a normalisation
/// layer's `gamma`/`beta` the PyTorch `weight`/`bias` that the PyTorch adapter accepts.
fn names_of(key: &str) -> Vec<String> {
    let mut names = vec![key.to_string()];
    if let Some(prefix) = key.strip_suffix(".gamma") {
        names.push(format!("{prefix}.weight"));
    } else if let Some(prefix) = key.strip_suffix(".beta") {
        names.push(format!("{prefix}.bias"));
    }
    names
}

/// The element count of `shape`; `None` when it overflows (never a parameter's).
fn elements(shape: &Shape) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// A PyTorch-layout shape as the parameter `key` would have it, for the report: the PyTorch
/// adapter transposes a Linear weight (`[out, in]` → `[in, out]`), and a vHeat model's only
/// 2-D `weight` parameters are Linear weights.
fn burn_layout(key: &str, shape: &Shape) -> Shape {
    match shape.as_slice() {
        [rows, cols] if key.ends_with(".weight") => Shape::from(vec![*cols, *rows]),
        _ => shape.clone(),
    }
}

/// Splits `tensors` (PyTorch layout, named as the model's keys) into those that may fit
/// `model` and those whose element count differs from the parameter they name. Only shapes are
/// read.
pub(crate) fn take_misfits(
    model: &VHeat,
    tensors: Vec<PackTensor>,
) -> (Vec<PackTensor>, Vec<Misfit>) {
    // The model's parameters as snapshots: names and shapes, no data read back.
    let params: HashMap<String, (String, Shape)> = model
        .collect(None, None, true)
        .into_iter()
        .flat_map(|p| {
            let key = p.name.clone();
            let shape = p.shape.clone();
            names_of(&key)
                .into_iter()
                .map(move |name| (name, (key.clone(), shape.clone())))
        })
        .collect();
    let mut misfits = Vec::new();
    let tensors = tensors
        .into_iter()
        .filter(|t| match params.get(&t.name) {
            Some((key, expected)) if elements(expected) != elements(&t.shape) => {
                misfits.push(Misfit {
                    key: key.clone(),
                    expected: expected.clone(),
                    found: burn_layout(key, &t.shape),
                });
                false
            }
            _ => true,
        })
        .collect();
    (tensors, misfits)
}

/// Reports each of `misfits` in `result` as a shape mismatch (Burn, which never saw them,
/// listed their parameters as missing).
pub(crate) fn report_misfits(result: &mut ApplyResult, misfits: Vec<Misfit>) {
    for m in misfits {
        result.missing.retain(|(key, _)| *key != m.key);
        result.errors.push(ApplyError::ShapeMismatch {
            path: m.key,
            expected: m.expected,
            found: m.found,
        });
    }
}
