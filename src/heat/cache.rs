//! A small process-wide cache of constant tensors (bases, frequency maps) keyed by size and device.

use std::sync::{Mutex, OnceLock};

use burn::prelude::*;

/// What a cached tensor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The DCT-II matrix.
    Dct,
    /// The transposed DCT-II matrix (the inverse).
    Idct,
    /// `ωₙ² + ωₘ²` on an `H × W` grid.
    FrequencySq,
    /// A bicubic resampling matrix `[n_out, n_in]`.
    Bicubic,
    /// A bilinear resampling matrix `[n_out, n_in]`.
    Bilinear,
}

struct Entry {
    kind: Kind,
    dims: [usize; 2],
    device: Device,
    tensor: Tensor<2>,
}

/// Upper bound on cached tensors; the oldest entry is dropped first. Every resolution a model
/// meets adds three entries per stage, so this covers many sizes at once.
const CAPACITY: usize = 256;

fn store() -> &'static Mutex<Vec<Entry>> {
    static STORE: OnceLock<Mutex<Vec<Entry>>> = OnceLock::new();
    STORE.get_or_init(|| Mutex::new(Vec::new()))
}

/// Returns the cached tensor for `(kind, dims, device)` or builds it with `build` and caches it.
///
/// Tensors are built on the device without autodiff: they are constants, and Burn lets a
/// constant take part in an autodiff graph on the same backend.
pub(crate) fn get_or_build(
    kind: Kind,
    dims: [usize; 2],
    device: &Device,
    build: impl FnOnce(&Device) -> Tensor<2>,
) -> Tensor<2> {
    // A poisoned lock only means another thread panicked while holding it; the data (a list of
    // immutable tensors) is still valid.
    let mut entries = store().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = entries
        .iter()
        .find(|e| e.kind == kind && e.dims == dims && &e.device == device)
    {
        return e.tensor.clone();
    }
    let plain = device.clone().without_autodiff();
    let tensor = build(&plain);
    if entries.len() >= CAPACITY {
        entries.remove(0);
    }
    entries.push(Entry {
        kind,
        dims,
        device: device.clone(),
        tensor: tensor.clone(),
    });
    tensor
}
