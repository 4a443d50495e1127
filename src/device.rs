//! Choosing a backend at run time by name.
//!
//! Model code never names a backend: a [`Device`] carries it. This module turns the names a
//! command line or a config file uses (`"flex"`, `"ndarray"`, `"wgpu"`, `"cuda"`, with an
//! optional `:index`) into a device, and says precisely why when it cannot: an unknown name, a
//! backend this build does not include, or one that cannot start on this machine.
//!
//! ```
//! let device = vheat::device_from_name("flex").unwrap();
//! assert!(vheat::device_from_name("tpu").is_err());
//! ```

use burn::prelude::*;

use crate::error::{Error, Result};

/// Every backend name this crate knows, with the Cargo feature of `vheat` that provides it.
pub const KNOWN_BACKENDS: [(&str, &str); 4] = [
    ("flex", "flex"),
    ("ndarray", "ndarray"),
    ("wgpu", "wgpu"),
    ("cuda", "cuda"),
];

/// The names of the backends compiled into this build, in the order of [`KNOWN_BACKENDS`].
pub fn compiled_backends() -> Vec<&'static str> {
    let mut names = Vec::new();
    if cfg!(feature = "flex") {
        names.push("flex");
    }
    if cfg!(feature = "ndarray") {
        names.push("ndarray");
    }
    if cfg!(feature = "wgpu") {
        names.push("wgpu");
    }
    if cfg!(feature = "cuda") {
        names.push("cuda");
    }
    names
}

/// Splits `"cuda:1"` into `("cuda", Some(1))`; a bad index is an error naming the input.
fn parse_name(name: &str) -> Result<(String, Option<usize>)> {
    let lower = name.trim().to_ascii_lowercase();
    match lower.split_once(':') {
        None => Ok((lower, None)),
        Some((base, index)) => match index.parse::<usize>() {
            Ok(i) => Ok((base.to_string(), Some(i))),
            Err(_) => Err(Error::UnknownBackend {
                name: name.to_string(),
                known: known_list(),
            }),
        },
    }
}

fn known_list() -> String {
    KNOWN_BACKENDS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
        + " (optionally with :index, e.g. cuda:1)"
}

fn not_compiled(name: &str, feature: &str) -> Error {
    Error::BackendNotCompiled {
        name: name.to_string(),
        feature: feature.to_string(),
        compiled: compiled_backends().join(", "),
    }
}

/// The device for a backend name: `"flex"` (pure-Rust CPU, the default), `"ndarray"` (CPU,
/// deprecated by Burn), `"wgpu"` (Vulkan, Metal or DX12; `"wgpu:i"` picks the i-th discrete GPU)
/// or `"cuda"` (`"cuda:i"` for GPU i). Case and surrounding spaces are ignored.
///
/// The device is not started: a GPU backend whose driver is missing fails on first use. Call
/// [`probe_device`] to find that out as an error instead.
///
/// # Errors
/// [`Error::UnknownBackend`] for a name outside [`KNOWN_BACKENDS`] or a malformed index,
/// [`Error::BackendNotCompiled`] for a backend whose Cargo feature is off, and
/// [`Error::InvalidConfig`] for an index on a CPU backend.
pub fn device_from_name(name: &str) -> Result<Device> {
    let (base, index) = parse_name(name)?;
    let Some(&(_, feature)) = KNOWN_BACKENDS.iter().find(|(n, _)| *n == base) else {
        return Err(Error::UnknownBackend {
            name: name.to_string(),
            known: known_list(),
        });
    };
    if !compiled_backends().contains(&base.as_str()) {
        return Err(not_compiled(name, feature));
    }
    if index.is_some() && (base == "flex" || base == "ndarray") {
        return Err(Error::InvalidConfig(format!(
            "backend {name:?}: the CPU backend {base} takes no device index"
        )));
    }
    make_device(&base, index)
}

#[allow(unused_variables, unreachable_code)]
fn make_device(base: &str, index: Option<usize>) -> Result<Device> {
    match base {
        #[cfg(feature = "flex")]
        "flex" => return Ok(Device::flex()),
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        "ndarray" => return Ok(Device::ndarray()),
        #[cfg(feature = "wgpu")]
        "wgpu" => {
            let kind = match index {
                None => burn::tensor::DeviceKind::DefaultDevice,
                Some(i) => burn::tensor::DeviceKind::DiscreteGpu(i),
            };
            return Ok(Device::wgpu(kind));
        }
        #[cfg(feature = "cuda")]
        "cuda" => return Ok(Device::cuda(index.unwrap_or(0))),
        _ => {}
    }
    Err(not_compiled(base, base))
}

/// The CPU device of this build: `flex` when compiled in, else `ndarray`, else Burn's default.
///
/// Work that only reads, checks or writes weights (export, conversion, counting parameters,
/// checking a download) runs here. Burn's `Device::default()` prefers a GPU backend whenever one
/// is compiled in, which would start a GPU driver (and print its diagnostics) for a file
/// operation.
#[allow(unreachable_code)]
pub fn host_device() -> Device {
    #[cfg(feature = "flex")]
    return Device::flex();
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    return Device::ndarray();
    Device::default()
}

/// Starts `device` by running one tiny operation on it, turning a backend's start-up panic (no
/// GPU adapter, no driver) into [`Error::BackendUnavailable`].
///
/// The backend's own panic message is still printed to standard error by the panic hook.
pub fn probe_device(device: &Device) -> Result<()> {
    let d = device.clone();
    let outcome = std::panic::catch_unwind(move || {
        let t = Tensor::<1>::from_floats([1.0, 2.0], &d);
        t.sum().into_scalar::<f32>()
    });
    match outcome {
        Ok(v) if (v - 3.0).abs() < 1e-6 => Ok(()),
        Ok(v) => Err(Error::BackendUnavailable {
            name: format!("{device:?}"),
            reason: format!("a test sum gave {v} instead of 3"),
        }),
        Err(panic) => {
            let reason = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the backend panicked while starting".to_string());
            Err(Error::BackendUnavailable {
                name: format!("{device:?}"),
                reason,
            })
        }
    }
}
