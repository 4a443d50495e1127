//! Shared helpers for the integration tests: fixture loading and tolerant comparison, the
//! per-backend test macro, temporary directories and the training tests' model.
//!
//! Every test helper lives in this folder. The larger tools beside this file are included by
//! the tests that need them with `#[path = "common/<file>.rs"] mod <file>;` (they refer to each
//! other as siblings, `super::pth`): `pth.rs` (writing and altering `.pth` files), `fuzz.rs`
//! (the loaders' mutation fuzzer, also run by `examples/fuzz_loaders.rs`) and
//! `local_server.rs` (an HTTP server for the download tests).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use burn::module::{ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::Gradients;
use vheat::VHeatConfig;

/// Parity tolerance against the PyTorch reference. The fixtures README states that float32
/// CPU implementations agree to about 1e-5; matmul/conv summation order differs between
/// PyTorch (MKL) and Burn, and the errors grow through ~10 layers of LayerNorm, so we allow
/// |a - b| <= ATOL + RTOL * |b| with both at 1e-4 (the brief's bound).
pub const ATOL: f32 = 1e-4;
/// See [`ATOL`].
pub const RTOL: f32 = 1e-4;

/// The device of backend `name` ("flex", "ndarray", "wgpu"), for [`per_backend!`] tests.
pub fn test_device(name: &str) -> Device {
    let device = vheat::device_from_name(name).expect("backend is compiled in");
    if let Err(e) = vheat::probe_device(&device) {
        panic!("backend {name} cannot run on this machine: {e} (wgpu needs a Vulkan driver, e.g. Debian's mesa-vulkan-drivers)");
    }
    device
}

/// The default CPU device, for tests that check host-side behaviour once, not per backend.
pub fn cpu() -> Device {
    test_device("flex")
}

/// Defines one test body that runs once per compiled backend.
///
/// ```ignore
/// per_backend! {
///     fn logits_match(d) { /* d: &Device */ }
/// }
/// ```
/// expands to a module `logits_match` with one `#[test]` per enabled backend feature
/// (`logits_match::flex`, `logits_match::wgpu`, `logits_match::ndarray`), so a failure names the
/// backend and `cargo test -- ::flex` runs one backend only. Attributes such as
/// `#[should_panic]` are applied to every generated test.
#[allow(unused_macros)]
macro_rules! per_backend {
    ($($(#[$meta:meta])* fn $name:ident($d:ident) $body:block)+) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[allow(dead_code)]
            fn body($d: &burn::prelude::Device) $body

            #[cfg(feature = "flex")]
            #[test]
            $(#[$meta])*
            fn flex() {
                body(&crate::common::test_device("flex"))
            }

            #[cfg(feature = "ndarray")]
            #[test]
            $(#[$meta])*
            fn ndarray() {
                body(&crate::common::test_device("ndarray"))
            }

            #[cfg(feature = "wgpu")]
            #[test]
            $(#[$meta])*
            fn wgpu() {
                body(&crate::common::test_device("wgpu"))
            }
        }
    )+};
}

/// A fresh, empty directory under the system temp dir, unique per call: tests of several
/// backends run at once in one process and must not share files.
pub fn unique_temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    emptied(std::env::temp_dir().join(format!("vheat-{tag}-{}-{n}", std::process::id())))
}

/// The empty directory `vheat-<test file>-<name>-<pid>` under the system temp dir: one per
/// `name` in each test binary (a second call with the same `name` empties it again).
pub fn temp_dir(name: &str) -> PathBuf {
    let crate_name = env!("CARGO_CRATE_NAME");
    let pid = std::process::id();
    emptied(std::env::temp_dir().join(format!("vheat-{crate_name}-{name}-{pid}")))
}

/// `dir`, removed with its contents if it existed, then created empty.
fn emptied(dir: PathBuf) -> PathBuf {
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// `base` with `change` applied: how the tests build the crate's settings structs, which are
/// `#[non_exhaustive]` (built from a default or a preset, then changed field by field).
pub fn changed<T>(mut base: T, change: impl FnOnce(&mut T)) -> T {
    change(&mut base);
    base
}

/// A small model for 32×32 inputs and the 8 classes of the synthetic shapes, without post-norm
/// or stochastic depth: the model of the training tests.
#[cfg(feature = "train")]
pub fn tiny_config() -> VHeatConfig {
    VHeatConfig::new(vec![1, 1, 1, 1], vec![8, 16, 32, 64])
        .with_num_classes(vheat::data::SyntheticShapes::num_classes())
        .with_img_size(32)
        .with_post_norm(false)
        .with_drop_path_rate(0.0)
}

/// Every float parameter of `module`, flattened, in visiting order.
pub fn flat_weights<M: burn::module::Module>(module: &M) -> Vec<f32> {
    struct Flat(Vec<f32>);
    impl burn::module::ModuleVisitor for Flat {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0
                .extend(param.val().into_data().try_to_vec::<f32>().unwrap());
        }
    }
    let mut flat = Flat(Vec::new());
    module.visit(&mut flat);
    flat.0
}

/// Path of a fixture file.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

/// All float32 (and int64) tensors of a safetensors fixture, as (shape, f32 values).
pub struct Tensors(pub HashMap<String, (Vec<usize>, Vec<f32>)>);

impl Tensors {
    pub fn open(name: &str) -> Self {
        let bytes = std::fs::read(fixture(name)).expect("fixture exists");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
        let mut map = HashMap::new();
        for (k, view) in st.tensors() {
            let shape = view.shape().to_vec();
            let data = view.data();
            let values: Vec<f32> = match view.dtype() {
                safetensors::Dtype::F32 => data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                safetensors::Dtype::I64 => data
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                other => panic!("unexpected dtype {other:?} for {k}"),
            };
            map.insert(k.to_string(), (shape, values));
        }
        Tensors(map)
    }

    pub fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    pub fn raw(&self, key: &str) -> &(Vec<usize>, Vec<f32>) {
        self.0
            .get(key)
            .unwrap_or_else(|| panic!("fixture tensor {key} missing"))
    }

    pub fn get<const D: usize>(&self, key: &str, device: &Device) -> Tensor<D> {
        let (shape, values) = self.raw(key);
        assert_eq!(shape.len(), D, "rank of {key}");
        Tensor::from_data(TensorData::new(values.clone(), shape.clone()), device)
    }

    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self.0.keys().cloned().collect();
        k.sort();
        k
    }
}

/// The `config` object of a fixture's JSON file, as a `VHeatConfig`.
pub fn fixture_config(name: &str) -> VHeatConfig {
    let text = std::fs::read_to_string(fixture(name)).expect("fixture json");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    VHeatConfig::from_json(&v["config"].to_string()).expect("fixture config is valid")
}

/// A value of a fixture's JSON file.
pub fn fixture_json(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture(name)).expect("fixture json");
    serde_json::from_str(&text).unwrap()
}

/// Values of a tensor on the host.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Asserts `actual` ≈ `expected` elementwise (|a−e| ≤ atol + rtol·|e|), with equal shapes.
/// Returns the max absolute error, and prints it so that the test log records it.
pub fn assert_close_tol(
    what: &str,
    actual: &[f32],
    actual_shape: &[usize],
    expected: &[f32],
    expected_shape: &[usize],
    atol: f32,
    rtol: f32,
) -> f32 {
    assert_eq!(actual_shape, expected_shape, "{what}: shape");
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let mut max_err = 0f32;
    let mut worst = 0usize;
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(a.is_finite(), "{what}: non-finite value {a} at {i}");
        let err = (a - e).abs();
        if err > max_err {
            max_err = err;
            worst = i;
        }
        assert!(
            err <= atol + rtol * e.abs(),
            "{what}: element {i}: got {a}, expected {e} (|diff| = {err:.3e})"
        );
    }
    println!(
        "{what}: max |diff| = {max_err:.3e} (at {worst}, {} values)",
        actual.len()
    );
    max_err
}

/// [`assert_close_tol`] of a tensor against a fixture tensor at the parity tolerance.
pub fn assert_matches<const D: usize>(
    what: &str,
    actual: Tensor<D>,
    fx: &Tensors,
    key: &str,
) -> f32 {
    let shape = actual.dims().to_vec();
    let (eshape, evalues) = fx.raw(key);
    assert_close_tol(what, &values(actual), &shape, evalues, eshape, ATOL, RTOL)
}

/// Replaces every float parameter by its gradient (zeros if it has none, recorded as missing).
pub struct GradMapper<'a> {
    pub grads: &'a Gradients,
    pub missing: usize,
}

impl ModuleMapper for GradMapper<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let value = param.val();
        let g = match value.grad(self.grads) {
            Some(g) => g,
            None => {
                self.missing += 1;
                Tensor::zeros(value.dims(), &value.device()).add_scalar(f32::NAN)
            }
        };
        Param::from_tensor(g)
    }
}
